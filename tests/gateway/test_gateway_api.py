"""The gateway's HTTP API and auth, over real HTTP against a gateway process and real Redis."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from notifier import tokens
from notifier.state.inbox import Inbox
from tests.support.gateway_support import API_KEY, SSE, Gateway, token
from tests.support.helpers import ROOT, uid, wait_for
from tests.support.processes import free_port

WEBPUSH = {"platform": "webpush", "subscription": {
    "endpoint": "https://push.example.com/send/abc",
    "keys": {"p256dh": "BPyRvrqQd_lLgK3GfJ8bqDgIIdp2qC-0wdhpvFtVxtyr3kdz7zW6jvxHEQtUoU1Pv2sMBZ8BVBrM0yJLQDGxJVU",
             "auth": "Ffr3rQpyfbM7drjAeo8vVg"}}}
FCM = {"platform": "fcm", "token": "fcm-token-0123456789abcdef"}


@pytest.fixture(scope="module")
def gateway() -> Iterator[Gateway]:
    gw = Gateway().wait_ready()
    yield gw
    gw.stop()


def seed_entries(user: str, count: int) -> list[tuple[str, str]]:
    """Put ``count`` notifications in ``user``'s inbox with the library; returns
    ``(notification id, inbox entry id)`` pairs, oldest first."""
    box = Inbox()
    entries = []
    for i in range(count):
        nid = f"n{i}-{uid('x')}"
        appended = box.append(user, {"id": nid, "type": "test", "title": f"title {i}", "body": f"body {i}"})
        entries.append((nid, appended.entry_id))
    return entries


def seed(user: str, count: int) -> list[str]:
    """Like :func:`seed_entries`, the notification ids only."""
    return [nid for nid, _ in seed_entries(user, count)]


def forged(user: str) -> str:
    """A token for ``user`` signed with another key."""
    return tokens.issue(user, 600, key=b"k" * 40)


# Tokens -------------------------------------------------------------------------------------------
def test_tokens_verify_and_refuse_tampering() -> None:
    good = tokens.issue("alice", 60)
    assert tokens.verify(good).user_id == "alice"
    header, payload, signature = good.split(".")
    other_payload = tokens.issue("mallory", 60).split(".")[1]
    bad = {
        "tampered payload": f"{header}.{other_payload}.{signature}",
        "tampered signature": f"{header}.{payload}.{signature[:-4]}AAAA",
        "other key": forged("alice"),
        "expired": tokens.issue("alice", 5, now=time.time() - 60),
        "alg none": "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0." + payload + ".",
        "garbage": "not-a-token",
    }
    for what, value in bad.items():
        with pytest.raises(tokens.InvalidToken):
            tokens.verify(value)
            pytest.fail(f"{what} accepted")


def test_token_cli_prints_a_valid_token_and_needs_a_key() -> None:
    run = [sys.executable, "-m", "notifier.cli", "token", "cli-user", "--ttl", "120"]
    out = subprocess.run(run, cwd=ROOT, capture_output=True, text=True, env=os.environ, timeout=30)
    assert out.returncode == 0, out.stderr
    claims = tokens.verify(out.stdout.strip())
    assert claims.user_id == "cli-user" and claims.expires_at - claims.issued_at == 120
    env = {**os.environ, "NOTIFIER_SECRET_KEY": "", "NOTIFIER_DEV_MODE": "1"}
    out = subprocess.run(run, cwd=ROOT, capture_output=True, text=True, env=env, timeout=30)
    assert out.returncode == 1 and "NOTIFIER_SECRET_KEY is not set" in out.stderr


def test_gateway_refuses_to_start_without_a_secret_key() -> None:
    env = {**os.environ, "NOTIFIER_SECRET_KEY": "", "NOTIFIER_DEV_MODE": "0"}
    out = subprocess.run([sys.executable, "-m", "notifier.cli", "gateway", "--port", "1"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 1
    assert "NOTIFIER_SECRET_KEY is not set" in out.stderr


def test_dev_mode_signs_with_a_random_per_process_key() -> None:
    gw = Gateway({"NOTIFIER_SECRET_KEY": "", "NOTIFIER_DEV_MODE": "1"}).wait_ready()
    try:
        with gw.client(token(uid())) as http:
            assert http.get("/v1/notifications").status_code == 401
        assert "random per-process key" in gw.log()
    finally:
        gw.stop()


# Auth on every endpoint ---------------------------------------------------------------------------
USER_ENDPOINTS = [
    ("GET", "/v1/notifications", None),
    ("GET", "/v1/notifications/unread-count", None),
    ("POST", "/v1/notifications/read", {"all": True}),
    ("GET", "/v1/notifications/abc", None),
    ("DELETE", "/v1/notifications/abc", None),
    ("GET", "/v1/preferences", None),
    ("PUT", "/v1/preferences", {}),
    ("POST", "/v1/devices", FCM),
    ("GET", "/v1/devices", None),
    ("DELETE", "/v1/devices/fcm-0123", None),
    ("GET", "/v1/webpush/vapid-public-key", None),
    ("GET", "/v1/stream", None),
]


@pytest.mark.parametrize(("method", "path", "body"), USER_ENDPOINTS)
def test_user_endpoints_refuse_missing_expired_and_forged_tokens(gateway: Gateway, method: str, path: str,
                                                                 body: object) -> None:
    user = uid()
    credentials = {
        "none": {},
        "expired": {"Authorization": f"Bearer {tokens.issue(user, 5, now=time.time() - 60)}"},
        "forged": {"Authorization": f"Bearer {forged(user)}"},
        "not bearer": {"Authorization": f"Basic {token(user)}"},
        "api key": {"Authorization": f"Bearer {API_KEY}"},
    }
    with httpx.Client(base_url=gateway.url, timeout=10) as http:
        for what, headers in credentials.items():
            response = http.request(method, path, json=body, headers=headers)
            assert response.status_code == 401, (what, response.text)
            assert response.json()["error"] == "unauthorized"
            assert response.headers["www-authenticate"].startswith("Bearer")
        with http.stream(method, path, json=body, headers={"Authorization": f"Bearer {token(user)}"}) as ok:
            assert ok.status_code != 401


def test_api_endpoints_take_the_token_in_the_header_only(gateway: Gateway) -> None:
    with httpx.Client(base_url=gateway.url, timeout=10) as http:
        assert http.get("/v1/notifications", params={"token": token(uid())}).status_code == 401


# The inbox ----------------------------------------------------------------------------------------
def test_list_pages_newest_first_with_a_cursor_and_an_unread_filter(gateway: Gateway) -> None:
    user = uid()
    ids, entry_ids = zip(*seed_entries(user, 5))
    Inbox().mark_read(user, [ids[3]])
    with gateway.client(token(user)) as http:
        first = http.get("/v1/notifications", params={"limit": 2}).json()
        assert [i["id"] for i in first["items"]] == [ids[4], ids[3]]
        assert first["items"][0]["read"] is False and first["items"][1]["read"] is True
        assert [i["entry_id"] for i in first["items"]] == [entry_ids[4], entry_ids[3]], \
            "each item carries the inbox entry id it was stored under (the id to resume a stream from)"
        assert first["next_cursor"] == entry_ids[3]
        rest = http.get("/v1/notifications", params={"limit": 10, "before": first["next_cursor"]}).json()
        assert [i["id"] for i in rest["items"]] == [ids[2], ids[1], ids[0]]
        assert [i["entry_id"] for i in rest["items"]] == [entry_ids[2], entry_ids[1], entry_ids[0]]
        assert rest["next_cursor"] is None
        unread = http.get("/v1/notifications", params={"unread": "true", "limit": 10}).json()
        assert [i["id"] for i in unread["items"]] == [ids[4], ids[2], ids[1], ids[0]]
        one = http.get(f"/v1/notifications/{ids[1]}").json()
        assert one["title"] == "title 1" and one["read"] is False


def test_unread_count_and_mark_read_by_ids_and_all(gateway: Gateway) -> None:
    user = uid()
    ids = seed(user, 4)
    with gateway.client(token(user)) as http:
        assert http.get("/v1/notifications/unread-count").json() == {"unread": 4}
        read = http.post("/v1/notifications/read", json={"ids": ids[:2]})
        assert read.json() == {"marked": 2, "unknown": [], "unread": 2}
        again = http.post("/v1/notifications/read", json={"ids": ids[:2]})
        assert again.json() == {"marked": 0, "unknown": [], "unread": 2}, "already read: known, not marked"
        assert http.post("/v1/notifications/read", json={"all": True}).json() == {"marked": 2, "unknown": [],
                                                                                  "unread": 0}
        assert http.get("/v1/notifications/unread-count").json() == {"unread": 0}


def test_mark_read_takes_the_entry_id_a_live_client_has_and_reports_unknown_ids(gateway: Gateway) -> None:
    """The SSE ``id:`` / WebSocket ``id`` is an inbox entry id, and that is what a client keeps."""
    user = uid()
    box = Inbox()
    added = [box.append(user, {"id": f"n{i}-{uid('x')}", "type": "test", "title": f"t{i}"}) for i in range(3)]
    first_nid = box.list(user, limit=3).items[-1]["id"]
    with gateway.client(token(user)) as http:
        by_entry = http.post("/v1/notifications/read", json={"ids": [added[1].entry_id]})
        assert by_entry.status_code == 200, by_entry.text
        assert by_entry.json() == {"marked": 1, "unknown": [], "unread": 2}
        items = {i["entry_id"]: i["read"] for i in http.get("/v1/notifications").json()["items"]}
        assert items == {added[0].entry_id: False, added[1].entry_id: True, added[2].entry_id: False}
        nothing = ["1-0", "no-such-notification", "99999999999999999999999-0", "12345"]
        mixed = http.post("/v1/notifications/read", json={"ids": [first_nid, *nothing, added[1].entry_id]})
        assert mixed.json() == {"marked": 1, "unknown": nothing, "unread": 1}


def test_delete_removes_and_reports_missing(gateway: Gateway) -> None:
    user = uid()
    ids = seed(user, 2)
    with gateway.client(token(user)) as http:
        assert http.delete(f"/v1/notifications/{ids[0]}").json() == {"deleted": True, "unread": 1}
        missing = http.delete(f"/v1/notifications/{ids[0]}")
        assert missing.status_code == 404 and missing.json()["error"] == "not_found"
        assert [i["id"] for i in http.get("/v1/notifications").json()["items"]] == [ids[1]]
        assert http.get(f"/v1/notifications/{ids[0]}").status_code == 404


def test_a_user_can_never_touch_another_users_notifications(gateway: Gateway) -> None:
    alice, mallory = uid("alice"), uid("mallory")
    ids = seed(alice, 2)
    with gateway.client(token(mallory)) as http:
        assert http.get("/v1/notifications").json()["items"] == []
        assert http.get("/v1/notifications/unread-count").json() == {"unread": 0}
        assert http.get(f"/v1/notifications/{ids[0]}").status_code == 404
        assert http.post("/v1/notifications/read", json={"ids": ids}).json() == {"marked": 0, "unknown": ids,
                                                                                 "unread": 0}
        assert http.post("/v1/notifications/read", json={"all": True}).json()["unread"] == 0
        assert http.delete(f"/v1/notifications/{ids[0]}").status_code == 404
        with_user_param = http.get("/v1/notifications", params={"user_id": alice}).json()
        assert with_user_param["items"] == []
    with gateway.client(token(alice)) as http:
        page = http.get("/v1/notifications").json()["items"]
        assert [i["id"] for i in page] == ids[::-1] and not any(i["read"] for i in page)
        assert http.get("/v1/notifications/unread-count").json() == {"unread": 2}


@pytest.mark.parametrize(("body", "needle"), [
    ({}, "ids"),
    ({"ids": "abc"}, "ids"),
    ({"ids": ["a"], "all": True}, "either"),
    ({"all": False}, "either"),
    ({"ids": [""]}, "ids"),
    ({"ids": ["a"], "extra": 1}, "extra"),
    ("not json", "json"),
])
def test_bad_read_bodies_get_a_clear_422(gateway: Gateway, body: object, needle: str) -> None:
    with gateway.client(token(uid())) as http:
        if isinstance(body, str):
            response = http.post("/v1/notifications/read", content=body, headers={"Content-Type": "application/json"})
        else:
            response = http.post("/v1/notifications/read", json=body)
    assert response.status_code == 422, response.text
    payload = response.json()
    assert payload["error"] == "invalid_request"
    assert needle in payload["message"].lower()


def test_bad_query_parameters_get_a_clear_422(gateway: Gateway) -> None:
    with gateway.client(token(uid())) as http:
        for params, needle in (({"limit": 0}, "limit"), ({"limit": 1000}, "limit"),
                               ({"before": "yesterday"}, "cursor"), ({"unread": "maybe"}, "unread")):
            response = http.get("/v1/notifications", params=params)
            assert response.status_code == 422, (params, response.text)
            assert needle in response.json()["message"], response.json()


# Preferences ------------------------------------------------------------------------------------
def test_preferences_round_trip_and_validation(gateway: Gateway) -> None:
    with gateway.client(token(uid())) as http:
        assert http.get("/v1/preferences").json()["channels"] == {}
        prefs = {"channels": {"email": False}, "disabled_types": ["marketing"],
                 "quiet_hours": {"start": "22:00", "end": "07:00"}, "timezone": "Europe/Berlin",
                 "email": "a@example.com", "digests": {"comment": {"at": "09:00"}}}
        saved = http.put("/v1/preferences", json=prefs).json()
        assert saved == {**prefs, "channels": {"email": False}}
        assert http.get("/v1/preferences").json() == saved
        for bad, needle in (({"timezone": "Mars/Olympus"}, "time zone"), ({"channels": {"pigeon": True}}, "channels"),
                            ({"quiet_hours": {"start": "25:00", "end": "07:00"}}, "HH:MM"),
                            ({"colour": "blue"}, "colour"), ({"email": "nope"}, "email"),
                            ({"digests": {"comment": {"at": "9am"}}}, "HH:MM")):
            response = http.put("/v1/preferences", json=bad)
            assert response.status_code == 422, (bad, response.text)
            assert needle in response.json()["message"], response.json()
        assert http.get("/v1/preferences").json() == saved


# Devices ------------------------------------------------------------------------------------------
def test_devices_register_list_and_remove_per_user(gateway: Gateway) -> None:
    alice, bob = uid("alice"), uid("bob")
    with gateway.client(token(alice)) as http:
        created = http.post("/v1/devices", json=WEBPUSH)
        assert created.status_code == 201, created.text
        device = created.json()
        assert device["platform"] == "webpush" and device["id"].startswith("webpush-")
        again = http.post("/v1/devices", json=WEBPUSH).json()
        assert again["id"] == device["id"]
        fcm = http.post("/v1/devices", json=FCM).json()
        listed = http.get("/v1/devices").json()["devices"]
        assert sorted(d["id"] for d in listed) == sorted([device["id"], fcm["id"]])
        bad = http.post("/v1/devices", json={"platform": "fcm"})
        assert bad.status_code == 422 and "token" in bad.json()["message"]
        bad = http.post("/v1/devices", json={"platform": "carrier-pigeon", "token": "x"})
        assert bad.status_code == 422
    with gateway.client(token(bob)) as http:
        assert http.get("/v1/devices").json()["devices"] == []
        assert http.delete(f"/v1/devices/{device['id']}").status_code == 404
    with gateway.client(token(alice)) as http:
        assert http.delete(f"/v1/devices/{device['id']}").status_code == 204
        assert http.delete(f"/v1/devices/{device['id']}").status_code == 404
        assert [d["id"] for d in http.get("/v1/devices").json()["devices"]] == [fcm["id"]]


def test_vapid_public_key_says_when_web_push_is_not_configured(gateway: Gateway) -> None:
    with gateway.client(token(uid())) as http:
        response = http.get("/v1/webpush/vapid-public-key")
    assert response.status_code == 404 and response.json()["error"] == "not_configured"


def test_vapid_public_key_is_served_when_configured() -> None:
    key = "BPyRvrqQd_lLgK3GfJ8bqDgIIdp2qC-0wdhpvFtVxtyr3kdz7zW6jvxHEQtUoU1Pv2sMBZ8BVBrM0yJLQDGxJVU"
    gw = Gateway({"NOTIFIER_VAPID_PUBLIC_KEY": key + "="}).wait_ready()
    try:
        with gw.client(token(uid())) as http:
            assert http.get("/v1/webpush/vapid-public-key").json() == {"key": key}
    finally:
        gw.stop()


# Service sending ----------------------------------------------------------------------------------
def test_notify_needs_the_server_api_key(gateway: Gateway) -> None:
    body = {"user_id": uid(), "notification": {"type": "test", "title": "hi"}}
    with httpx.Client(base_url=gateway.url, timeout=10) as http:
        for headers in ({}, {"Authorization": f"Bearer {token(uid())}"}, {"X-API-Key": "wrong"},
                        {"Authorization": "Bearer wrong"}):
            response = http.post("/v1/notify", json=body, headers=headers)
            assert response.status_code == 401, (headers, response.text)
        bad = http.post("/v1/notify", json={"user_id": uid(), "notification": {"title": "no type"}},
                        headers={"X-API-Key": API_KEY})
        assert bad.status_code == 422 and "notification.type" in bad.json()["message"]
        bad = http.post("/v1/notify/bulk", json={"items": []}, headers={"X-API-Key": API_KEY})
        assert bad.status_code == 422


@pytest.mark.parametrize("scheme", ["redis://:s3cret@127.0.0.1:{port}/0", "amqp://guest:s3cret@127.0.0.1:{port}//"])
def test_notify_answers_503_with_retry_after_when_the_broker_is_down(scheme: str) -> None:
    """Nothing listens at the broker's port (connections are refused, so the producer gives up fast)."""
    gw = Gateway({"NOTIFIER_BROKER_URL": scheme.format(port=free_port())}).wait_ready()
    item = {"user_id": uid(), "notification": {"type": "test", "title": "hi"}}
    try:
        with httpx.Client(base_url=gw.url, timeout=30, headers={"X-API-Key": API_KEY}) as http:
            for path, body in (("/v1/notify", item), ("/v1/notify/bulk", {"items": [item]})):
                response = http.post(path, json=body)
                assert response.status_code == 503, (path, response.text)
                assert response.headers["retry-after"] == "2"
                assert response.json() == {"error": "unavailable", "message": "the message broker is "
                                           "unreachable, so nothing was sent; retry shortly"}
        assert "s3cret" not in gw.log()
    finally:
        gw.stop()


# Limits and operations ----------------------------------------------------------------------------
def test_request_bodies_over_the_limit_get_413(gateway: Gateway) -> None:
    big = b'{"ids": ["' + b"a" * (70 * 1024) + b'"]}'
    with gateway.client(token(uid())) as http:
        declared = http.post("/v1/notifications/read", content=big, headers={"Content-Type": "application/json"})
        assert declared.status_code == 413 and declared.json()["error"] == "too_large"

        def chunks() -> Iterator[bytes]:
            for i in range(0, len(big), 8192):
                yield big[i:i + 8192]

        streamed = http.post("/v1/notifications/read", content=chunks(), headers={"Content-Type": "application/json"})
        assert streamed.status_code == 413
    with httpx.Client(base_url=gateway.url, timeout=10) as http:
        response = http.post("/v1/notify", content=big, headers={"X-API-Key": API_KEY,
                                                                 "Content-Type": "application/json"})
        assert response.status_code == 413


def test_health_openapi_and_static_client(gateway: Gateway) -> None:
    with httpx.Client(base_url=gateway.url, timeout=10) as http:
        health = http.get("/healthz")
        assert health.status_code == 200 and health.json()["redis"] == "ok"
        paths = http.get("/openapi.json").json()["paths"]
        for path in ("/v1/notifications", "/v1/notifications/unread-count", "/v1/notifications/read",
                     "/v1/notifications/{notification_id}", "/v1/preferences", "/v1/devices",
                     "/v1/devices/{device_id}", "/v1/webpush/vapid-public-key", "/v1/notify", "/v1/stream",
                     "/healthz"):
            assert path in paths
        for docs in ("/docs", "/redoc"):
            page = http.get(docs)
            assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
            assert page.status_code == 200 and assets and all(a.startswith("/") for a in assets), (docs, assets)
            assert all(http.get(a).status_code == 200 for a in assets), "the docs' scripts and styles are served"
        js = http.get("/static/notifier-client.js")
        assert js.status_code == 200 and "export class NotifierClient" in js.text
        page = http.get("/")
        assert page.status_code == 200 and page.headers["referrer-policy"] == "no-referrer"
        assert "content-security-policy" in page.headers


def test_stream_refuses_a_bad_last_event_id(gateway: Gateway) -> None:
    stream = SSE(gateway, token(uid()), last_event_id="not-an-id")
    try:
        assert stream.status == 422 and b"Last-Event-ID" in stream.body
    finally:
        stream.close()


def test_access_log_does_not_show_query_tokens(gateway: Gateway) -> None:
    secret = token(uid())
    stream = SSE(gateway, query=f"?token={secret}")
    try:
        assert stream.status == 200
        assert stream.next("connected")[0] == "connected"
    finally:
        stream.close()
    assert "/v1/stream?token=***" in gateway.log()
    assert secret not in gateway.log()
    ws_secret = token(uid())
    with gateway.ws(ws_secret) as ws:
        assert ws.next("connected")["type"] == "connected"
    wait_for(lambda: "/v1/ws?token=***" in gateway.log(), message="the WebSocket upgrade log line")
    assert ws_secret not in gateway.log()


def test_api_requests_per_user_are_rate_limited() -> None:
    limited = Gateway(env={"NOTIFIER_API_RATE_LIMIT": "5/60"}).wait_ready()
    try:
        alice, bob = uid(), uid()
        with limited.client(token(alice)) as client:
            codes = [client.get("/v1/notifications/unread-count").status_code for _ in range(7)]
            assert codes == [200] * 5 + [429] * 2
            refused = client.get("/v1/notifications")
            assert refused.status_code == 429 and refused.json()["error"] == "rate_limited"
            assert refused.headers["Retry-After"] == "60"
        with limited.client(token(bob)) as client:
            assert client.get("/v1/notifications/unread-count").status_code == 200, "limits are per user"
    finally:
        limited.stop()
