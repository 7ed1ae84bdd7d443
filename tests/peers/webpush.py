"""A web push service on 127.0.0.1 that reads pushes the way the subscribed browser would.

``subscribe()`` makes a subscription like ``PushManager.subscribe()`` does (a P-256 key pair and a
16-byte auth secret, kept here as the browser would keep them). Each push's ``aes128gcm`` body is
decrypted with them, and its VAPID ``Authorization: vapid t=...,k=...`` is checked against the
application server key the browser subscribed with; so what the test reads is what the user's service
worker would get. It answers 201, or 404/410/429/503 when told to, per subscription.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import http_ece
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid.jwt import decode as vapid_decode

STATUS = {"not_found": 404, "gone": 410, "too_many": 429, "unavailable": 503}
MAX_BODY = 4096
"""What a push service must accept (RFC 8030); this one accepts no more."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class Received:
    subscription: str
    headers: dict[str, str]
    claims: dict[str, Any]
    plaintext: bytes
    at: float

    @property
    def json(self) -> Any:
        return json.loads(self.plaintext)


@dataclass
class _Subscriber:
    private_key: ec.EllipticCurvePrivateKey
    auth: bytes


@dataclass
class _State:
    server_key: str
    """The VAPID public key (applicationServerKey) the browser subscribed with."""
    subscribers: dict[str, _Subscriber] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    attempts: dict[str, list[float]] = field(default_factory=dict)
    script: dict[str, list[tuple[str, int | None]]] = field(default_factory=dict)
    refusals: list[tuple[int, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    state: _State
    origin: str

    def log_message(self, *args: Any) -> None:
        pass

    def _reply(self, status: int, reason: str = "", headers: dict[str, str] | None = None) -> None:
        if status >= 400:
            with self.state.lock:
                self.state.refusals.append((status, reason))
        data = reason.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        s = self.state
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        sub_id = self.path.rsplit("/", 1)[-1]
        subscriber = s.subscribers.get(sub_id)
        if not self.path.startswith("/push/") or subscriber is None:
            self._reply(404, "no such subscription")
            return
        claims = self._vapid()
        if claims is None:
            return
        if self.headers.get("TTL") is None or not self.headers["TTL"].isdigit():
            self._reply(400, "TTL header missing")
            return
        if self.headers.get("Content-Encoding") != "aes128gcm":
            self._reply(415, "Content-Encoding must be aes128gcm")
            return
        if len(body) > MAX_BODY:
            self._reply(413, f"payload of {len(body)} bytes is too large")
            return
        try:
            plaintext = http_ece.decrypt(body, private_key=subscriber.private_key, auth_secret=subscriber.auth,
                                         version="aes128gcm")
        except Exception as exc:  # any failure to decrypt is the sender's fault
            self._reply(400, f"cannot decrypt: {exc}")
            return
        with s.lock:
            s.attempts.setdefault(sub_id, []).append(time.time())
            queued = s.script.get(sub_id)
            answer = queued.pop(0) if queued else None
            if answer is None:
                s.received.append(Received(sub_id, {k.lower(): v for k, v in self.headers.items()}, claims,
                                          plaintext, time.time()))
        if answer is None:
            self._reply(201, headers={"Location": f"{self.origin}/message/{secrets.token_hex(8)}"})
            return
        kind, retry_after = answer
        self._reply(STATUS[kind], kind, {"Retry-After": str(retry_after)} if retry_after is not None else None)

    def _vapid(self) -> dict[str, Any] | None:
        """The verified VAPID claims, or None after answering 401/403 as a push service would."""
        auth = self.headers.get("Authorization", "")
        scheme, _, params = auth.partition(" ")
        parts = dict(p.split("=", 1) for p in params.split(",") if "=" in p)
        if scheme.lower() != "vapid" or "t" not in parts or "k" not in parts:
            self._reply(401, "missing VAPID authorization")
            return None
        if parts["k"] != self.state.server_key:
            self._reply(403, "VAPID key does not match the subscription's applicationServerKey")
            return None
        try:
            claims: dict[str, Any] = vapid_decode(parts["t"], parts["k"])
        except Exception:
            self._reply(403, "bad VAPID signature")
            return None
        now = time.time()
        if claims.get("aud") != self.origin or not claims.get("sub") or not now < claims.get("exp", 0) <= now + 86400:
            self._reply(403, f"bad VAPID claims {claims}")
            return None
        return claims


class WebPushPeer:
    """The fake push service; ``subscribe()`` returns a subscription as a browser would."""

    def __init__(self, server_public_key: str) -> None:
        self.state = _State(server_public_key)
        handler = type("Handler", (_Handler,), {"state": self.state})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        handler.origin = self.origin
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> WebPushPeer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def subscribe(self) -> dict[str, Any]:
        """A new ``PushSubscription.toJSON()``: endpoint, p256dh (public key) and auth secret."""
        sub_id = secrets.token_urlsafe(12)
        key = ec.generate_private_key(ec.SECP256R1())
        auth = os.urandom(16)
        self.state.subscribers[sub_id] = _Subscriber(key, auth)
        p256dh = key.public_key().public_bytes(serialization.Encoding.X962,
                                               serialization.PublicFormat.UncompressedPoint)
        return {"endpoint": f"{self.origin}/push/{sub_id}", "expirationTime": None,
                "keys": {"p256dh": b64url(p256dh), "auth": b64url(auth)}}

    @staticmethod
    def id_of(subscription: dict[str, Any]) -> str:
        return str(subscription["endpoint"]).rsplit("/", 1)[-1]

    def fail(self, subscription: dict[str, Any], *answers: str | tuple[str, int]) -> None:
        """Answer the next pushes with these (``"gone"``, ``("too_many", 2)`` = with Retry-After 2)."""
        self.state.script[self.id_of(subscription)] = [a if isinstance(a, tuple) else (a, None) for a in answers]

    def to(self, subscription: dict[str, Any]) -> list[Received]:
        with self.state.lock:
            return [r for r in self.state.received if r.subscription == self.id_of(subscription)]

    def attempts(self, subscription: dict[str, Any]) -> list[float]:
        with self.state.lock:
            return list(self.state.attempts.get(self.id_of(subscription), []))

    @property
    def refusals(self) -> list[tuple[int, str]]:
        return list(self.state.refusals)
