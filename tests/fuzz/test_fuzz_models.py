"""Property-based tests of everything that takes input from outside: models, checks, stores, mappings.

For any input, the answer is the value or ``notifier.ValidationError`` with a message (never a
``TypeError``, a pydantic error or a Redis error), a refused write stores nothing, and whatever is
accepted can be carried, stored and sent: it survives a JSON round trip and every channel can map it
to a provider payload (or refuses it as a ``PermanentError``, for size).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
import redis
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from notifier import ValidationError, send_bulk
from notifier.channels.apns import APNsChannel
from notifier.channels.base import Delivery
from notifier.channels.discord import DiscordChannel
from notifier.channels.email import Email
from notifier.channels.fcm import FCMChannel
from notifier.channels.slack import SlackChannel
from notifier.channels.teams import TeamsChannel
from notifier.channels.webpush import WebPushChannel
from notifier.config import Settings
from notifier.errors import PermanentError
from notifier.models import MAX_DATA_BYTES, Notification, Preferences, QuietHours, check_user_id, validate
from notifier.pipeline.router import Router
from notifier.pipeline.streams_transport import waiting
from notifier.state.devices import Devices
from notifier.state.groups import check_group_id
from notifier.state.idempotency import check_key
from notifier.state.inbox import check_entry_id
from notifier.state.preferences import PreferenceStore
from tests.support.helpers import private_env, uid, use_env

MANY = settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))
SOME = settings(max_examples=80, deadline=None, database=None, suppress_health_check=list(HealthCheck))

scalars = (st.none() | st.booleans() | st.integers(min_value=-2 ** 70, max_value=2 ** 70) | st.floats()
           | st.text(max_size=40))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=12)
anything = json_values | st.binary(max_size=10) | st.tuples(st.integers()) | st.builds(object)


def maybe(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(good, good, anything)


notifications = st.fixed_dictionaries({}, optional={
    "type": maybe(st.from_regex(r"\A[a-z0-9][a-z0-9_.-]{0,70}\Z")),
    "title": maybe(st.text(min_size=1, max_size=300)),
    "body": maybe(st.text(max_size=5000)),
    "data": maybe(st.dictionaries(st.text(max_size=20), json_values, max_size=6)),
    "channels": maybe(st.lists(st.sampled_from(["realtime", "email", "fcm", "apns", "webpush", "sms"]), max_size=6)),
    "priority": maybe(st.sampled_from(["normal", "high", "critical", "urgent"])),
    "ttl": maybe(st.integers(min_value=-10, max_value=2 ** 70)),
    "collapse_key": maybe(st.text(max_size=80)),
    "action_url": maybe(st.sampled_from(["https://example.com/o/1", "/o/1", "javascript:alert(1)", "//evil", "/a b"])),
    "id": maybe(st.from_regex(r"\A[A-Za-z0-9_-]{1,70}\Z") | st.text(max_size=10)),
    "timestamp": maybe(st.datetimes(timezones=st.none() | st.timezones()) | st.text(max_size=30)),
    "unknown": st.integers(),
})
hhmm = st.from_regex(r"\A[0-9]{1,2}:[0-9]{1,2}\Z") | st.text(max_size=6)
preferences = st.fixed_dictionaries({}, optional={
    "channels": maybe(st.dictionaries(st.sampled_from(["email", "fcm", "sms"]), st.booleans() | st.integers())),
    "disabled_types": maybe(st.lists(st.text(max_size=70), max_size=3)),
    "quiet_hours": maybe(st.none() | st.fixed_dictionaries({"start": hhmm, "end": hhmm})),
    "timezone": maybe(st.sampled_from(["UTC", "Europe/Berlin", "Mars/Base", "", "/etc/passwd", "../UTC"])),
    "email": maybe(st.none() | st.emails() | st.text(max_size=40)),
})


def channel_settings() -> Settings:
    return Settings(vapid_private_key="", fcm_credentials="", apns_key_file="")


CHANNELS = [Email(channel_settings()), FCMChannel(channel_settings()), APNsChannel(channel_settings()),
            WebPushChannel(channel_settings()), SlackChannel(channel_settings()), TeamsChannel(channel_settings()),
            DiscordChannel(channel_settings())]


plausible_notifications = st.fixed_dictionaries({
    "type": st.from_regex(r"\A[a-z0-9][a-z0-9_.-]{0,63}\Z"),
    "title": st.text(min_size=1, max_size=256).filter(str.strip),
}, optional={
    "body": st.text(max_size=4096),
    "data": st.dictionaries(st.text(max_size=20), json_values, max_size=6),
    "channels": st.lists(st.sampled_from(["realtime", "email", "fcm", "apns", "webpush"]), min_size=1, max_size=6),
    "priority": st.sampled_from(["normal", "high", "critical"]),
    "ttl": st.integers(min_value=0, max_value=28 * 86400),
    "collapse_key": st.text(min_size=1, max_size=64).filter(str.strip),
    "action_url": st.sampled_from(["https://example.com/o/1", "/o/1"]),
})


@MANY
@given(value=notifications | anything)
@example(value={"type": "t", "title": "x", "data": {"n": 2 ** 64}})
@example(value={"type": "t", "title": "x", "data": {"n": float("nan")}})
@example(value={"type": "t", "title": "x", "data": {"n": [float("-inf")]}})
def test_any_notification_is_accepted_whole_or_refused_clearly(value: Any) -> None:
    accepted_whole_or_refused_clearly(value)


@MANY
@given(value=plausible_notifications)
@example(value={"type": "t", "title": "line\nbreak\u2028and more"})
def test_every_plausible_notification_maps_to_every_channel(value: Any) -> None:
    accepted_whole_or_refused_clearly(value)


def accepted_whole_or_refused_clearly(value: Any) -> None:
    try:
        n = validate(Notification, value)
    except ValidationError as exc:
        assert str(exc).startswith("invalid notification"), exc
        event("refused")
        return
    event("accepted")
    carried = n.to_dict()
    assert Notification.model_validate(orjson.loads(orjson.dumps(carried))) == n, "survives the broker and inbox"
    assert len(orjson.dumps(n.data)) <= MAX_DATA_BYTES
    delivery = Delivery("user", n, "target@example.com")
    for channel in CHANNELS:
        try:
            channel.check_payload(delivery)
            payload = channel.build_payload(delivery)
        except PermanentError as exc:
            assert "bytes" in str(exc) or "reserved" in str(exc), (channel.name, exc)
            continue
        if channel.name == "email":
            assert "\n" not in str(payload["Subject"]) and payload.as_bytes(), "one-line subject, sendable"
        if channel.name == "slack":
            assert all(c not in block["text"]["text"] for block in payload["blocks"] if block["type"] == "section"
                       for c in "<>"), "no mrkdwn markup from the notification's text"
            assert all(len(b["text"]["text"]) <= 150 for b in payload["blocks"] if b["type"] == "header")
        if channel.name == "discord":
            assert payload["allowed_mentions"] == {"parse": []} and len(payload["content"]) <= 2000


@MANY
@given(value=preferences | anything)
@example(value={"email": "a@b.c}:inbox"})
def test_any_preferences_are_accepted_whole_or_refused_clearly(value: Any) -> None:
    try:
        p = validate(Preferences, value)
    except ValidationError as exc:
        assert str(exc).startswith("invalid preferences"), exc
        return
    assert Preferences.model_validate(orjson.loads(orjson.dumps(p.to_dict()))) == p


@MANY
@given(value=anything | st.text(max_size=300))
def test_identifier_checks_answer_with_the_value_or_a_validation_error(value: Any) -> None:
    checks: list[Callable[[Any], Any]] = [check_user_id, check_key, check_group_id, check_entry_id]
    if isinstance(value, str):
        checks.append(QuietHours.parse)  # command-line text only
    for check in checks:
        try:
            result = check(value)
        except ValidationError as exc:
            assert str(exc), check
            continue
        if check is not QuietHours.parse:
            assert result == value


@pytest.fixture(scope="module")
def store() -> Iterator[dict[str, str]]:
    """A store and broker of this module's own (nothing consumes its queues)."""
    with use_env(private_env()) as values:
        yield values


@SOME
@given(value=preferences | anything, changes=st.dictionaries(
    st.sampled_from(["channels", "timezone", "email", "quiet_hours", "colour"]), anything | st.text(), max_size=3))
@example(value={}, changes={"channels": ["email"]})
def test_a_refused_preference_write_stores_nothing(store: dict[str, str], value: Any, changes: dict[str, Any]) -> None:
    prefs, user = PreferenceStore(), uid("p")
    kept = prefs.set(user, {"timezone": "Europe/Berlin", "email": "kept@example.com"})
    for write in (lambda: prefs.set(user, value), lambda: prefs.update(user, **changes)):
        before = prefs.get(user)
        try:
            write()
        except ValidationError:
            assert prefs.get(user) == before, "a refused write left the stored preferences as they were"
    assert kept.timezone == "Europe/Berlin"


@SOME
@given(value=st.fixed_dictionaries({"platform": maybe(st.sampled_from(["fcm", "apns", "webpush"]))}, optional={
    "token": maybe(st.from_regex(r"\A[0-9a-fA-F <>]{60,80}\Z") | st.text(max_size=50)),
    "subscription": maybe(st.fixed_dictionaries({"endpoint": st.text(max_size=40), "keys": anything})),
    "topic": maybe(st.text(max_size=20))}) | anything, user=st.text(min_size=1, max_size=20))
def test_a_refused_device_registration_stores_nothing(store: dict[str, str], value: Any, user: str) -> None:
    devices = Devices()
    try:
        before = devices.list(user)
    except ValidationError:
        return
    try:
        device = devices.register(user, value)
    except ValidationError:
        assert devices.list(user) == before
        return
    assert device.id in [d.id for d in devices.list(user)]
    devices.remove(user, device.id)


@SOME
@given(items=st.lists(st.tuples(st.text(min_size=1, max_size=20), notifications, st.none() | st.text(max_size=20))
                      | anything, min_size=1, max_size=6))
@example(items=[("u1", {"type": "t", "title": "fine"}), 7])
def test_send_bulk_validates_everything_before_sending_anything(store: dict[str, str], items: Any) -> None:
    broker = redis.Redis.from_url(store["NOTIFIER_BROKER_URL"])
    before = waiting(broker, "router")
    try:
        ids = send_bulk(items)
    except ValidationError as exc:
        assert str(exc).startswith("item ") or "items" in str(exc) or "iterable" in str(exc), exc
        assert waiting(broker, "router") == before, "a refused bulk send queued nothing"
        return
    assert waiting(broker, "router") > before and len(ids) == len(items)


@SOME
@given(items=st.lists(anything | st.tuples(st.text(max_size=10) | anything, notifications | anything,
                                           st.none() | anything), max_size=6))
@example(items=[7, ("u1", {"type": "t", "title": "fine"}, None), ("u2", {"title": 5}, None),
                ("u3", {"type": "t", "title": "fine too", "id": "n-1"}, "key-1")])
def test_the_router_refuses_malformed_items_one_by_one(store: dict[str, str], items: list[Any]) -> None:
    """What a worker does with items from a producer it does not control: route the good, reject the rest.

    An item is refused in a batch exactly when it is refused on its own (a bad neighbour neither takes
    a good item down nor saves a bad one), and every accepted item's notification is routed.
    """
    now = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    plan = Router().plan(items, now=now)
    refused_alone = [item for item in items if Router().plan([item], now=now).rejected]
    assert [id(item) for item, _ in plan.rejected] == [id(item) for item in refused_alone]
    for _, reason in plan.rejected:
        assert reason, "every rejected item says why"
    accepted = [item for item in items if all(item is not bad for bad in refused_alone)]
    given = [item[1]["id"].strip() for item in accepted if "id" in item[1]]
    assert set(given) <= set(plan.ids), "a notification sent with an id is routed under it"
    assert len(plan.ids) == len(set(given)) + len(accepted) - len(given), "every accepted item is routed"
