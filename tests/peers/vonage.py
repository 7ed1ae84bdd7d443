"""A fake Vonage SMS API on 127.0.0.1: ``POST /sms/json``.

Like Vonage it takes ``api_key`` and ``api_secret`` in the form body and always answers 200 with
``message-count`` and one ``messages[]`` entry per part, each with its ``status`` (``"0"`` accepted,
``"4"`` for wrong credentials, or what it is told to answer for a number, with Vonage's
``error-text``). It counts a text's parts as Vonage does (``type=unicode``: 70/67 characters, else
160/153) and records whether ``type=unicode`` came with it.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qs

from tests.peers.http import HttpPeer, JsonHandler

STATUSES: dict[str, tuple[str, str]] = {
    "throttled": ("1", "Throughput Rate Exceeded - please wait [ 1000 ] and retry"),
    "invalid": ("3", "Invalid from param"),
    "barred": ("7", "Number barred."),
    "deactivated": ("33", "Number De-activated."),
}


@dataclass
class Received:
    form: dict[str, str]
    message_id: str
    at: float


@dataclass
class _State:
    api_key: str
    api_secret: str
    received: list[Received] = field(default_factory=list)
    attempts: dict[str, list[float]] = field(default_factory=dict)
    script: dict[str, list[str]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(JsonHandler):
    state: _State

    def _reply(self, messages: list[dict[str, str]]) -> None:
        self.reply(200, {"message-count": str(len(messages)), "messages": messages})

    def do_POST(self) -> None:
        s = self.state
        body = self.body()
        if self.path != "/sms/json":
            self.send_error(404)
            return
        form = {k: v[0] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}
        to = form.get("to", "")
        if form.get("api_key") != s.api_key or form.get("api_secret") != s.api_secret:
            self._reply([{"status": "4", "error-text": "Bad Credentials"}])
            return
        for name in ("from", "to", "text"):
            if not form.get(name):
                self._reply([{"status": "2", "error-text": f"Missing {name} param"}])
                return
        if to.startswith("+") or not to.isdigit():
            self._reply([{"status": "3", "error-text": "Invalid to address"}])
            return
        with s.lock:
            s.attempts.setdefault(to, []).append(time.time())
            queued = s.script.get(to)
            answer = queued.pop(0) if queued else None
            ids = [secrets.token_hex(8).upper() for _ in range(_parts(form))]
            if answer is None:
                s.received.append(Received(form, ids[0], time.time()))
        if answer is not None:
            status, text = STATUSES[answer]
            self._reply([{"to": to, "status": status, "error-text": text}])
            return
        self._reply([{"to": to, "message-id": i, "status": "0", "remaining-balance": "3.14159265",
                      "message-price": "0.03330000", "network": "26202", "client-ref": form.get("client-ref", "")}
                     for i in ids])


def _parts(form: dict[str, str]) -> int:
    text = form["text"]
    single, multi = (70, 67) if form.get("type") == "unicode" else (160, 153)
    return 1 if len(text) <= single else -(-len(text) // multi)


class VonagePeer(HttpPeer):
    """The fake Vonage SMS API; :meth:`env` is what the sms channel needs to send through it."""

    def __init__(self) -> None:
        self.state = _State(secrets.token_hex(4), secrets.token_hex(8))
        super().__init__(_Handler, self.state)

    def env(self) -> dict[str, str]:
        return {"NOTIFIER_SMS_PROVIDER": "vonage", "NOTIFIER_SMS_VONAGE_BASE_URL": self.origin,
                "NOTIFIER_SMS_VONAGE_API_KEY": self.state.api_key,
                "NOTIFIER_SMS_VONAGE_API_SECRET": self.state.api_secret, "NOTIFIER_SMS_FROM": "Notifier"}

    def fail(self, to: str, *answers: str) -> None:
        """Answer the next sends to ``to`` (digits, no ``+``) with these statuses, then accept."""
        with self.state.lock:
            self.state.script[to] = list(answers)

    def to(self, number: str) -> list[Received]:
        with self.state.lock:
            return [r for r in self.state.received if r.form.get("to") == number]

    def attempts(self, number: str) -> list[float]:
        with self.state.lock:
            return list(self.state.attempts.get(number, []))
