"""A fake Twilio Messages API on 127.0.0.1: ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json``.

It checks what Twilio checks: HTTP basic auth with the Account SID and auth token (401 with error
20003 otherwise), the account in the URL, a form body with ``To``, ``Body`` and ``From`` or
``MessagingServiceSid``. It answers 201 with a message resource (``sid``, ``status: queued``), or,
when told to for a number, Twilio's documented error JSON (``code``, ``message``, ``more_info``,
``status``), so the channel's mapping of real answers is what gets tested.
"""

from __future__ import annotations

import base64
import secrets
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qs

import httpx
from twilio.request_validator import RequestValidator

from tests.peers.http import HttpPeer, JsonHandler

ERRORS: dict[str, tuple[int, int, str]] = {
    "invalid_number": (400, 21211, "The 'To' number {to} is not a valid phone number."),
    "not_mobile": (400, 21614, "'To' number {to} is not a valid mobile number"),
    "unsubscribed": (400, 21610, "Attempt to send to unsubscribed recipient"),
    "region": (400, 21408, "Permission to send an SMS has not been enabled for the region indicated by the "
                           "'To' number: {to}."),
    "too_many": (429, 20429, "Too Many Requests"),
    "server": (500, 20500, "An internal server error has occurred"),
}
"""What the peer can be told to answer for a number: (HTTP status, Twilio error code, message)."""


@dataclass
class Received:
    form: dict[str, str]
    sid: str
    at: float


@dataclass
class _State:
    account_sid: str
    auth_token: str
    received: list[Received] = field(default_factory=list)
    attempts: dict[str, list[float]] = field(default_factory=dict)
    script: dict[str, list[tuple[str, int | None]]] = field(default_factory=dict)
    always: dict[str, str] = field(default_factory=dict)
    refused_auth: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(JsonHandler):
    state: _State

    content_type = "application/json; charset=utf-8"

    def _error(self, status: int, code: int, message: str, headers: dict[str, str] | None = None) -> None:
        self.reply(status, {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}",
                             "status": status}, headers)

    def do_POST(self) -> None:
        s = self.state
        body = self.body()
        prefix, suffix = "/2010-04-01/Accounts/", "/Messages.json"
        if not (self.path.startswith(prefix) and self.path.endswith(suffix)):
            self._error(404, 20404, f"The requested resource {self.path} was not found")
            return
        expected = "Basic " + base64.b64encode(f"{s.account_sid}:{s.auth_token}".encode()).decode()
        if self.headers.get("Authorization") != expected or self.path[len(prefix):-len(suffix)] != s.account_sid:
            with s.lock:
                s.refused_auth += 1
            self._error(401, 20003, "Authenticate")
            return
        if not self.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
            self._error(400, 21000, "Expected a form body")
            return
        form = {k: v[0] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}
        to = form.get("To", "")
        if not to:
            self._error(400, 21604, "A 'To' phone number is required.")
            return
        if not form.get("Body"):
            self._error(400, 21602, "Message body is required.")
            return
        if not (form.get("From") or form.get("MessagingServiceSid")):
            self._error(400, 21603, "A 'From' or 'MessagingServiceSid' parameter is required to send a message")
            return
        with s.lock:
            s.attempts.setdefault(to, []).append(time.time())
            queued = s.script.get(to)
            answer = queued.pop(0) if queued else ((s.always[to], None) if to in s.always else None)
            sid = "SM" + secrets.token_hex(16)
            if answer is None:
                s.received.append(Received(form, sid, time.time()))
        if answer is None:
            self.reply(201, {"sid": sid, "account_sid": s.account_sid, "to": to, "from": form.get("From"),
                              "body": form["Body"], "status": "queued", "num_segments": "1",
                              "messaging_service_sid": form.get("MessagingServiceSid"), "error_code": None,
                              "error_message": None, "uri": f"{prefix}{s.account_sid}/Messages/{sid}.json"})
            return
        kind, retry_after = answer
        status, code, message = ERRORS[kind]
        self._error(status, code, message.format(to=to),
                    {"Retry-After": str(retry_after)} if retry_after is not None else None)


class TwilioPeer(HttpPeer):
    """The fake Twilio API; :meth:`env` is what the sms channel needs to send through it."""

    def __init__(self) -> None:
        self.state = _State("AC" + secrets.token_hex(16), secrets.token_hex(16))
        super().__init__(_Handler, self.state)

    def env(self) -> dict[str, str]:
        return {"NOTIFIER_SMS_PROVIDER": "twilio", "NOTIFIER_SMS_TWILIO_BASE_URL": self.origin,
                "NOTIFIER_SMS_TWILIO_ACCOUNT_SID": self.state.account_sid,
                "NOTIFIER_SMS_TWILIO_AUTH_TOKEN": self.state.auth_token, "NOTIFIER_SMS_FROM": "+15017122661"}

    def fail(self, to: str, *answers: str | tuple[str, int]) -> None:
        """Answer the next sends to ``to`` with these (``("too_many", 2)``: with Retry-After 2), then accept."""
        with self.state.lock:
            self.state.script[to] = [a if isinstance(a, tuple) else (a, None) for a in answers]

    def refuse(self, to: str, answer: str) -> None:
        with self.state.lock:
            self.state.always[to] = answer

    def report(self, message: Received, status: str, error_code: str | None = None,
               auth_token: str | bool | None = True) -> httpx.Response:
        """Post a delivery report for ``message`` to its ``StatusCallback`` as Twilio does: the form
        fields Twilio sends, signed with ``X-Twilio-Signature`` by Twilio's own library (with the
        account's auth token; another ``auth_token`` forges it, None leaves the header out)."""
        url = message.form["StatusCallback"]
        params = {"AccountSid": self.state.account_sid, "ApiVersion": "2010-04-01", "MessageSid": message.sid,
                  "SmsSid": message.sid, "SmsStatus": status, "MessageStatus": status, "To": message.form["To"],
                  "From": message.form.get("From", "")}
        if error_code is not None:
            params["ErrorCode"] = error_code
        headers = {}
        if auth_token is not None:
            key = self.state.auth_token if auth_token is True else str(auth_token)
            headers["X-Twilio-Signature"] = RequestValidator(key).compute_signature(url, params)
        return httpx.post(url, data=params, headers=headers, timeout=10)

    def to(self, number: str) -> list[Received]:
        with self.state.lock:
            return [r for r in self.state.received if r.form.get("To") == number]

    def attempts(self, number: str) -> list[float]:
        with self.state.lock:
            return list(self.state.attempts.get(number, []))
