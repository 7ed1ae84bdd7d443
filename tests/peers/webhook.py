"""A Standard Webhooks receiver on 127.0.0.1, as an application behind a webhook URL would run one.

Each endpoint (a path) has the secret its registration answered; every request is verified with
``standardwebhooks.Webhook(secret).verify(body, headers)`` (signature over id, timestamp and body;
timestamp within five minutes) and refused with 401 when it fails, as receivers are told to. It can be
told to answer the next requests of an endpoint with an error status (500, 429 with Retry-After, 410),
either instead of processing them or after processing them (the receiver did its work, then failed to
answer: the case a stable ``webhook-id`` lets it de-duplicate).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError

from tests.peers.http import HttpPeer, JsonHandler
from tests.peers.tls import serve_https


@dataclass
class Request:
    """One request that reached an endpoint: its headers, body, whether it verified, what was answered."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    verified: bool
    status: int

    @property
    def event(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass(frozen=True)
class Answer:
    status: int
    retry_after: int | None = None
    after_processing: bool = False
    location: str | None = None
    """A redirect's ``Location``."""


@dataclass
class _State:
    secrets: dict[str, str] = field(default_factory=dict)
    script: dict[str, list[Answer]] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    processed: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(JsonHandler):
    state: _State

    def do_POST(self) -> None:
        s = self.state
        body = self.body()
        headers = {k.lower(): v for k, v in self.headers.items()}
        secret = s.secrets.get(self.path)
        if secret is None:
            self.reply(404, {"error": f"no endpoint {self.path}"})
            return
        try:
            Webhook(secret).verify(body, headers)
            verified = True
        except WebhookVerificationError:
            verified = False
        with s.lock:
            queued = s.script.get(self.path)
            answer = queued.pop(0) if queued and verified else None
            status = 401 if not verified else answer.status if answer else 200
            request = Request(self.path, headers, body, time.time(), verified, status)
            s.requests.append(request)
            if verified and (answer is None or answer.after_processing):
                s.processed.append(request)
        if not verified:
            self.reply(401, {"error": "invalid signature"})
        elif answer is None:
            self.reply(200, {"ok": True})
        else:
            extra = {"Retry-After": str(answer.retry_after)} if answer.retry_after is not None else {}
            if answer.location:
                extra["Location"] = answer.location
            self.reply(answer.status, {"error": f"scripted {answer.status}"}, extra)


class WebhookReceiver(HttpPeer):
    """The receiver; ``accept(path, secret)`` opens an endpoint at ``url(path)``. Given a folder
    (``tls=...``) it serves HTTPS at ``https://localhost:PORT`` with a certificate from a throwaway CA
    (``ca_file``)."""

    def __init__(self, tls: Path | None = None) -> None:
        self.state = _State()
        super().__init__(_Handler, self.state)
        self.ca_file = serve_https(self.server, tls) if tls is not None else None
        host = "https://localhost" if tls is not None else "http://127.0.0.1"
        self.base = f"{host}:{self.port}"

    def url(self, path: str) -> str:
        return self.base + path

    def accept(self, path: str, secret: str) -> None:
        """Verify requests to ``path`` with ``secret`` (the one the registration answered)."""
        self.state.secrets[path] = secret

    def fail(self, path: str, *answers: Answer) -> None:
        """Answer the next verified requests to ``path`` with these, then 200."""
        self.state.script[path] = list(answers)

    def requests(self, path: str) -> list[Request]:
        with self.state.lock:
            return [r for r in self.state.requests if r.path == path]

    def processed(self, path: str) -> list[Request]:
        """The verified requests the receiver acted on."""
        with self.state.lock:
            return [r for r in self.state.processed if r.path == path]
