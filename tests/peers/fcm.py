"""A fake FCM HTTP v1 server on 127.0.0.1: OAuth token endpoint plus ``messages:send``.

It checks what Google would check: the service account's signed JWT assertion at the token endpoint,
the bearer token and project on every send, and the message's shape (a token, string data). It
answers with FCM's own error JSON when told to (per device token), so the channel's parsing of real
answers is what gets tested. Given a folder (``FcmPeer(tls=...)``) it serves both over HTTPS with a
certificate from a throwaway CA (``ca_file``), as Google does.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.peers.tls import serve_https

FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"
SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
"""The assertion's audience is always Google's token endpoint, whatever ``token_uri`` says."""


def _error(code: int, status: str, message: str, fcm_code: str | None = None,
           field_violation: str | None = None) -> tuple[int, dict[str, Any]]:
    details: list[dict[str, Any]] = []
    if fcm_code:
        details.append({"@type": FCM_ERROR, "errorCode": fcm_code})
    if field_violation:
        details.append({"@type": BAD_REQUEST, "fieldViolations": [{"field": field_violation,
                                                                    "description": message}]})
    return code, {"error": {"code": code, "message": message, "status": status, "details": details}}


ANSWERS: dict[str, tuple[int, dict[str, Any]]] = {
    "unregistered": _error(404, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED"),
    "invalid_token": _error(400, "INVALID_ARGUMENT", "The registration token is not a valid FCM registration token",
                            "INVALID_ARGUMENT", "message.token"),
    "invalid_payload": _error(400, "INVALID_ARGUMENT", "Invalid value at 'message.android.ttl' (type.googleapis."
                              "com/google.protobuf.Duration), Field 'ttl', Illegal duration format",
                              "INVALID_ARGUMENT", "message.android.ttl"),
    "quota": _error(429, "RESOURCE_EXHAUSTED", "Quota exceeded for quota metric 'Send requests'.",
                    "QUOTA_EXCEEDED"),
    "unavailable": _error(503, "UNAVAILABLE", "The service is currently unavailable.", "UNAVAILABLE"),
}
"""What the peer can be told to answer for a token (FCM's documented error bodies)."""


@dataclass
class Received:
    token: str
    message: dict[str, Any]
    at: float
    name: str = ""
    """The message's ``name`` the peer answered with (FCM's id for it)."""


@dataclass
class _State:
    project_id: str
    public_key: Any
    client_email: str
    access_tokens: set[str] = field(default_factory=set)
    token_requests: int = 0
    reject_credentials: bool = False
    received: list[Received] = field(default_factory=list)
    attempts: dict[str, list[float]] = field(default_factory=dict)
    script: dict[str, list[tuple[str, int | None]]] = field(default_factory=dict)
    always: dict[str, tuple[str, int | None]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    state: _State
    base_url: str

    def log_message(self, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path == "/token":
            self._token(body)
        elif self.path.startswith("/v1/projects/") and self.path.endswith("/messages:send"):
            self._send(self.path[len("/v1/projects/"):-len("/messages:send")], body)
        else:
            self._reply(404, {"error": {"code": 404, "message": f"no route {self.path}", "status": "NOT_FOUND"}})

    def _token(self, body: bytes) -> None:
        s = self.state
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        with s.lock:
            s.token_requests += 1
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" or s.reject_credentials:
            self._reply(400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."})
            return
        try:
            claims = jwt.decode(form.get("assertion", ""), s.public_key, algorithms=["RS256"],
                                audience=GOOGLE_TOKEN_AUDIENCE, issuer=s.client_email)
        except jwt.PyJWTError as exc:
            self._reply(400, {"error": "invalid_grant", "error_description": f"Invalid JWT: {exc}"})
            return
        if SCOPE not in claims.get("scope", "").split():
            self._reply(400, {"error": "invalid_scope", "error_description": "scope missing"})
            return
        token = "ya29." + secrets.token_urlsafe(24)
        with s.lock:
            s.access_tokens.add(token)
        self._reply(200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"})

    def _send(self, project: str, body: bytes) -> None:
        s = self.state
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in s.access_tokens:
            self._reply(*_error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials."))
            return
        if project != s.project_id:
            self._reply(*_error(403, "PERMISSION_DENIED", f"Permission 'cloudmessaging.messages.create' denied on "
                                f"resource '//cloudresourcemanager.googleapis.com/projects/{project}'"))
            return
        try:
            message = json.loads(body)["message"]
            token = message["token"]
        except (ValueError, KeyError, TypeError):
            self._reply(*_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.", "INVALID_ARGUMENT"))
            return
        problem = _check_message(message)
        if problem:
            with s.lock:
                s.problems.append(problem)
            self._reply(*_error(400, "INVALID_ARGUMENT", problem, "INVALID_ARGUMENT", "message"))
            return
        with s.lock:
            s.attempts.setdefault(token, []).append(time.time())
            queued = s.script.get(token)
            answer = queued.pop(0) if queued else s.always.get(token)
            name = f"projects/{project}/messages/{secrets.token_hex(8)}"
            if answer is None:
                s.received.append(Received(token, message, time.time(), name))
        if answer is None:
            self._reply(200, {"name": name})
            return
        kind, retry_after = answer
        status, error = ANSWERS[kind]
        self._reply(status, error, {"Retry-After": str(retry_after)} if retry_after is not None else None)


def _check_message(message: dict[str, Any]) -> str | None:
    """What FCM would refuse in a message's shape."""
    data = message.get("data", {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        return "Invalid value at 'message.data': data values must be strings"
    android = message.get("android", {})
    if android.get("priority", "NORMAL") not in ("NORMAL", "HIGH"):
        return "Invalid value at 'message.android.priority'"
    ttl = android.get("ttl", "0s")
    if not (isinstance(ttl, str) and ttl.endswith("s") and ttl[:-1].replace(".", "", 1).isdigit()):
        return "Invalid value at 'message.android.ttl'"
    if not message.get("notification", {}).get("title"):
        return "notification.title missing"
    return None


class FcmPeer:
    """The fake FCM service; ``service_account(path)`` writes credentials that point at it."""

    def __init__(self, project_id: str = "notifier-test", tls: Path | None = None) -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.client_email = f"notifier@{project_id}.iam.gserviceaccount.com"
        self.state = _State(project_id, self._key.public_key(), self.client_email)
        handler = type("Handler", (_Handler,), {"state": self.state})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.ca_file = serve_https(self.server, tls) if tls is not None else None
        self.url = f"{'https://localhost' if tls else 'http://127.0.0.1'}:{self.server.server_address[1]}"
        handler.base_url = self.url
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> FcmPeer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def service_account(self, path: Path, project_id: str | None = None) -> Path:
        """Write a service-account JSON whose ``token_uri`` is this peer (a real RSA key)."""
        pem = self._key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()).decode()
        path.write_text(json.dumps({
            "type": "service_account", "project_id": project_id or self.state.project_id,
            "private_key_id": secrets.token_hex(20), "private_key": pem, "client_email": self.client_email,
            "client_id": "1234567890", "token_uri": f"{self.url}/token",
        }))
        return path

    def env(self, credentials: Path) -> dict[str, str]:
        return {"NOTIFIER_FCM_CREDENTIALS": str(credentials), "NOTIFIER_FCM_ENDPOINT": self.url}

    def fail(self, token: str, *answers: str | tuple[str, int]) -> None:
        """Answer the next sends to ``token`` with these (``"unregistered"``, ``("quota", 2)`` = with
        Retry-After 2), then accept."""
        self.state.script[token] = [a if isinstance(a, tuple) else (a, None) for a in answers]

    def refuse(self, token: str, answer: str) -> None:
        """Answer every send to ``token`` with ``answer``."""
        self.state.always[token] = (answer, None)

    def reject_credentials(self, value: bool = True) -> None:
        self.state.reject_credentials = value

    def to(self, token: str) -> list[Received]:
        with self.state.lock:
            return [r for r in self.state.received if r.token == token]

    def attempts(self, token: str) -> list[float]:
        with self.state.lock:
            return list(self.state.attempts.get(token, []))

    @property
    def problems(self) -> list[str]:
        return list(self.state.problems)
