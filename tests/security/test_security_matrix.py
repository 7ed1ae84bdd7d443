"""Who can see what: every endpoint and every connection kind against every kind of bad credential.

A victim has notifications, preferences, a device and a delivery log event, each carrying a marker. For each endpoint in the
gateway's OpenAPI schema, and for SSE and WebSocket (token in the header and in the query), these are
refused: no token, an expired one, one whose payload was swapped, one whose signature was altered,
``alg: none``, one signed with another key, one made for another audience. Another user's valid
token is accepted but sees and changes nothing of the victim's, live or stored; so do users whose ids
look like patterns (``*``) or like the victim's keys. No response, refused or not, holds a marker.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from websockets.exceptions import ConnectionClosed

from notifier import tokens
from notifier.deliverylog.events import Event
from notifier.deliverylog.store import insert_many
from notifier.deliverylog.upgrades import ensure_current
from notifier.state.devices import Devices
from notifier.state.inbox import Inbox
from notifier.state.preferences import PreferenceStore
from notifier.state.sms_status import SmsStatuses
from tests.support.gateway_support import API_KEY, SSE, Gateway
from tests.support.helpers import uid

MARKER = "victimsecret" + uid("m")[-12:]
"""In the victim's notification, data, email and device token; valid in each of them as it is."""


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def signed(claims: dict[str, Any], header: dict[str, Any] | None = None, key: bytes | None = None) -> str:
    head = b64(orjson.dumps(header or {"alg": "HS256", "typ": "JWT"})) + "." + b64(orjson.dumps(claims))
    return head + "." + b64(tokens._sign(head, key or tokens.signing_key()))


class Victim:
    def __init__(self) -> None:
        self.user = uid("victim")
        box = Inbox()
        self.nid = uid("n").replace("-", "")
        box.append(self.user, {"id": self.nid, "type": "private", "title": f"{MARKER} title", "data": {"s": MARKER}})
        PreferenceStore().set(self.user, {"email": f"{MARKER}@example.com", "timezone": "Europe/Berlin"})
        self.device = Devices().register(self.user, {"platform": "fcm", "token": f"tok{MARKER}"}).id
        ensure_current()
        insert_many([Event("sent", self.nid, self.user, "fcm", self.device, {"provider_id": MARKER})])

    def intact(self) -> None:
        item = Inbox().get(self.user, self.nid)
        assert item is not None and item["read"] is False, "the victim's notification is untouched"
        assert PreferenceStore().get(self.user).email == f"{MARKER}@example.com"
        assert [d.id for d in Devices().list(self.user)] == [self.device]


def bad_tokens(victim: str) -> dict[str, str | None]:
    now = int(time.time())
    good = tokens.issue(victim, 600)
    header, payload, signature = good.split(".")
    mallory_head, _, mallory_sig = tokens.issue(uid("mallory"), 600).split(".")
    flipped = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]
    claims = {"sub": victim, "aud": "notifier", "iat": now, "exp": now + 600}
    return {
        "none": None,
        "expired": tokens.issue(victim, 5, now=now - 60),
        "payload swapped": f"{mallory_head}.{payload}.{mallory_sig}",
        "signature altered": f"{header}.{payload}.{flipped}",
        "alg none": b64(b'{"alg":"none","typ":"JWT"}') + f".{payload}.",
        "alg HS512 header": signed(claims, {"alg": "HS512", "typ": "JWT"}),
        "other key": tokens.issue(victim, 600, key=b"k" * 40),
        "other audience": signed({**claims, "aud": "billing"}),
        "no expiry": signed({"sub": victim, "aud": "notifier", "iat": now}),
    }


@pytest.fixture(scope="module")
def gateway() -> Iterator[Gateway]:
    gw = Gateway().wait_ready()
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def victim(gateway: Gateway) -> Victim:
    return Victim()


def user_endpoints(victim: Victim) -> dict[tuple[str, str], tuple[str, Any]]:
    """(method, schema path) -> (concrete path aimed at the victim's data, body)."""
    n, d = victim.nid, victim.device
    return {
        ("GET", "/v1/notifications"): ("/v1/notifications?limit=200", None),
        ("GET", "/v1/notifications/unread-count"): ("/v1/notifications/unread-count", None),
        ("POST", "/v1/notifications/read"): ("/v1/notifications/read", {"ids": [n]}),
        ("GET", "/v1/notifications/{notification_id}"): (f"/v1/notifications/{n}", None),
        ("DELETE", "/v1/notifications/{notification_id}"): (f"/v1/notifications/{n}", None),
        ("GET", "/v1/notifications/{notification_id}/status"): (f"/v1/notifications/{n}/status", None),
        ("POST", "/v1/notifications/seen"): ("/v1/notifications/seen", {"ids": [n]}),
        ("GET", "/v1/notifications/counts"): ("/v1/notifications/counts", None),
        ("POST", "/v1/notifications/archive"): ("/v1/notifications/archive", {"ids": [n]}),
        ("POST", "/v1/notifications/unarchive"): ("/v1/notifications/unarchive", {"ids": [n]}),
        ("POST", "/v1/notifications/snooze"): ("/v1/notifications/snooze", {"ids": [n], "until": time.time() + 600}),
        ("POST", "/v1/notifications/unsnooze"): ("/v1/notifications/unsnooze", {"ids": [n]}),
        ("POST", "/v1/notifications/{notification_id}/click"): (f"/v1/notifications/{n}/click", None),
        ("GET", "/v1/preferences"): ("/v1/preferences", None),
        ("PUT", "/v1/preferences"): ("/v1/preferences", {"email": "mallory@example.com"}),
        ("GET", "/v1/devices"): ("/v1/devices", None),
        ("POST", "/v1/devices"): ("/v1/devices", {"platform": "fcm", "token": "mallory-token-0123456789"}),
        ("DELETE", "/v1/devices/{device_id}"): (f"/v1/devices/{d}", None),
        ("GET", "/v1/webpush/vapid-public-key"): ("/v1/webpush/vapid-public-key", None),
        ("GET", "/v1/channels"): ("/v1/channels", None),
        ("GET", "/v1/stream"): ("/v1/stream", None),
    }


SERVICE = {("POST", "/v1/notify"), ("POST", "/v1/notify/bulk"), ("POST", "/v1/notify/cancel"),
           ("GET", "/v1/templates/{type}/preview"), ("POST", "/v1/groups/{group_id}/devices"),
           ("GET", "/v1/groups/{group_id}/devices"), ("DELETE", "/v1/groups/{group_id}/devices/{device_id}"),
           ("POST", "/v1/admin/webhooks"), ("GET", "/v1/admin/webhooks"),
           ("DELETE", "/v1/admin/webhooks/{subscription_id}"), ("POST", "/v1/admin/webhooks/{subscription_id}/enable"),
           ("GET", "/v1/admin/notifications/{notification_id}"), ("GET", "/v1/admin/log"),
           ("GET", "/v1/admin/dead-letters"), ("POST", "/v1/admin/dead-letters/replay"), ("GET", "/v1/admin/queues")}
PUBLIC = {("GET", "/healthz"), ("GET", "/metrics")}
LINK = {("GET", "/v1/unsubscribe/{token}"), ("POST", "/v1/unsubscribe/{token}")}
"""Authorized by the signed unsubscribe token in the path alone (an email's List-Unsubscribe)."""
SIGNED = {("POST", "/v1/sms/twilio/status")}
"""Authorized by the provider's signature of the request alone (Twilio's ``X-Twilio-Signature``)."""


def request(gateway: Gateway, method: str, path: str, body: Any, credential: str | None,
            where: str = "header") -> httpx.Response:
    headers = {"Authorization": f"Bearer {credential}"} if credential and where == "header" else {}
    if credential and where == "query":
        path += ("&" if "?" in path else "?") + f"token={credential}"
    with httpx.Client(base_url=gateway.url, timeout=10) as http:
        with http.stream(method, path, json=body, headers=headers) as response:
            if response.status_code == 200 and path.startswith("/v1/stream"):
                first = []
                for line in response.iter_lines():
                    if not line and any(x.startswith("data:") for x in first):
                        break
                    first.append(line)
                return httpx.Response(200, text="\n".join(first))
            response.read()
            return response


def test_every_endpoint_is_in_the_matrix(gateway: Gateway, victim: Victim) -> None:
    schema = httpx.get(gateway.url + "/openapi.json").json()["paths"]
    routes = {(method.upper(), path) for path, item in schema.items() for method in item}
    assert routes == set(user_endpoints(victim)) | SERVICE | PUBLIC | LINK | SIGNED, \
        "a new endpoint needs a row in this matrix"


def test_the_victims_own_token_does_show_the_markers(gateway: Gateway, victim: Victim) -> None:
    """So that "no marker in any response" below means something."""
    own = tokens.issue(victim.user, 600)
    for path in ("/v1/notifications", "/v1/preferences", "/v1/devices", f"/v1/notifications/{victim.nid}/status"):
        assert MARKER in request(gateway, "GET", path, None, own).text, path


def test_bad_credentials_are_refused_on_every_user_endpoint(gateway: Gateway, victim: Victim) -> None:
    refused = []
    for kind, credential in bad_tokens(victim.user).items():
        for (method, _), (path, body) in user_endpoints(victim).items():
            for where in ("header", "query") if path.startswith("/v1/stream") else ("header",):
                response = request(gateway, method, path, body, credential, where)
                assert MARKER not in response.text, (kind, method, path)
                if response.status_code == 401 and response.json()["error"] == "unauthorized":
                    refused.append((kind, method, path, where))
                else:
                    pytest.fail(f"{kind} token {where}: {method} {path} answered {response.status_code}")
    assert len(refused) == len(bad_tokens(victim.user)) * (len(user_endpoints(victim)) + 1)
    victim.intact()


@pytest.mark.parametrize("mallory", ["mallory", "*", "?", "{victim}", "victim}:inbox"])
def test_another_users_token_sees_and_changes_nothing_of_the_victim(gateway: Gateway, victim: Victim,
                                                                   mallory: str) -> None:
    mallory = mallory.replace("victim", victim.user)
    token = tokens.issue(mallory, 600)
    for (method, _), (path, body) in user_endpoints(victim).items():
        response = request(gateway, method, path, body, token)
        assert response.status_code < 500, (method, path, response.text)
        assert MARKER not in response.text, (method, path, response.text)
    victim.intact()


@pytest.mark.parametrize("mallory", ["mallory", "*", "{victim}"])
def test_live_connections_of_another_user_receive_nothing_of_the_victim(gateway: Gateway, victim: Victim,
                                                                        mallory: str) -> None:
    mallory = mallory.replace("victim", victim.user)
    stream = SSE(gateway, tokens.issue(mallory, 600), last_event_id="0-0")
    ws = gateway.ws(tokens.issue(mallory, 600), last_event_id="0-0")
    try:
        assert stream.next("connected")[2]["user_id"] == mallory
        assert ws.next("connected")["user_id"] == mallory
        ws.send({"type": "resume", "since": "0-0", "ref": 1})
        ws.send({"type": "read", "ids": [victim.nid], "ref": 2})
        ws.send({"type": "read", "all": True, "ref": 3})
        live = uid("live").replace("-", "")
        Inbox().append(victim.user, {"id": live, "type": "private", "title": f"{MARKER} live"})
        stream.quiet(seconds=0.6)
        frames = []
        while True:
            try:
                frames.append(ws.next(timeout=0.6))
            except TimeoutError:
                break
        assert MARKER not in orjson.dumps(frames).decode()
        assert [f for f in frames if f["type"] == "notification"] == []
        Inbox().delete(victim.user, [live])
    finally:
        stream.close()
        ws.close()
    victim.intact()


def test_live_connections_refuse_every_bad_credential(gateway: Gateway, victim: Victim) -> None:
    for kind, credential in bad_tokens(victim.user).items():
        for where in ("header", "query"):
            headers = {"Authorization": f"Bearer {credential}"} if credential and where == "header" else {}
            query = f"?token={credential}" if credential and where == "query" else ""
            from websockets.sync.client import connect

            with connect(f"{gateway.ws_url}/v1/ws{query}", additional_headers=headers, open_timeout=10) as ws:
                with pytest.raises(ConnectionClosed) as closed:
                    frame = ws.recv(timeout=5)
                    pytest.fail(f"{kind} ({where}) got a frame: {frame}")
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401, (kind, where)
                assert MARKER not in (closed.value.rcvd.reason or "")


def test_service_endpoints_take_only_the_api_key(gateway: Gateway, victim: Victim) -> None:
    one = {"user_id": victim.user, "notification": {"type": "t", "title": "hi"}}
    bodies = {"/v1/notify": one, "/v1/notify/bulk": {"items": [one]}}
    attempts = {
        "none": {},
        "victim's user token": {"Authorization": f"Bearer {tokens.issue(victim.user, 600)}"},
        "wrong key header": {"X-API-Key": API_KEY + "x"},
        "wrong key bearer": {"Authorization": f"Bearer {API_KEY[:-1]}"},
        "key in the query": {},
    }
    with httpx.Client(base_url=gateway.url, timeout=10) as http:
        for path, body in bodies.items():
            for kind, headers in attempts.items():
                params = {"api_key": API_KEY, "key": API_KEY} if kind == "key in the query" else {}
                response = http.post(path, json=body, headers=headers, params=params)
                assert response.status_code == 401, (path, kind, response.text)
        for kind, headers in attempts.items():
            params = {"api_key": API_KEY, "key": API_KEY} if kind == "key in the query" else {}
            response = http.get("/v1/templates/comment/preview", headers=headers, params=params)
            assert response.status_code == 401, ("preview", kind, response.text)
        for path in ("/healthz", "/metrics"):
            response = http.get(path)
            assert response.status_code == 200 and victim.user not in response.text and MARKER not in response.text


def test_unsubscribe_links_take_only_an_unsubscribe_token(gateway: Gateway, victim: Victim) -> None:
    """Every bad token of the matrix, the victim's valid login token, and unsubscribe tokens that were
    tampered with or signed with another key: 400 ``invalid_link`` on GET and POST, nothing changed."""
    link = tokens.issue_unsubscribe(victim.user, "private")
    head, payload, signature = link.split(".")
    mallory = tokens.issue_unsubscribe(uid("mallory"), "private").split(".")
    forged = {**bad_tokens(victim.user), "victim's login token": tokens.issue(victim.user, 600),
              "payload swapped": f"{mallory[0]}.{payload}.{mallory[2]}",
              "signature altered": f"{head}.{payload}.{signature[:-4]}AAAA",
              "other key": tokens.issue_unsubscribe(victim.user, "private", key=b"k" * 40),
              "no channel": signed({"sub": victim.user, "aud": "notifier-unsubscribe", "typ": "private", "iat": 1}),
              "unknown channel": tokens.issue_unsubscribe(victim.user, "private", "pigeon")}
    with httpx.Client(base_url=gateway.url, timeout=10) as http:
        for kind, credential in forged.items():
            for method in ("GET", "POST"):
                response = http.request(method, f"/v1/unsubscribe/{credential or 'x'}",
                                        content=b"List-Unsubscribe=One-Click",
                                        headers={"Content-Type": "application/x-www-form-urlencoded"})
                assert response.status_code == 400, (kind, method, response.text)
                assert response.json()["error"] == "invalid_link", (kind, method)
                assert MARKER not in response.text
    victim.intact()
    assert PreferenceStore().get(victim.user).type_channels == {}


def test_sms_status_reports_take_only_twilios_signature(gateway: Gateway, victim: Victim) -> None:
    """This gateway has no Twilio auth token: every report is refused (403), whatever it carries (the
    matrix's tokens as bearer or as signature, the victim's login token, a signature keyed with the
    empty token or the server's secret key), and nothing is recorded."""
    url = f"{gateway.url}/v1/sms/twilio/status"
    form = {"MessageSid": "SM" + "0" * 32, "MessageStatus": "delivered", "To": "+4915112345678"}
    data = url + "".join(k + v for k, v in sorted(form.items()))
    forged = {**bad_tokens(victim.user), "victim's login token": tokens.issue(victim.user, 600),
              "empty key": base64.b64encode(hmac.new(b"", data.encode(), hashlib.sha1).digest()).decode(),
              "secret key": base64.b64encode(hmac.new(tokens.signing_key(), data.encode(),
                                                      hashlib.sha1).digest()).decode()}
    with httpx.Client(timeout=10) as http:
        for kind, credential in forged.items():
            for header in ("Authorization", "X-Twilio-Signature"):
                value = f"Bearer {credential}" if header == "Authorization" else credential or ""
                response = http.post(url, data=form, headers={header: value})
                assert response.status_code == 403, (kind, header, response.text)
                assert response.json()["error"] == "invalid_signature" and MARKER not in response.text
    assert SmsStatuses().get("twilio", form["MessageSid"]) is None
    victim.intact()


def test_unsubscribe_page_asks_and_a_browser_post_answers_a_page(gateway: Gateway) -> None:
    user = uid("reader")
    PreferenceStore().set(user, {"email": f"{user}@example.com", "channels": {"fcm": False}})
    link = f"/v1/unsubscribe/{tokens.issue_unsubscribe(user, 'digest')}"
    with httpx.Client(base_url=gateway.url, timeout=10) as browser:
        page = browser.get(link)
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert "“digest” notifications by email" in page.text and '<button type="submit">' in page.text
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert PreferenceStore().get(user).type_channels == {}, "GET changes nothing"
        done = browser.post(link, data={"List-Unsubscribe": "One-Click"}, headers={"Accept": "text/html"})
        assert done.status_code == 200 and "You will no longer receive" in done.text
    prefs = PreferenceStore().get(user)
    assert prefs.type_channels == {"digest": {"email": False}} and prefs.channels == {"fcm": False}
