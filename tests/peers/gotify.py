"""A Gotify server's message API on 127.0.0.1, for the Apprise channel's ``gotify://`` targets.

It speaks what Gotify documents for ``POST /message``: the application token as ``X-Gotify-Key``
(or ``?token=``), a JSON body with ``message`` (required), ``title``, ``priority`` and ``extras``;
200 with the created message, or Gotify's error JSON (``{"error", "errorCode", "errorDescription"}``)
for an unknown token (401), a missing message (400) or, when told to, a server failure (500).
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.peers.http import HttpPeer, JsonHandler


@dataclass
class Message:
    token: str
    title: str
    message: str
    priority: int


@dataclass
class _State:
    apps: dict[str, int] = field(default_factory=dict)
    failing: dict[str, int] = field(default_factory=dict)
    """Per token: how many more sends answer 500 (-1: every one)."""
    attempts: dict[str, int] = field(default_factory=dict)
    messages: list[Message] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _error(status: int, name: str, description: str) -> tuple[int, dict[str, Any]]:
    return status, {"error": name, "errorCode": status, "errorDescription": description}


class _Handler(JsonHandler):
    state: _State

    def do_POST(self) -> None:
        s = self.state
        url = urlsplit(self.path)
        body = self.body()
        if url.path.rstrip("/") != "/message":
            self.reply(*_error(404, "Not Found", "page not found"))
            return
        token = self.headers.get("X-Gotify-Key") or parse_qs(url.query).get("token", [""])[0]
        if token not in s.apps:
            self.reply(*_error(401, "Unauthorized",
                                "you need to provide a valid access token or user credentials to access this api"))
            return
        try:
            sent = json.loads(body)
        except ValueError:
            self.reply(*_error(400, "Bad Request", "invalid JSON"))
            return
        if not isinstance(sent, dict) or not sent.get("message"):
            self.reply(*_error(400, "Bad Request", "Field 'message' is required"))
            return
        with s.lock:
            s.attempts[token] = s.attempts.get(token, 0) + 1
            left = s.failing.get(token, 0)
            if left:
                s.failing[token] = left - 1 if left > 0 else left
            else:
                s.messages.append(Message(token, str(sent.get("title", "")), str(sent["message"]),
                                          int(sent.get("priority", 0))))
                number = len(s.messages)
        if left:
            self.reply(*_error(500, "Internal Server Error", "database is locked"))
            return
        self.reply(200, {"id": number, "appid": s.apps[token], "message": sent["message"],
                          "title": sent.get("title", ""), "priority": sent.get("priority", 0),
                          "date": dt.datetime.now(dt.UTC).isoformat()})


class GotifyPeer(HttpPeer):
    """The Gotify server; ``app()`` creates an application and gives its ``gotify://`` URL."""

    def __init__(self) -> None:
        self.state = _State()
        super().__init__(_Handler, self.state)

    def app(self) -> tuple[str, str]:
        """A new application's token and the Apprise URL that posts to it."""
        token = "A" + secrets.token_urlsafe(10).replace("-", "x").replace("_", "y")
        with self.state.lock:
            self.state.apps[token] = len(self.state.apps) + 1
        return token, f"gotify://127.0.0.1:{self.port}/{token}"

    def fail(self, token: str, times: int) -> None:
        """Answer the next ``times`` sends to ``token`` with 500 (-1: all of them)."""
        self.state.failing[token] = times

    def messages(self, token: str) -> list[Message]:
        with self.state.lock:
            return [m for m in self.state.messages if m.token == token]

    def attempts(self, token: str) -> int:
        with self.state.lock:
            return self.state.attempts.get(token, 0)
