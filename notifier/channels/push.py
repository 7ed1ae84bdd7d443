"""What the three push channels (FCM, APNs, web push) share: devices as targets
(:class:`~notifier.channels.targets.TargetChannel`) and being ``is_push`` (a workflow's ``push``
step means all of them). Also here: the small pure helpers every provider mapping needs, and the
HTTPS session of the providers reached over ``requests`` (FCM and its OAuth token endpoint, web
push, and the chat and SMS providers).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import re
import ssl
import time
from typing import Any

import orjson
import requests
from requests.adapters import HTTPAdapter

from notifier.channels.targets import TargetChannel
from notifier.errors import PermanentError
from notifier.models import Notification

DEFAULT_TTL = 28 * 86400
"""Seconds a provider keeps an undelivered push when the notification sets no ``ttl`` (its maximum)."""
_URL_SAFE = re.compile(r"[A-Za-z0-9_-]+")


class PushChannel(TargetChannel):
    """Base of the push adapters: targets are device ids of the platform named like the channel."""

    is_push = True


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
