"""What the three push channels (FCM, APNs, web push) share: devices as targets.

A push delivery starts with target ``ALL_TARGETS``; :meth:`PushChannel.expand` turns it into one
delivery per registered device of the channel's platform (target = device id), so receipts, retries
and pruning work per device. :meth:`PushChannel.send` looks the devices up again (a retried delivery
arrives with its device id only), hands the live ones to the provider adapter and reports a vanished
device as ``InvalidTarget``. Also here: the small pure helpers every provider mapping needs, and the
HTTPS session of the providers reached over ``requests`` (FCM and its OAuth token endpoint, web push).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import re
import ssl
import time
from abc import abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import orjson
import requests
from requests.adapters import HTTPAdapter

from notifier.channels.base import ALL_TARGETS, Channel, Delivery, OnOutcome, Outcome, reported
from notifier.errors import DeliveryError, InvalidTarget, PermanentError
from notifier.models import Notification
from notifier.state.devices import Device, Devices

DEFAULT_TTL = 28 * 86400
"""Seconds a provider keeps an undelivered push when the notification sets no ``ttl`` (its maximum)."""
_URL_SAFE = re.compile(r"[A-Za-z0-9_-]+")


class PushChannel(Channel):
    """Base of the push adapters: targets are device ids of the platform named like the channel."""

    needs_device = True
    takes_subscription: ClassVar[bool] = False
    """Devices register a browser's push subscription (endpoint and keys) instead of a token."""

    @classmethod
    def check_token(cls, token: str) -> None:
        """Refuse (``ValueError``, saying what a token looks like) one the provider would not take."""

    @classmethod
    def token_address(cls, token: str) -> str:
        """The token as the provider knows it (the device id hashes it, so spellings agree)."""
        return token

    def __init__(self, devices: Devices | None = None) -> None:
        self._devices = devices

    @property
    def devices(self) -> Devices:
        if self._devices is None:
            self._devices = Devices()
        return self._devices

    def expand(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        """One delivery per device; all users' devices load in one pipelined round trip."""
        open_ = [d.user_id for d in deliveries if d.target == ALL_TARGETS]
        found = self.devices.for_users(open_, self.name)
        expanded = []
        for d in deliveries:
            if d.target != ALL_TARGETS:
                expanded.append(d)
                continue
            expanded.extend(Delivery(d.user_id, d.notification, device.id) for device in found.get(d.user_id, ()))
        return expanded

    def send(self, deliveries: Sequence[Delivery], on_outcome: OnOutcome | None = None) -> list[Outcome]:
        if not deliveries:
            return []
        found = self.devices.for_users([d.user_id for d in deliveries], self.name)
        by_id = {(user, device.id): device for user, devices in found.items() for device in devices}
        live: list[tuple[Delivery, Device]] = []
        outcomes = []
        for d in deliveries:
            device = by_id.get((d.user_id, d.target))
            if device is None:
                outcomes.append(Outcome(d, InvalidTarget(f"device {d.target} is no longer registered")))
            else:
                live.append((d, device))
        if live:
            outcomes.extend(self.send_to_devices(live, on_outcome))
        return outcomes

    @abstractmethod
    def send_to_devices(self, items: Sequence[tuple[Delivery, Device]],
                        on_outcome: OnOutcome | None = None) -> list[Outcome]:
        """Push to registered devices; one outcome each, also told to ``on_outcome`` as it is known."""

    def prune(self, delivery: Delivery) -> None:
        self.devices.remove(delivery.user_id, delivery.target)


def send_each(items: Sequence[tuple[Delivery, Device]], push: Callable[[Delivery, Device], dict[str, Any]],
              on_outcome: OnOutcome | None = None) -> list[Outcome]:
    """For providers that take one push per request (FCM, web push): ``push`` each device in turn and
    report its outcome at once; ``push`` returns the outcome's detail or raises a ``DeliveryError``,
    which fails that device only."""
    outcomes = []
    for d, device in items:
        try:
            detail = push(d, device)
        except DeliveryError as exc:
            outcomes.append(reported(Outcome(d, exc), on_outcome))
        else:
            outcomes.append(reported(Outcome(d, detail=detail), on_outcome))
    return outcomes


def remaining_ttl(notification: Notification, now: dt.datetime | None = None) -> int:
    """Seconds the provider may still hold the push: what is left of ``ttl`` since the notification's
    timestamp (a retried or deferred push must not outlive it), or :data:`DEFAULT_TTL`."""
    if notification.ttl is None:
        return DEFAULT_TTL
    if now is None:
        return notification.ttl
    left = notification.timestamp + dt.timedelta(seconds=notification.ttl) - now
    return max(0, int(left.total_seconds()))


def short_key(value: str, limit: int, url_safe: bool = False) -> str:
    """A collapse key a provider accepts: itself if it fits (``limit`` bytes, and only base64url
    characters when ``url_safe``), else a stable digest, so the same key still collapses."""
    if len(value.encode()) <= limit and (not url_safe or _URL_SAFE.fullmatch(value)):
        return value
    return hashlib.sha256(value.encode()).hexdigest()[:min(limit, 32)]


def json_size(value: object) -> int:
    return len(orjson.dumps(value))


def parse_retry_after(value: str | bytes | None) -> float | None:
    """``Retry-After`` as seconds, from either form (``120`` or an HTTP date); None when absent or junk."""
    if value is None:
        return None
    text = value.decode() if isinstance(value, bytes) else value
    text = text.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def tls_context(ca_file: str) -> ssl.SSLContext:
    """The system's trusted CAs plus, when set, those in ``NOTIFIER_CA_FILE``: a private CA (a proxy,
    a test peer) is added to them, so Google's, Mozilla's and Apple's servers stay trusted."""
    context = ssl.create_default_context()
    if ca_file:
        try:
            context.load_verify_locations(ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise PermanentError(f"cannot load NOTIFIER_CA_FILE {ca_file!r}: {exc}") from None
    return context


class _TLSAdapter(HTTPAdapter):
    """requests' adapter verifying with one ``SSLContext``, without retries (Celery owns them)."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self._context = context
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **{**kwargs, "ssl_context": self._context})

    def proxy_manager_for(self, *args: Any, **kwargs: Any) -> Any:
        return super().proxy_manager_for(*args, **{**kwargs, "ssl_context": self._context})


def https_session(ca_file: str, session: requests.Session | None = None) -> requests.Session:
    """``session`` (a new one by default) trusting :func:`tls_context`; raises ``PermanentError`` for
    an unreadable CA file."""
    session = session if session is not None else requests.Session()
    adapter = _TLSAdapter(tls_context(ca_file))
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session
