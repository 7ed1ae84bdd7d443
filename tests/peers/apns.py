"""A fake APNs provider API on 127.0.0.1: HTTP/2 over TLS (ALPN h2), with a throwaway CA.

Like Apple, it checks the provider JWT (ES256, ``kid``, ``iss``, ``iat``) against the .p8 key's public
half, the ``apns-topic``, ``apns-push-type`` and ``apns-priority`` headers and the device token, and
answers per device token as told: 200, 410 Unregistered, 400 BadDeviceToken, 429, 503, each with
Apple's JSON reason, or 403 ExpiredProviderToken, after which that provider JWT is refused on every
push (as Apple does for a token it considers too old). It counts TLS connections, so a test can tell
one persistent connection from one per message.
"""

from __future__ import annotations

import itertools
import json
import socket
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import ConnectionTerminated, DataReceived, RequestReceived, StreamEnded
from h2.settings import SettingCodes

from tests.peers.tls import make_tls

ANSWERS: dict[str, tuple[int, str]] = {
    "gone": (410, "Unregistered"),
    "bad_token": (400, "BadDeviceToken"),
    "too_many": (429, "TooManyRequests"),
    "unavailable": (503, "ServiceUnavailable"),
    "expired_provider_token": (403, "ExpiredProviderToken"),
}


@dataclass
class Received:
    token: str
    headers: dict[str, str]
    payload: dict[str, Any]
    connection: int
    alpn: str | None
    at: float


@dataclass
class _State:
    public_key: ec.EllipticCurvePublicKey
    key_id: str
    team_id: str
    topics: set[str]
    received: list[Received] = field(default_factory=list)
    attempts: dict[str, list[float]] = field(default_factory=dict)
    jwts: dict[str, list[str]] = field(default_factory=dict)
    """Device token -> the provider JWT of each push to it that carried a valid signature."""
    expired_jwts: set[str] = field(default_factory=set)
    script: dict[str, list[tuple[str, int | None]]] = field(default_factory=dict)
    always: dict[str, str] = field(default_factory=dict)
    connections: int = 0
    refusals: list[tuple[int, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def make_p8(path: Path) -> ec.EllipticCurvePrivateKey:
    """An APNs token-auth key like Apple's AuthKey_XXXX.p8 (PKCS#8 P-256)."""
    key = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return key


class ApnsPeer:
    """The fake APNs; ``env()`` points notifier at it (host, port, CA, key, key id, team, topic)."""

    def __init__(self, directory: Path, topic: str = "com.example.notifier", key_id: str = "ABC123DEFG",
                 team_id: str = "TEAM123456") -> None:
        self.directory = directory
        self.ca_file, cert, key = make_tls(directory)
        self.key_file = directory / "AuthKey.p8"
        self.key_id, self.team_id, self.topic = key_id, team_id, topic
        self.state = _State(make_p8(self.key_file).public_key(), key_id, team_id, {topic})
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(cert, key)
        self.context.set_alpn_protocols(["h2"])
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._ids = itertools.count(1)
        self._stopped = threading.Event()

    def start(self) -> ApnsPeer:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        for sock in [self.listener, *self._sockets]:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def env(self) -> dict[str, str]:
        return {"NOTIFIER_APNS_HOST": "localhost", "NOTIFIER_APNS_PORT": str(self.port),
                "NOTIFIER_APNS_CA_FILE": str(self.ca_file), "NOTIFIER_APNS_KEY_FILE": str(self.key_file),
                "NOTIFIER_APNS_KEY_ID": self.key_id, "NOTIFIER_APNS_TEAM_ID": self.team_id,
                "NOTIFIER_APNS_TOPIC": self.topic, "NOTIFIER_APNS_USE_SANDBOX": "true"}

    # Telling it what to answer ----------------------------------------------------------------
    def fail(self, token: str, *answers: str | tuple[str, int]) -> None:
        """Answer the next pushes to ``token`` with these (``("too_many", 2)`` adds Retry-After: 2)."""
        self.state.script[token] = [a if isinstance(a, tuple) else (a, None) for a in answers]

    def refuse(self, token: str, answer: str) -> None:
        self.state.always[token] = answer

    # What it saw ------------------------------------------------------------------------------
    def to(self, token: str) -> list[Received]:
        with self.state.lock:
            return [r for r in self.state.received if r.token == token]

    def attempts(self, token: str) -> list[float]:
        with self.state.lock:
            return list(self.state.attempts.get(token, []))

    def jwts(self, token: str) -> list[str]:
        """The provider JWT each push to ``token`` carried, in order."""
        with self.state.lock:
            return list(self.state.jwts.get(token, []))

    @property
    def connections(self) -> int:
        return self.state.connections

    @property
    def refusals(self) -> list[tuple[int, str]]:
        return list(self.state.refusals)

    # Serving ----------------------------------------------------------------------------------
    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            self._sockets.append(raw)
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        try:
            sock = self.context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            return
        connection = next(self._ids)
        with self.state.lock:
            self.state.connections += 1
        alpn = sock.selected_alpn_protocol()
        h2 = H2Connection(H2Configuration(client_side=False, header_encoding="utf-8"))
        h2.initiate_connection()
        h2.update_settings({SettingCodes.MAX_CONCURRENT_STREAMS: 1000})
        streams: dict[int, dict[str, Any]] = {}
        try:
            sock.sendall(h2.data_to_send())
            while True:
                data = sock.recv(65535)
                if not data:
                    return
                for event in h2.receive_data(data):
                    if isinstance(event, RequestReceived):
                        streams[event.stream_id] = {"headers": dict(event.headers), "body": b""}
                    elif isinstance(event, DataReceived):
                        streams[event.stream_id]["body"] += event.data
                        h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    elif isinstance(event, StreamEnded):
                        request = streams.pop(event.stream_id)
                        self._respond(h2, event.stream_id, request, connection, alpn)
                    elif isinstance(event, ConnectionTerminated):
                        return
                sock.sendall(h2.data_to_send())
        except (OSError, ssl.SSLError):
            return
        finally:
            sock.close()

    def _respond(self, h2: H2Connection, stream_id: int, request: dict[str, Any], connection: int,
                 alpn: str | None) -> None:
        headers: dict[str, str] = request["headers"]
        apns_id = headers.get("apns-id") or str(uuid.uuid4()).upper()
        status, reason, retry_after = self._decide(headers, request["body"], connection, alpn)
        out = [(":status", str(status)), ("apns-id", apns_id)]
        if retry_after is not None:
            out.append(("retry-after", str(retry_after)))
        if reason is None:
            h2.send_headers(stream_id, out, end_stream=True)
            return
        with self.state.lock:
            self.state.refusals.append((status, reason))
        body = json.dumps({"reason": reason, **({"timestamp": int(time.time() * 1000)} if status == 410 else {})})
        h2.send_headers(stream_id, out + [("content-type", "application/json")])
        h2.send_data(stream_id, body.encode(), end_stream=True)

    def _decide(self, headers: dict[str, str], body: bytes, connection: int,
                alpn: str | None) -> tuple[int, str | None, int | None]:
        s = self.state
        path = headers.get(":path", "")
        if headers.get(":method") != "POST" or not path.startswith("/3/device/"):
            return 405 if headers.get(":method") != "POST" else 404, "BadPath", None
        token = path[len("/3/device/"):]
        auth = headers.get("authorization", "")
        if not auth.startswith("bearer "):
            return 403, "MissingProviderToken", None
        try:
            header = jwt.get_unverified_header(auth[7:])
            claims = jwt.decode(auth[7:], s.public_key, algorithms=["ES256"], options={"require": ["iat", "iss"]})
        except jwt.PyJWTError:
            return 403, "InvalidProviderToken", None
        if header.get("kid") != s.key_id or claims["iss"] != s.team_id:
            return 403, "InvalidProviderToken", None
        with s.lock:
            s.jwts.setdefault(token, []).append(auth[7:])
            stale = auth[7:] in s.expired_jwts
        if claims["iat"] < time.time() - 3600 or stale:
            return 403, "ExpiredProviderToken", None
        if headers.get("apns-topic") not in s.topics:
            return 400, "TopicDisallowed" if headers.get("apns-topic") else "MissingTopic", None
        if headers.get("apns-push-type") not in ("alert", "background"):
            return 400, "InvalidPushType", None
        if headers.get("apns-priority", "10") not in ("5", "10"):
            return 400, "BadPriority", None
        try:
            payload = json.loads(body)
        except ValueError:
            return 400, "PayloadEmpty" if not body else "BadPayload", None
        if len(body) > 4096:
            return 413, "PayloadTooLarge", None
        if len(token) < 64 or not all(c in "0123456789abcdef" for c in token):
            return 400, "BadDeviceToken", None
        with s.lock:
            s.attempts.setdefault(token, []).append(time.time())
            queued = s.script.get(token)
            answer = queued.pop(0) if queued else ((s.always[token], None) if token in s.always else None)
            if answer is not None and answer[0] == "expired_provider_token":
                s.expired_jwts.add(auth[7:])
            if answer is None:
                s.received.append(Received(token, headers, payload, connection, alpn, time.time()))
        if answer is not None:
            status, reason = ANSWERS[answer[0]]
            return status, reason, answer[1]
        return 200, None, None
