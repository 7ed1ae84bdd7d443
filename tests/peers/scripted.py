"""What the chat peers (``slack.py``, ``teams.py``, ``discord.py``) share: a threaded HTTP server on
127.0.0.1 that records each request per target and answers from a per-target script of the
provider's own error answers before it accepts."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from tests.peers.http import HttpPeer, JsonHandler


@dataclass
class Received:
    target: str
    body: dict[str, Any]
    headers: dict[str, str]
    path: str
    at: float


@dataclass
class State:
    received: list[Received] = field(default_factory=list)
    """Accepted messages."""
    attempts: dict[str, list[float]] = field(default_factory=dict)
    script: dict[str, list[str]] = field(default_factory=dict)
    always: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer_for(self, target: str) -> str | None:
        """The scripted answer for this attempt at ``target`` (None: accept), recording the attempt."""
        with self.lock:
            self.attempts.setdefault(target, []).append(time.time())
            queued = self.script.get(target)
            return queued.pop(0) if queued else self.always.get(target)


class Handler(JsonHandler):
    state: State
    content_type = "application/json; charset=utf-8"

    def problem(self, text: str) -> None:
        with self.state.lock:
            self.state.problems.append(text)

    def accept(self, target: str, body: dict[str, Any]) -> None:
        with self.state.lock:
            self.state.received.append(Received(target, body, dict(self.headers.items()), self.path, time.time()))


class Peer(HttpPeer):
    """A started server with ``handler``'s behaviour; ``fail``/``refuse`` script the answers."""

    handler: type[Handler]

    def __init__(self) -> None:
        self.state = State()
        super().__init__(self.handler, self.state)
        self.url = self.origin

    def to(self, target: str) -> list[Received]:
        with self.state.lock:
            return [r for r in self.state.received if r.target == target]

    def attempts(self, target: str) -> list[float]:
        with self.state.lock:
            return list(self.state.attempts.get(target, []))

    def fail(self, target: str, *answers: str) -> None:
        """Answer the next attempts at ``target`` with ``answers`` (names of the peer's ANSWERS), then accept."""
        with self.state.lock:
            self.state.script[target] = list(answers)

    def refuse(self, target: str, answer: str) -> None:
        """Answer every attempt at ``target`` with ``answer``."""
        with self.state.lock:
            self.state.always[target] = answer
