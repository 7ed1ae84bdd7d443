"""The pure parts of the push channels: notification -> provider payload, provider answer -> error."""

from __future__ import annotations

import datetime as dt
import email.utils
import time

import orjson
import pytest
from aioapns.common import PushType

from notifier.channels.apns import MAX_PAYLOAD as MAX_APNS
from notifier.channels.apns import APNsChannel, _answer_error
from notifier.channels.base import Delivery, Outcome
from notifier.channels.fcm import MAX_PAYLOAD as MAX_FCM
from notifier.channels.fcm import FCMChannel
from notifier.channels.push import DEFAULT_TTL, parse_retry_after, remaining_ttl, short_key
from notifier.channels.targets import send_each
from notifier.channels.webpush import MAX_PLAINTEXT, WebPushChannel
from notifier.config import get_settings
from notifier.errors import InvalidTarget, PermanentError, RetryableError, ValidationError
from notifier.models import Notification, validate
from notifier.state.devices import Device, Registration, device_id

T0 = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def delivery(**fields: object) -> Delivery:
    n = Notification(**{"type": "order_update", "title": "Order Shipped", "body": "Your order #12345 has shipped",
                        "data": {"order_id": "12345", "count": 2, "tags": ["a"]}, "timestamp": T0, **fields})
    return Delivery("user-1", n, "fcm-abc")


# FCM ------------------------------------------------------------------------------------------
def test_fcm_maps_notification_data_and_android_web_options() -> None:
    d = delivery(priority="high", ttl=600, collapse_key="order-12345", action_url="https://shop.test/o/12345")
    message = FCMChannel(get_settings()).build_payload(d, now=T0 + dt.timedelta(seconds=100))
    assert message["notification"] == {"title": "Order Shipped", "body": "Your order #12345 has shipped"}
    assert message["data"] == {"order_id": "12345", "count": "2", "tags": '["a"]', "notification_id": d.notification.id,
                               "notification_type": "order_update", "action_url": "https://shop.test/o/12345"}
    assert message["android"] == {"priority": "HIGH", "ttl": "500s", "collapse_key": "order-12345",
                                  "notification": {"tag": "order-12345", "notification_priority": "PRIORITY_HIGH"}}
    assert message["webpush"] == {"headers": {"TTL": "500", "Urgency": "high"},
                                  "notification": {"title": "Order Shipped", "body": "Your order #12345 has shipped",
                                                   "tag": "order-12345"},
                                  "fcm_options": {"link": "https://shop.test/o/12345"}}
    assert "token" not in message


def test_fcm_normal_priority_and_defaults() -> None:
    d = delivery(body="", data={})
    message = FCMChannel(get_settings()).build_payload(d)
    assert message["notification"] == {"title": "Order Shipped"}
    assert message["android"]["priority"] == "NORMAL"
    assert message["android"]["ttl"] == f"{DEFAULT_TTL}s"
    assert message["android"]["notification"]["notification_priority"] == "PRIORITY_DEFAULT"
    assert message["webpush"]["headers"]["Urgency"] == "normal"
    assert "collapse_key" not in message["android"] and "fcm_options" not in message["webpush"]
    critical = FCMChannel(get_settings()).build_payload(delivery(priority="critical"))
    assert critical["android"]["notification"]["notification_priority"] == "PRIORITY_MAX"


def test_fcm_refuses_oversized_payload_and_reserved_keys() -> None:
    big = delivery(data={"blob": "y" * 4060})  # too big even with the title and body cut to nothing
    with pytest.raises(PermanentError, match=r"fcm payload is \d+ bytes; the limit is 4096"):
        FCMChannel(get_settings()).check_payload(big)
    with pytest.raises(PermanentError, match="'from' is reserved"):
        FCMChannel(get_settings()).build_payload(delivery(data={"from": "me"}))
    with pytest.raises(PermanentError, match="'google.x' is reserved"):
        FCMChannel(get_settings()).build_payload(delivery(data={"google.x": "1"}))


# APNs -----------------------------------------------------------------------------------------
def test_apns_maps_alert_badge_thread_and_priority() -> None:
    d = delivery(priority="high", collapse_key="order-12345", action_url="/orders/12345", ttl=60)
    p = APNsChannel(get_settings()).build_payload(d, badge=7, now=T0)
    assert p.message == {
        "aps": {"alert": {"title": "Order Shipped", "body": "Your order #12345 has shipped"}, "badge": 7,
                "sound": "default", "thread-id": "order_update", "interruption-level": "time-sensitive"},
        "id": d.notification.id, "type": "order_update", "url": "/orders/12345",
        "data": {"order_id": "12345", "count": 2, "tags": ["a"]},
    }
    assert (p.push_type, p.priority, p.collapse_id, p.ttl) == (PushType.ALERT, 10, "order-12345", 60)


def test_apns_critical_and_normal() -> None:
    critical = APNsChannel(get_settings()).build_payload(delivery(priority="critical"))
    assert critical.message["aps"]["interruption-level"] == "critical"
    assert critical.message["aps"]["sound"] == {"critical": 1, "name": "default", "volume": 1.0}
    normal = APNsChannel(get_settings()).build_payload(delivery(data={}))
    assert "interruption-level" not in normal.message["aps"] and "badge" not in normal.message["aps"]
    assert normal.priority == 5 and normal.collapse_id is None and "data" not in normal.message


def test_apns_refuses_oversized_payload() -> None:
    with pytest.raises(PermanentError, match=r"apns payload is \d+ bytes; the limit is 4096"):
        APNsChannel(get_settings()).check_payload(delivery(data={"blob": "y" * 4060}))


@pytest.mark.parametrize(("status", "reason", "error"), [
    ("410", "Unregistered", InvalidTarget), ("400", "BadDeviceToken", InvalidTarget),
    ("429", "TooManyRequests", RetryableError), ("503", "ServiceUnavailable", RetryableError),
    ("500", "InternalServerError", RetryableError), ("403", "InvalidProviderToken", PermanentError),
    ("400", "TopicDisallowed", PermanentError), ("413", "PayloadTooLarge", PermanentError),
])
def test_apns_answers_map_to_errors(status: str, reason: str, error: type) -> None:
    found = _answer_error(status, reason, 3.0)
    assert type(found) is error
    if error is RetryableError:
        assert found.retry_after == 3.0
    if reason == "InvalidProviderToken":
        assert "NOTIFIER_APNS_KEY_FILE" in str(found)
    if reason == "TopicDisallowed":
        assert "NOTIFIER_APNS_TOPIC" in str(found)


# Web push -------------------------------------------------------------------------------------
def test_webpush_payload_is_the_notification_with_ttl_urgency_topic() -> None:
    d = delivery(priority="critical", collapse_key="order 12345!", ttl=120)
    p = WebPushChannel(get_settings()).build_payload(d, now=T0 + dt.timedelta(seconds=200))
    body = orjson.loads(p.data)
    assert body["id"] == d.notification.id and body["title"] == "Order Shipped" and body["data"]["count"] == 2
    assert "channels" not in body
    assert (p.ttl, p.urgency) == (0, "high")
    assert p.topic is not None and len(p.topic) == 32 and p.topic.isalnum()
    assert p.headers == {"Urgency": "high", "Topic": p.topic}
    plain = WebPushChannel(get_settings()).build_payload(delivery(collapse_key="orders"))
    assert plain.headers == {"Urgency": "normal", "Topic": "orders"}


def test_webpush_refuses_payload_over_one_record() -> None:
    with pytest.raises(PermanentError, match=f"limit is {MAX_PLAINTEXT}"):
        WebPushChannel(get_settings()).check_payload(delivery(data={"blob": "y" * 3950}))


# Shared helpers -------------------------------------------------------------------------------
def test_retry_after_both_forms() -> None:
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(b"2") == 2.0
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 28 <= (parse_retry_after(later) or 0) <= 30
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None


def test_remaining_ttl_and_short_keys() -> None:
    n = delivery(ttl=100).notification
    assert remaining_ttl(n) == 100
    assert remaining_ttl(n, T0 + dt.timedelta(seconds=40)) == 60
    assert remaining_ttl(n, T0 + dt.timedelta(seconds=400)) == 0
    assert short_key("abc", 32) == "abc"
    assert short_key("a b", 32, url_safe=True) == short_key("a b", 32, url_safe=True) != "a b"


def test_send_each_reports_every_device_before_the_next_push() -> None:
    """A failed push is that device's outcome, reported at once like a delivered one (the receipt and
    the prune follow from it), and the next device is still pushed."""
    devices = [Device(id=f"fcm-{i}", platform="fcm", token=f"token-{i}", created_at=T0, last_seen=T0) for i in range(3)]
    items = [(Delivery("user-1", delivery().notification, d.id), d) for d in devices]
    heard: list[tuple[str, Outcome]] = []

    def push(d: Delivery, device: Device) -> dict[str, object]:
        heard.append(("push", Outcome(d)))
        if device.id == "fcm-1":
            raise InvalidTarget("gone")
        return {"name": device.id}

    outcomes = send_each(items, push, lambda outcome: heard.append(("reported", outcome)))
    assert [kind for kind, _ in heard] == ["push", "reported"] * 3
    assert [o.detail for o in outcomes] == [{"name": "fcm-0"}, None, {"name": "fcm-2"}]
    assert isinstance(outcomes[1].error, InvalidTarget) and outcomes[0].ok and outcomes[2].ok
    assert [o for kind, o in heard if kind == "reported"] == outcomes


# Registration validation ----------------------------------------------------------------------
def test_registration_validation_messages() -> None:
    with pytest.raises(ValidationError, match="needs a token"):
        validate(Registration, {"platform": "fcm"})
    with pytest.raises(ValidationError, match="64 or more hex"):
        validate(Registration, {"platform": "apns", "token": "nothex"})
    with pytest.raises(ValidationError, match="needs a subscription"):
        validate(Registration, {"platform": "webpush", "token": "x" * 20})
    with pytest.raises(ValidationError, match="keys.p256dh"):
        validate(Registration, {"platform": "webpush", "subscription": {
            "endpoint": "https://push.example/abc", "keys": {"p256dh": "AAAA", "auth": "AAAAAAAAAAAAAAAAAAAAAA"}}})
    with pytest.raises(ValidationError, match="https URL"):
        validate(Registration, {"platform": "webpush", "subscription": {
            "endpoint": "http://push.example/abc", "keys": {}}})
    with pytest.raises(ValidationError, match="platform"):
        validate(Registration, {"platform": "sms", "token": "x" * 20})


def test_device_ids_are_stable_and_normalised() -> None:
    a = validate(Registration, {"platform": "apns", "token": "<" + "AB" * 32 + ">"})
    b = validate(Registration, {"platform": "apns", "token": "ab" * 32})
    assert a.address == b.address == "ab" * 32
    assert device_id("apns", a.address) == device_id("apns", b.address)
    assert device_id("apns", a.address).startswith("apns-") and len(device_id("apns", a.address)) == 37


# Text cut to the provider's limit -------------------------------------------------------------
FAMILY = "\U0001F468\u200D\U0001F469\u200D\U0001F467\u200D\U0001F466"  # one grapheme, 25 UTF-8 bytes
LONG_BODY = "Ünïcödé " + FAMILY * 400 + " the end"


def _pushes(d: Delivery) -> list[tuple[str, int, int, str, str]]:
    """Per channel: name, payload size as the provider counts it, its limit, the title and body sent."""
    fcm, apns, webpush = FCMChannel(get_settings()), APNsChannel(get_settings()), WebPushChannel(get_settings())
    f, a, w = fcm.build_payload(d), apns.build_payload(d, badge=99999), webpush.build_payload(d)
    shown = orjson.loads(w.data)
    return [("fcm", fcm.payload_size(f), MAX_FCM, f["notification"]["title"], f["notification"].get("body", "")),
            ("apns", apns.payload_size(a), MAX_APNS, a.message["aps"]["alert"]["title"],
             a.message["aps"]["alert"].get("body", "")),
            ("webpush", webpush.payload_size(w), MAX_PLAINTEXT, shown["title"], shown["body"])]


def test_long_push_body_is_cut_to_fit_on_a_whole_grapheme() -> None:
    d = delivery(body=LONG_BODY)
    for name, size, limit, title, body in _pushes(d):
        assert limit - 30 < size <= limit, name  # filled up to the limit, not far below it
        assert title == "Order Shipped", name
        assert body.startswith("Ünïcödé " + FAMILY) and body.endswith(FAMILY + "…"), name
        assert (body[:-1].count(FAMILY) * len(FAMILY)) == len(body) - len("Ünïcödé ") - 1, name
        FCMChannel(get_settings()).check_payload(d)


def test_very_long_title_is_cut_after_the_body_on_a_whole_grapheme() -> None:
    accents = "e\u0301" * 8  # a letter and its combining accent
    flags = "\U0001F1E9\U0001F1EA\U0001F1EB\U0001F1F7" * 50  # 100 flags, 8 UTF-8 bytes each
    d = delivery(title=accents + flags, body="x" * 4000, data={"blob": "y" * 3550})
    for name, size, limit, title, body in _pushes(d):
        assert size <= limit, name
        assert body == "", name
        assert title.startswith(accents) and title.endswith("…"), name
        kept = title[len(accents):-1]
        assert 20 < len(kept) < len(flags), name
        assert len(kept) % 2 == 0 and flags.startswith(kept), f"{name}: a flag was split: {kept[-3:]!r}"


def test_short_push_text_is_sent_as_written() -> None:
    for name, _size, _limit, title, body in _pushes(delivery()):
        assert (title, body) == ("Order Shipped", "Your order #12345 has shipped"), name
