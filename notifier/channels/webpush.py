"""Web push (RFC 8030/8291/8292) through pywebpush: browsers' push subscriptions, VAPID-signed.

The payload is the notification as JSON, encrypted as ``aes128gcm`` for the subscriber's keys, so only
the browser's service worker can read it. One HTTP session per process is reused for every push
service. pywebpush writes ``aud`` and ``exp`` into the ``vapid_claims`` dict it is given, so each call
gets a fresh one (a shared dict would carry the first push service's audience to the next).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson
import requests
from cryptography.hazmat.primitives import serialization
from py_vapid import Vapid, VapidException
from py_vapid.utils import b64urlencode
from pywebpush import WebPushException, webpush

from notifier.channels.base import Delivery, OnOutcome, Outcome
from notifier.channels.push import (
    PushChannel,
    https_session,
    parse_retry_after,
    remaining_ttl,
    short_key,
)
from notifier.channels.targets import send_each
from notifier.config import Settings, get_settings
from notifier.errors import DeliveryError, InvalidTarget, PermanentError, RetryableError
from notifier.models import utcnow
from notifier.per_process import PerProcess
from notifier.state.devices import Device
from notifier.textlimits import fit_title_body

MAX_PLAINTEXT = 3993
"""Push services need only accept 4096-byte bodies; minus the aes128gcm header (86 bytes), padding
delimiter (1) and tag (16), that leaves 3993 bytes of plaintext (RFC 8291, section 4)."""
_VAPID_HINT = "check NOTIFIER_VAPID_PRIVATE_KEY and NOTIFIER_VAPID_PUBLIC_KEY (notifier vapid generate)"


@dataclass(frozen=True)
class WebPushPayload:
    """The plaintext the service worker reads, and the push headers."""

    data: bytes
    ttl: int
    urgency: str
    topic: str | None

    @property
    def headers(self) -> dict[str, str]:
        headers = {"Urgency": self.urgency}
        if self.topic:
            headers["Topic"] = self.topic
        return headers


class WebPushChannel(PushChannel):
    name = "webpush"
    max_payload_bytes = MAX_PLAINTEXT
    takes_subscription = True

    def __init__(self, settings: Settings | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings or get_settings()
        self._vapid: Vapid | None = None
        self._session = PerProcess(self._new_session)
        """One keep-alive session per process (a forked worker opens its own)."""
        self._lock = threading.Lock()

    # Mapping ------------------------------------------------------------------------------------
    def build_payload(self, delivery: Delivery, now: dt.datetime | None = None) -> WebPushPayload:
        """The notification JSON a service worker shows, with TTL, urgency and topic (collapse key).
        A title and body too long for one push message are cut on a grapheme boundary (body first);
        whether the rest fits is checked by :meth:`check_payload`."""
        n = delivery.notification
        shown = {key: value for key, value in n.to_dict().items() if key != "channels"}

        def size(title: str, body: str) -> int:
            return len(orjson.dumps({**shown, "title": title, "body": body}))

        title, text = fit_title_body(n.title, n.body, MAX_PLAINTEXT, size)
        data = orjson.dumps({**shown, "title": title, "body": text})
        return WebPushPayload(data=data, ttl=remaining_ttl(n, now),
                              urgency="normal" if n.priority == "normal" else "high",
                              topic=short_key(n.collapse_key, 32, url_safe=True) if n.collapse_key else None)

    def payload_size(self, payload: WebPushPayload) -> int:
        """The plaintext, before encryption adds its header and tag."""
        return len(payload.data)

    # Sending ------------------------------------------------------------------------------------
    def send_to_devices(self, items: Sequence[tuple[Delivery, Device]],
                        on_outcome: OnOutcome | None = None) -> list[Outcome]:
        try:
            vapid = self._get_vapid()
            session = self._session.get()
        except DeliveryError as exc:
            return [Outcome(d, exc) for d, _ in items]
        now = utcnow()

        def push(d: Delivery, device: Device) -> dict[str, Any]:
            status, location = self._push(session, vapid, self.build_payload(d, now), device)
            return {"status": status, "location": location}

        return send_each(items, push, on_outcome, id_field="location")

    def _push(self, session: requests.Session, vapid: Vapid, payload: WebPushPayload,
              device: Device) -> tuple[int, str | None]:
        """The push service's status and ``Location`` (the push message's URL, RFC 8030: its id)."""
        assert device.subscription is not None
        subscription = device.subscription.model_dump()
        host = urlsplit(device.subscription.endpoint).netloc
        try:
            response = webpush(subscription, data=payload.data.decode(), vapid_private_key=vapid,
                               vapid_claims={"sub": self.settings.vapid_subject}, content_encoding="aes128gcm",
                               timeout=self.settings.push_timeout_seconds, ttl=payload.ttl, headers=payload.headers,
                               requests_session=session)
        except WebPushException as exc:
            if exc.response is None:
                raise PermanentError(f"web push to {host} failed: {exc.message}") from None
            raise _answer_error(host, exc) from None
        except VapidException as exc:
            raise PermanentError(f"cannot sign the VAPID claims ({exc}): check NOTIFIER_VAPID_SUBJECT "
                                 "(a mailto: or https: URL)") from None
        except requests.exceptions.SSLError as exc:
            raise PermanentError(f"TLS with push service {host} failed ({exc}): check NOTIFIER_CA_FILE") from None
        except requests.RequestException as exc:
            raise RetryableError(f"push service {host} unreachable: {exc}") from None
        headers = getattr(response, "headers", None) or {}
        return int(getattr(response, "status_code", 201)), headers.get("Location")

    def _get_vapid(self) -> Vapid:
        with self._lock:
            if self._vapid is None:
                self._vapid = load_vapid(self.settings)
            return self._vapid

    def _new_session(self) -> requests.Session:
        """Trusting the system's CAs plus ``NOTIFIER_CA_FILE``'s."""
        return https_session(self.settings.ca_file)

    def close(self) -> None:
        self._session.reset(requests.Session.close)


def public_key(vapid: Vapid) -> str:
    """The browser's ``applicationServerKey``: the uncompressed P-256 point, base64url."""
    raw = vapid.public_key.public_bytes(serialization.Encoding.X962,
                                        serialization.PublicFormat.UncompressedPoint)
    return b64urlencode(raw)


def private_key(vapid: Vapid) -> str:
    """The private key as ``NOTIFIER_VAPID_PRIVATE_KEY`` takes it: the raw 32-byte scalar, base64url."""
    return b64urlencode(vapid.private_key.private_numbers().private_value.to_bytes(32, "big"))


def load_vapid(settings: Settings) -> Vapid:
    """The VAPID key from the settings, checked against the public key browsers subscribed with."""
    if not settings.vapid_private_key:
        raise PermanentError("web push is not configured: set NOTIFIER_VAPID_PRIVATE_KEY and "
                             "NOTIFIER_VAPID_PUBLIC_KEY (notifier vapid generate)")
    try:
        vapid = Vapid.from_string(settings.vapid_private_key)
    except (ValueError, TypeError, VapidException):
        raise PermanentError(f"NOTIFIER_VAPID_PRIVATE_KEY is not a VAPID private key: {_VAPID_HINT}") from None
    if settings.vapid_public_key and settings.vapid_public_key.rstrip("=") != public_key(vapid):
        raise PermanentError("NOTIFIER_VAPID_PUBLIC_KEY does not belong to NOTIFIER_VAPID_PRIVATE_KEY; browsers "
                             "subscribed with the public key, so set the pair that was generated together")
    return vapid


def _answer_error(host: str, exc: WebPushException) -> DeliveryError:
    status = exc.status_code or 0
    text = getattr(exc.response, "text", "")[:200]
    what = f"push service {host} answered {status}: {text}".rstrip(": ")
    if status in (404, 410):
        return InvalidTarget(what)
    if status == 429 or status >= 500:
        return RetryableError(what, retry_after=parse_retry_after(exc.retry_after))
    if status in (401, 403):
        return PermanentError(f"{what}; the push service refused the VAPID signature: {_VAPID_HINT}")
    if status == 413:
        return PermanentError(f"{what}; the payload is too large for this push service")
    return PermanentError(f"{what}; the push was rejected")
