"""Webhooks: each notification POSTed as JSON to the URLs users register, signed per Standard Webhooks.

A user registers ``{"platform": "webhook", "url": "https://..."}`` (and optionally a ``secret``,
``whsec_`` plus base64 of 24 to 64 bytes; one is generated otherwise and answered once, to that
registration). The body is one stable JSON event::

    {"type": "notification", "timestamp": "<the notification's timestamp>",
     "data": {"id", "type", "title", "body", "data", "priority", "ttl", "collapse_key", "action_url",
              "timestamp", "user_id"}}

(absent optional fields left out). The ``standardwebhooks`` package signs it: ``webhook-id`` is
derived from the notification id and the target id, so it stays the same across retries and
redeliveries and a receiver de-duplicates on it; ``webhook-timestamp`` is the attempt's;
``webhook-signature`` is ``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``. Receivers verify
with any Standard Webhooks library (``Webhook(secret).verify(body, headers)``).

Answers: 2xx delivered; 410 Gone removes the target; 408, 429 and 5xx, timeouts and dropped
connections are retried (``Retry-After`` honoured); redirects are not followed and, like any other
4xx, dead-letter the message. Only public addresses are reached unless
``NOTIFIER_WEBHOOK_ALLOW_PRIVATE`` (``notifier/channels/egress.py``); plain http only to a loopback
host (development).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson
import requests
from standardwebhooks import Webhook

from notifier.channels import egress
from notifier.channels.base import Delivery, OnOutcome, Outcome
from notifier.channels.push import parse_retry_after
from notifier.channels.targets import TargetChannel, send_each
from notifier.config import Settings, get_settings
from notifier.errors import InvalidTarget, PermanentError, RetryableError
from notifier.models import utcnow
from notifier.per_process import PerProcess
from notifier.state.devices import Device

TIMEOUT_SECONDS = 5.0
"""How long one webhook request may take: a receiver should answer at once and do its work later."""
EVENT_TYPE = "notification"
_SECRET_PREFIX = "whsec_"
_SECRET_BYTES = (24, 64)
_SHOWN_FIELDS = ("id", "type", "title", "body", "data", "priority", "ttl", "collapse_key", "action_url",
                 "timestamp")
"""What of a notification the event carries (not its routing: channels, template, send_at, cancel_key)."""


@dataclass(frozen=True)
class WebhookMessage:
    """What one target receives: the message id (the same on every attempt) and the JSON body."""

    id: str
    body: bytes


def message_id(notification_id: str, target: str) -> str:
    """``msg_`` plus a digest of the notification and target ids: stable across retries and redeliveries."""
    return "msg_" + hashlib.sha256(f"{notification_id}\0{target}".encode()).hexdigest()[:32]


def sign(message: WebhookMessage, secret: str, when: dt.datetime) -> dict[str, str]:
    """The Standard Webhooks headers of ``message`` sent at ``when`` (an aware time)."""
    timestamp = when.astimezone(dt.UTC)
    return {"webhook-id": message.id, "webhook-timestamp": str(int(timestamp.timestamp())),
            "webhook-signature": Webhook(secret).sign(message.id, timestamp, message.body.decode())}


def origin(url: str) -> str:
    """``scheme://host[:port]`` of ``url``: what errors name (a path or query may hold a token)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def post_signed(session: requests.Session, url: str, message: WebhookMessage, secret: str, label: str,
                timeout: float = TIMEOUT_SECONDS) -> int:
    """POST ``message`` signed with ``secret`` now; the 2xx status, else the error the answer means: 410
    ``InvalidTarget``; 408, 429, 5xx, a timeout or a dropped connection ``RetryableError``
    (``Retry-After`` kept); a redirect (not followed) or another 4xx ``PermanentError``. Errors name
    ``label`` and the URL's origin, never its path."""
    where = origin(url)
    response = egress.post(session, url, message.body, f"{label} {where}", timeout,
                           sign(message, secret, utcnow()))
    status = response.status_code
    response.close()
    if 200 <= status < 300:
        return status
    what = f"{label} {where} answered {status}"
    if status == 410:
        raise InvalidTarget(f"{what}: the receiver is gone")
    if status in (408, 429) or status >= 500:
        raise RetryableError(what, retry_after=parse_retry_after(response.headers.get("Retry-After")))
    if 300 <= status < 400:
        raise PermanentError(f"{what} (a redirect, not followed): register the URL it redirects to")
    raise PermanentError(f"{what}: the receiver refused the message")


class WebhookChannel(TargetChannel):
    name = "webhook"
    takes_url = True
    takes_secret = True

    def __init__(self, settings: Settings | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings or get_settings()
        self._session = PerProcess(lambda: egress.guarded_session(self.settings.ca_file,
                                                                  self.settings.webhook_allow_private))

    @classmethod
    def check_url(cls, url: str) -> None:
        egress.check_url(cls.name, url)

    @classmethod
    def check_secret(cls, secret: str) -> None:
        raw = secret[len(_SECRET_PREFIX):] if secret.startswith(_SECRET_PREFIX) else ""
        try:
            size = len(base64.b64decode(raw, validate=True)) if raw else 0
        except (binascii.Error, ValueError):
            size = 0
        if not _SECRET_BYTES[0] <= size <= _SECRET_BYTES[1]:
            raise ValueError(f"a webhook secret is {_SECRET_PREFIX} followed by the base64 of "
                             f"{_SECRET_BYTES[0]} to {_SECRET_BYTES[1]} random bytes (or leave it out to get one)")

    @classmethod
    def new_secret(cls) -> str:
        return _SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()

    # Mapping ------------------------------------------------------------------------------------
    def build_payload(self, delivery: Delivery) -> WebhookMessage:
        """The event and its message id; the same bytes on every attempt (only the headers' timestamp
        and signature change)."""
        n = delivery.notification.to_dict()
        data = {key: n[key] for key in _SHOWN_FIELDS if key in n}
        event = {"type": EVENT_TYPE, "timestamp": n["timestamp"], "data": {**data, "user_id": delivery.user_id}}
        return WebhookMessage(message_id(delivery.notification.id, delivery.target), orjson.dumps(event))

    def payload_size(self, payload: WebhookMessage) -> int:
        return len(payload.body)

    # Sending ------------------------------------------------------------------------------------
    def send_to_devices(self, items: Sequence[tuple[Delivery, Device]],
                        on_outcome: OnOutcome | None = None) -> list[Outcome]:
        session = self._session.get()

        def post(d: Delivery, device: Device) -> dict[str, Any]:
            return {"status": self._post(session, device, self.build_payload(d))}

        return send_each(items, post, on_outcome)

    def _post(self, session: requests.Session, device: Device, message: WebhookMessage) -> int:
        if device.url is None or device.secret is None:
            raise InvalidTarget(f"webhook target {device.id} has no url or secret: register it again")
        return post_signed(session, device.url, message, device.secret.get_secret_value(), "webhook")

    def close(self) -> None:
        self._session.reset(lambda session: session.close())
