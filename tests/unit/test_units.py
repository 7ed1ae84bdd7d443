"""Fast tests of pure logic: models, quiet hours, settings, rate-limit and inbox scripts (fakeredis)."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import fakeredis
import pytest

from notifier.config import (
    REMOVED,
    RENAMED,
    SECTIONS,
    Settings,
    get_settings,
    markdown_table,
    reload_settings,
)
from notifier.errors import ConfigError, ValidationError
from notifier.models import Notification, Preferences, QuietHours, validate
from notifier.redis.keys import Keys
from notifier.redis.urls import parse as parse_redis_url
from notifier.state.inbox import Inbox
from notifier.state.preferences import quiet_until
from notifier.state.ratelimit import RateLimiter
from tests.support.helpers import ROOT

UTC = dt.UTC


def prefs(start: str, end: str, tz: str) -> Preferences:
    return Preferences(quiet_hours=QuietHours(start=start, end=end), timezone=tz)


@pytest.mark.parametrize("local_now, expected_end", [
    ("2026-01-10 23:30", "2026-01-11 07:00"),   # after start, before midnight
    ("2026-01-11 03:00", "2026-01-11 07:00"),   # after midnight
    ("2026-01-11 06:59", "2026-01-11 07:00"),
    ("2026-01-11 07:00", None),                  # the end is outside the window
    ("2026-01-11 12:00", None),
    ("2026-01-10 22:00", "2026-01-11 07:00"),   # the start is inside
])
def test_overnight_quiet_hours_in_user_zone(local_now: str, expected_end: str | None) -> None:
    tz = zoneinfo.ZoneInfo("America/New_York")
    now = dt.datetime.fromisoformat(local_now).replace(tzinfo=tz).astimezone(UTC)
    end = quiet_until(prefs("22:00", "07:00", "America/New_York"), now)
    if expected_end is None:
        assert end is None
    else:
        assert end == dt.datetime.fromisoformat(expected_end).replace(tzinfo=tz).astimezone(UTC)


def test_daytime_window_and_dst_change() -> None:
    tz = zoneinfo.ZoneInfo("Europe/Berlin")
    p = prefs("01:00", "04:00", "Europe/Berlin")
    # 2026-03-29: clocks jump from 02:00 to 03:00 in Berlin; the window still ends at 04:00 local.
    now = dt.datetime(2026, 3, 29, 1, 30, tzinfo=tz).astimezone(UTC)
    assert quiet_until(p, now) == dt.datetime(2026, 3, 29, 2, 0, tzinfo=UTC)
    assert quiet_until(p, dt.datetime(2026, 3, 29, 12, 0, tzinfo=UTC)) is None


@pytest.mark.parametrize("payload, problem", [
    ({"type": "t", "title": ""}, "title"),
    ({"type": "t", "title": "x", "extra": 1}, "extra"),
    ({"type": "T T", "title": "x"}, "type"),
    ({"type": "t", "title": "x", "data": {"k": "v" * 5000}}, "data"),
    ({"type": "t", "title": "x", "data": ["not", "an", "object"]}, "data"),
    ({"type": "t", "title": "x", "channels": ["pigeon"]}, "channels"),
    ({"type": "t", "title": "x", "channels": []}, "channels"),
    ({"type": "t", "title": "x", "ttl": -1}, "ttl"),
    ({"type": "t", "title": "x", "action_url": "javascript:alert(1)"}, "action_url"),
    ({"type": "t", "title": "x", "body": "b" * 5000}, "body"),
])
def test_notification_validation_names_the_field(payload: dict, problem: str) -> None:
    with pytest.raises(ValidationError) as info:
        validate(Notification, payload)
    assert problem in str(info.value)


def test_notification_defaults_and_expiry() -> None:
    n = validate(Notification, {"type": "t", "title": "x", "ttl": 60, "channels": ["email", "email"]})
    assert len(n.id) == 32 and n.timestamp.tzinfo is not None and n.channels == ("email",)
    assert not n.expired(n.timestamp + dt.timedelta(seconds=59))
    assert n.expired(n.timestamp + dt.timedelta(seconds=61))


@pytest.mark.parametrize("prefs_input, problem", [
    ({"timezone": "Mars/Olympus"}, "IANA"),
    ({"quiet_hours": {"start": "7:00", "end": "08:00"}}, "HH:MM"),
    ({"quiet_hours": {"start": "08:00", "end": "08:00"}}, "differ"),
    ({"email": "not-an-address"}, "email"),
    ({"channels": {"pigeon": True}}, "channels"),
    ({"disabled_types": ["Bad Type"]}, "slug"),
])
def test_preferences_validation(prefs_input: dict, problem: str) -> None:
    with pytest.raises(ValidationError) as info:
        validate(Preferences, prefs_input)
    assert problem in str(info.value)


def test_invalid_settings_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    for var, value in [("NOTIFIER_MAX_RETRIES", "many"), ("NOTIFIER_RATE_LIMITS", "email=ten/60"),
                       ("NOTIFIER_SMTP_TLS", "sometimes"), ("NOTIFIER_DEFAULT_CHANNELS", "pigeon"),
                       ("NOTIFIER_COUNTDOWN_MAX_SECONDS", "3600")]:
        with monkeypatch.context() as m:
            m.setenv(var, value)
            get_settings.cache_clear()
            with pytest.raises(ConfigError) as info:
                get_settings()
            assert var in str(info.value)
    reload_settings()


def test_a_setting_under_its_old_name_stops_the_start_naming_the_new_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """``extra="ignore"`` would drop an old name silently, and its default would apply unnoticed."""
    monkeypatch.setenv("NOTIFIER_PUSH_TIMEOUT", "3")
    monkeypatch.setenv("NOTIFIER_METRICS_DIR", "/tmp/metrics")
    get_settings.cache_clear()
    with pytest.raises(ConfigError) as info:
        get_settings()
    assert "NOTIFIER_PUSH_TIMEOUT was renamed NOTIFIER_PUSH_TIMEOUT_SECONDS" in str(info.value)
    assert "NOTIFIER_METRICS_DIR is no longer a setting: set PROMETHEUS_MULTIPROC_DIR" in str(info.value)
    monkeypatch.delenv("NOTIFIER_PUSH_TIMEOUT")
    monkeypatch.delenv("NOTIFIER_METRICS_DIR")
    reload_settings()


def test_settings_follow_the_unit_rule_and_the_old_names_are_gone() -> None:
    fields = {f"NOTIFIER_{name.upper()}": field for name, field in Settings.model_fields.items()}
    assert set(RENAMED.values()) <= set(fields), "every new name is a setting"
    assert not (set(RENAMED) | set(REMOVED)) & set(fields), "no old name is a setting still"
    for name, field in fields.items():
        if field.annotation is float:
            assert name.endswith("_SECONDS"), f"{name} is a duration: it ends in _SECONDS"
    assert sum(len(section.model_fields) for section in SECTIONS) == len(Settings.model_fields), \
        "every setting is in exactly one section"


def test_the_readme_configuration_table_is_the_settings() -> None:
    readme = (ROOT / "README.md").read_text()
    assert markdown_table() in readme, "README's Configuration table is stale: paste notifier.config.markdown_table()"


def test_broker_defaults_to_redis_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFIER_BROKER_URL")
    s = Settings(redis_url="redis://example:6379/3")
    assert s.broker == "redis://example:6379/3"
    assert Settings(redis_url="redis://a/1", broker_url="amqp://guest@b//").broker == "amqp://guest@b//"


def test_keys_keep_user_in_one_hash_tag() -> None:
    k = Keys("p")
    assert k.inbox("user123") == "p:{user123}:inbox"
    odd = "a}:inbox"  # Redis key syntax in a user id must not reach another user's keys
    assert k.inbox(odd) != k.inbox("a") and k.unread(odd) != k.inbox("a")


def _fake_inbox(max_len: int = 10) -> Inbox:
    from notifier.redis import scripts, store

    scripts.script.cache_clear()
    client = fakeredis.FakeRedis(decode_responses=True)
    store._client.set(client)
    return Inbox(client, Keys("t"), max_len=max_len)


def test_inbox_trim_keeps_unread_count_exact() -> None:
    box = _fake_inbox(max_len=10)
    try:
        ids = [box.append("u", {"id": f"n{i}", "type": "t", "title": str(i)}).entry_id for i in range(40)]
        assert len(set(ids)) == 40
        length = box.r.xlen(box.keys.inbox("u"))
        assert 10 <= length <= 10 + box.slack
        assert box.unread_count("u") == length
        assert box.r.hlen(box.keys.inbox_ids("u")) == length
        page = box.list("u", limit=5)
        assert [i["title"] for i in page.items] == ["39", "38", "37", "36", "35"]
        rest = box.list("u", limit=100, before=page.next_cursor)
        assert rest.items[0]["title"] == "34" and rest.next_cursor is None
        assert box.append("u", {"id": "n39", "type": "t", "title": "again"}).added is False
    finally:
        reload_settings()


def test_inbox_read_and_delete_counts() -> None:
    box = _fake_inbox(max_len=100)
    try:
        for i in range(6):
            box.append("u", {"id": f"n{i}", "type": "t", "title": str(i)})
        assert box.mark_read("u", ["n0", "n1", "nope"]) == 4
        assert [i["id"] for i in box.list("u", unread_only=True, limit=10).items] == ["n5", "n4", "n3", "n2"]
        assert box.delete("u", ["n2", "n0"]) == (2, 3)
        assert box.mark_read("u") == 0
        assert [i["read"] for i in box.list("u").items] == [True] * 4
        with pytest.raises(ValidationError):
            box.list("u", before="1-2-3")
    finally:
        reload_settings()


def test_rate_limiter_sliding_window() -> None:
    _fake_inbox()
    try:
        import notifier.redis.store as store

        limiter = RateLimiter(store.get_redis(), Keys("t"), {"email": (2, 60)})
        verdicts = [limiter.allow("u", f"s{i}", ["email", "realtime"]) for i in range(3)]
        assert [v["email"] for v in verdicts] == [True, True, False]
        assert all(v["realtime"] for v in verdicts)
        assert limiter.allow("other", "s9", ["email"])["email"] is True
    finally:
        reload_settings()


def test_redis_urls_carry_credentials_for_clusters_and_sentinels() -> None:
    cluster = parse_redis_url("redis+cluster://app:p%40ss%3Aw%2Frd@10.0.0.1:7000,10.0.0.2")
    assert cluster.kind == "cluster" and cluster.hosts == (("10.0.0.1", 7000), ("10.0.0.2", 6379))
    assert cluster.credentials == {"username": "app", "password": "p@ss:w/rd"}
    assert parse_redis_url("redis+cluster://:secret@h:1").credentials == {"password": "secret"}
    assert parse_redis_url("redis+cluster://h:1").credentials == {}

    sentinel = parse_redis_url("redis+sentinel://:m%40ster@s1,s2:26380/mymaster/3?sentinel_password=s%2Fpw")
    assert (sentinel.kind, sentinel.service, sentinel.db) == ("sentinel", "mymaster", 3)
    assert sentinel.hosts == (("s1", 26379), ("s2", 26380))
    assert sentinel.credentials == {"password": "m@ster"}
    assert sentinel.sentinel_credentials == {"password": "s/pw"}
    assert parse_redis_url("redis://:pw@localhost:6379/2").kind == "server"


@pytest.mark.parametrize("url, says", [
    ("redis+sentinel://:topsecret@s1:26379", "name the master"),
    ("redis+sentinel://s1/m/x", "must be a number"),
    ("redis+sentinel://:topsecret@s1/m/0?sentinel_pasword=x", "unknown option(s) sentinel_pasword"),
    ("redis+cluster://:topsecret@h1:7000/2", "no database or options"),
    ("redis+cluster://h1:port", "is not host:port"),
    ("redis+cluster://:topsecret@", "at least one host:port"),
    ("memcached://h", "must start with one of"),
])
def test_bad_redis_urls_say_what_is_expected_and_never_echo_the_password(url: str, says: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_redis_url(url)
    assert says in str(refused.value)
    assert "topsecret" not in str(refused.value)
