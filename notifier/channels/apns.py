"""Apple Push Notification service through aioapns: token auth (.p8 key) over one HTTP/2 connection.

aioapns is asyncio code whose connection pool binds to the event loop it was created in, and which
opens a TLS connection per client. A Celery worker is synchronous, so each worker process keeps one
event loop in a daemon thread (created on first use, re-created after a fork) and one client in it;
every batch runs there and shares that one persistent connection, instead of one per message.

aioapns has no public setting for the host, port or CA: ``NOTIFIER_APNS_HOST``/``_PORT`` (a private
gateway or a test peer) are applied by swapping the pool's protocol class for a subclass with those
class attributes, and the CA goes in through the ``ssl_context`` it accepts. The same subclass keeps
idle connections open longer than aioapns's 10 seconds, records ``Retry-After`` headers, which
aioapns drops (it reports failures as result values: status and reason), and signs requests with
:class:`_ProviderToken`, which (unlike aioapns's own) is renewed when Apple answers
``ExpiredProviderToken``, so the retry carries a fresh token instead of the refused one.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import ssl
import threading
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aioapns import APNs
from aioapns.common import NotificationRequest, NotificationResult, PushType
from aioapns.connection import (
    APNsBaseClientProtocol,
    AuthorizationHeaderProvider,
    JWTAuthorizationHeaderProvider,
)
from aioapns.exceptions import ConnectionClosed, MaxAttemptsExceeded
from aioapns.exceptions import ConnectionError as APNsConnectionError
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from notifier.channels.base import Delivery, OnOutcome, Outcome, reported
from notifier.channels.push import (
    PushChannel,
    json_size,
    parse_retry_after,
    remaining_ttl,
    short_key,
)
from notifier.config import Settings, get_settings
from notifier.errors import DeliveryError, InvalidTarget, PermanentError, RetryableError
from notifier.models import utcnow
from notifier.per_process import PerProcess
from notifier.state.devices import Device
from notifier.state.inbox import Inbox
from notifier.textlimits import fit_title_body

log = logging.getLogger("notifier.channels.apns")

T = TypeVar("T")
_P = TypeVar("_P", bound=APNsBaseClientProtocol)

MAX_PAYLOAD = 4096
"""Apple's limit for an alert's JSON payload, in bytes."""
PRODUCTION_HOST = "api.push.apple.com"
SANDBOX_HOST = "api.sandbox.push.apple.com"
IDLE_SECONDS = 600
"""Close the connection after this long without traffic (Apple asks providers to keep it open)."""
_TOKEN = re.compile(r"[0-9a-f]{64,200}")
_DEAD_TOKEN = frozenset({"BadDeviceToken", "Unregistered", "ExpiredToken"})
_AUTH = frozenset({"InvalidProviderToken", "MissingProviderToken", "BadCertificate",
                   "BadCertificateEnvironment", "Forbidden"})
_TOPIC = frozenset({"BadTopic", "MissingTopic", "TopicDisallowed", "DeviceTokenNotForTopic"})
_KEY_HINT = "check NOTIFIER_APNS_KEY_FILE, NOTIFIER_APNS_KEY_ID and NOTIFIER_APNS_TEAM_ID"


@dataclass(frozen=True)
class ApnsPayload:
    """Everything APNs receives for one device except its token: the JSON body and the headers."""

    message: dict[str, Any]
    push_type: PushType
    priority: int
    collapse_id: str | None
    ttl: int


class _ProviderToken(AuthorizationHeaderProvider):
    """The provider JWT every connection of a client signs with: aioapns's (renewed every 30 minutes),
    replaced by a newly signed one when Apple calls it expired."""

    def __init__(self, key: str, key_id: str, team_id: str) -> None:
        self._args = key, key_id, team_id
        self._jwt = JWTAuthorizationHeaderProvider(*self._args)
        self.generation = 0
        """Counts renewals, so a push knows whether the token it was signed with is still in use."""

    def get_header(self) -> str:
        return self._jwt.get_header()

    def expire(self, generation: int) -> None:
        """Apple refused the token of ``generation``: renew it, unless that was done already (the
        other pushes it signed are refused too, and Apple limits how often a token may change)."""
        if generation == self.generation:
            self._jwt = JWTAuthorizationHeaderProvider(*self._args)
            self.generation += 1


@dataclass
class _Client:
    apns: APNs
    token: _ProviderToken
    retry_hints: dict[str, bytes] = field(default_factory=dict)
    """``apns-id`` -> ``Retry-After`` header, filled by the protocol as answers arrive."""


class APNsChannel(PushChannel):
    name = "apns"
    max_payload_bytes = MAX_PAYLOAD

    def __init__(self, settings: Settings | None = None, inbox: Inbox | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings or get_settings()
        self._inbox = inbox
        self._loop = PerProcess(_start_loop)
        """aioapns's event loop, one per process: the thread running it does not survive a fork."""
        self._client = PerProcess(self._new_client)
        """Made inside the loop (aioapns binds to the running loop), so one per loop too."""

    @classmethod
    def check_token(cls, token: str) -> None:
        if not _TOKEN.fullmatch(cls.token_address(token)):
            raise ValueError("an APNs device token is 64 or more hex characters")

    @classmethod
    def token_address(cls, token: str) -> str:
        """Apple tokens are hex; clients print them with spaces or angle brackets and in any case."""
        return re.sub(r"[\s<>]", "", token).lower()

    # Mapping ------------------------------------------------------------------------------------
    def build_payload(self, delivery: Delivery, badge: int | None = None,
                      now: dt.datetime | None = None) -> ApnsPayload:
        """The ``aps`` dictionary and headers; ``badge`` is the user's unread count. A title and body
        too long for :data:`MAX_PAYLOAD` are cut on a grapheme boundary (body first, the badge
        counted); data too big is left to :meth:`check_payload` (without the badge's few bytes:
        Apple's ``PayloadTooLarge`` answer, a ``PermanentError`` too, covers the rest)."""
        n = delivery.notification
        aps: dict[str, Any] = {"alert": {}, "sound": "default", "thread-id": n.type}
        if badge is not None:
            aps["badge"] = badge
        if n.priority == "critical":
            aps["interruption-level"] = "critical"
            aps["sound"] = {"critical": 1, "name": "default", "volume": 1.0}
        elif n.priority == "high":
            aps["interruption-level"] = "time-sensitive"
        message: dict[str, Any] = {"aps": aps, "id": n.id, "type": n.type}
        if n.action_url:
            message["url"] = n.action_url
        if n.data:
            message["data"] = n.data
        title, body = fit_title_body(n.title, n.body, MAX_PAYLOAD,
                                     lambda t, b: json_size({**message, "aps": {**aps, "alert": _alert(t, b)}}))
        aps["alert"] = _alert(title, body)
        return ApnsPayload(message=message, push_type=PushType.ALERT,
                           priority=5 if n.priority == "normal" else 10,
                           collapse_id=short_key(n.collapse_key, 64) if n.collapse_key else None,
                           ttl=remaining_ttl(n, now))

    def payload_size(self, payload: ApnsPayload) -> int:
        """What Apple counts: the JSON body."""
        return json_size(payload.message)

    # Sending ------------------------------------------------------------------------------------
    def send_to_devices(self, items: Sequence[tuple[Delivery, Device]],
                        on_outcome: OnOutcome | None = None) -> list[Outcome]:
        inbox = self._inbox or Inbox()
        badges = {user: inbox.unread_count(user) for user in {d.user_id for d, _ in items}}
        now = utcnow()
        requests: list[tuple[Delivery, NotificationRequest | DeliveryError]] = []
        for d, device in items:
            try:
                p = self.build_payload(d, badges[d.user_id], now)
            except DeliveryError as exc:
                requests.append((d, exc))
                continue
            assert device.token is not None
            requests.append((d, NotificationRequest(
                device_token=device.token, message=p.message, priority=p.priority,
                notification_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{d.notification.id}/{d.target}")),
                time_to_live=p.ttl, collapse_key=p.collapse_id, push_type=p.push_type,
                apns_topic=device.topic or None)))
        to_send = [r for _, r in requests if isinstance(r, NotificationRequest)]
        delivery_of = {id(r): d for d, r in requests}

        def answered(request: NotificationRequest, result: NotificationResult | BaseException,
                     retry_after: bytes | None) -> None:
            reported(self._outcome(delivery_of[id(request)], result, retry_after), on_outcome)

        timeout = self.settings.push_timeout_seconds
        try:
            results = self._submit(self._send_all(to_send, answered if on_outcome else None)).result(
                timeout * 2 + 5) if to_send else []
        except TimeoutError:
            error: DeliveryError = RetryableError(f"APNs batch did not finish within {timeout * 2 + 5:.0f}s")
            return [Outcome(d, r if isinstance(r, DeliveryError) else error) for d, r in requests]
        except DeliveryError as exc:
            return [Outcome(d, r if isinstance(r, DeliveryError) else exc) for d, r in requests]
        answers = iter(results)
        return [Outcome(d, r) if isinstance(r, DeliveryError) else self._outcome(d, *next(answers))
                for d, r in requests]

    def _outcome(self, delivery: Delivery, result: NotificationResult | BaseException,
                 retry_after: bytes | None) -> Outcome:
        if isinstance(result, BaseException):
            return Outcome(delivery, _transport_error(result, self.settings))
        if result.is_successful:
            return Outcome(delivery, detail={"apns_id": result.notification_id},
                           provider_id=result.notification_id or None)
        return Outcome(delivery, _answer_error(str(result.status), str(result.description or ""),
                                               parse_retry_after(retry_after)))

    async def _send_all(self, requests: list[NotificationRequest],
                        on_answer: Callable[[NotificationRequest, NotificationResult | BaseException,
                                             bytes | None], None] | None = None
                        ) -> list[tuple[NotificationResult | BaseException, bytes | None]]:
        """Every push at once on the one connection; ``on_answer`` hears each answer as it arrives
        (an error it raises, such as Redis being down, fails the whole batch afterwards)."""
        client = self._client.get()
        timeout = self.settings.push_timeout_seconds
        failures: list[Exception] = []

        async def one(request: NotificationRequest) -> tuple[NotificationResult | BaseException, bytes | None]:
            generation = client.token.generation
            try:
                result: NotificationResult | BaseException = await _bounded(
                    client.apns.send_notification(request), timeout)
            except Exception as exc:  # noqa: BLE001  (a timeout or a lost connection is this push's outcome)
                result = exc
            if isinstance(result, NotificationResult) and result.description == "ExpiredProviderToken":
                client.token.expire(generation)
            answer = (result, client.retry_hints.pop(request.notification_id, None))
            if on_answer is not None:
                try:
                    on_answer(request, *answer)
                except Exception as exc:  # noqa: BLE001  (re-raised by the caller, after the other pushes)
                    failures.append(exc)
            return answer

        answers = await asyncio.gather(*(one(r) for r in requests), return_exceptions=True)
        if failures:
            raise failures[0]
        return [a if isinstance(a, tuple) else (a, None) for a in answers]

    def _new_client(self) -> _Client:
        s = self.settings
        missing = [name for name, value in (("NOTIFIER_APNS_KEY_FILE", s.apns_key_file),
                                            ("NOTIFIER_APNS_KEY_ID", s.apns_key_id),
                                            ("NOTIFIER_APNS_TEAM_ID", s.apns_team_id),
                                            ("NOTIFIER_APNS_TOPIC", s.apns_topic)) if not value]
        if missing:
            raise PermanentError(f"APNs is not configured: set {', '.join(missing)}")
        key = _read_key(s.apns_key_file)
        try:
            context = ssl.create_default_context(cafile=s.apns_ca_file or None)
        except (OSError, ssl.SSLError) as exc:
            raise PermanentError(f"cannot load NOTIFIER_APNS_CA_FILE {s.apns_ca_file!r}: {exc}") from None
        context.set_alpn_protocols(["h2"])
        apns = APNs(key=key, key_id=s.apns_key_id, team_id=s.apns_team_id, topic=s.apns_topic,
                    use_sandbox=s.apns_use_sandbox, ssl_context=context, max_connections=1,
                    max_connection_attempts=1, err_func=_quiet)
        client = _Client(apns, _ProviderToken(key, s.apns_key_id, s.apns_team_id))
        host = s.apns_host or (SANDBOX_HOST if s.apns_use_sandbox else PRODUCTION_HOST)
        apns.pool.protocol_class = _protocol_class(apns.pool.protocol_class, host, s.apns_port, client)
        return client

    def _submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        """Run ``coro`` on this process's loop; the caller waits on the future it returns."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop.get())

    def close(self) -> None:
        """Close this process's connection, then stop its loop; a parent's client and loop are only
        forgotten (their connection and self-pipe are the parent's)."""
        self._client.reset(self._close_client, inherited=False)
        self._loop.reset(lambda loop: loop.call_soon_threadsafe(loop.stop), inherited=False)

    def _close_client(self, client: _Client) -> None:
        try:
            self._submit(_close(client)).result(5)
        except Exception as exc:  # noqa: BLE001  (closing is best effort at shutdown)
            log.debug("closing the APNs connection failed: %s", exc)


def _protocol_class(base: type[_P], host: str, port: int, client: _Client) -> type[_P]:
    """aioapns's protocol with our host, port, idle time and provider token, recording ``Retry-After``
    per ``apns-id``."""

    class Protocol(base):  # type: ignore[valid-type,misc]  # mypy cannot subclass a type variable
        APNS_SERVER = host
        APNS_PORT = port
        INACTIVITY_TIME = IDLE_SECONDS

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.auth_provider = client.token

        def on_response_received(self, headers: dict[bytes, bytes]) -> None:
            if b"retry-after" in headers:
                client.retry_hints[headers.get(b"apns-id", b"").decode()] = headers[b"retry-after"]
            super().on_response_received(headers)

    return Protocol


def _read_key(path: str) -> str:
    """The .p8 key as aioapns wants it (PEM text), checked now so a bad file fails with its name."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError as exc:
        raise PermanentError(f"cannot read NOTIFIER_APNS_KEY_FILE {path!r}: {exc.strerror}") from None
    try:
        key = load_pem_private_key(text.encode(), password=None)
    except (ValueError, TypeError):
        raise PermanentError(f"NOTIFIER_APNS_KEY_FILE {path!r} is not a PEM private key (the AuthKey_*.p8 "
                             "file from Apple)") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise PermanentError(f"NOTIFIER_APNS_KEY_FILE {path!r} is not an APNs key: expected a P-256 (ES256) "
                             "key from Apple")
    return text


def _start_loop() -> asyncio.AbstractEventLoop:
    """A new event loop, running in a daemon thread (a Celery worker is synchronous)."""
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, name="notifier-apns", daemon=True).start()
    return loop


async def _bounded(call: Awaitable[NotificationResult], seconds: float) -> NotificationResult:
    """aioapns waits forever for an answer that never comes; a push gets ``push_timeout_seconds``."""
    return await asyncio.wait_for(call, seconds)


async def _quiet(request: NotificationRequest, result: NotificationResult) -> None:
    """Failed answers are classified by the channel; aioapns would log each as an error."""


async def _close(client: _Client) -> None:
    client.apns.pool.close()


def _transport_error(exc: BaseException, settings: Settings) -> DeliveryError:
    if isinstance(exc, DeliveryError):
        return exc
    where = f"{settings.apns_host or 'APNs'}:{settings.apns_port}"
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return RetryableError(f"APNs did not answer within {settings.push_timeout_seconds}s ({where})")
    if isinstance(exc, (MaxAttemptsExceeded, APNsConnectionError, ConnectionClosed, OSError)):
        return RetryableError(f"cannot reach APNs at {where} ({type(exc).__name__}); if this persists check "
                              "NOTIFIER_APNS_HOST, NOTIFIER_APNS_PORT and NOTIFIER_APNS_CA_FILE")
    return PermanentError(f"APNs client failed: {type(exc).__name__}: {exc}: {_KEY_HINT}")


def _answer_error(status: str, reason: str, retry_after: float | None) -> DeliveryError:
    """Apple's (status, reason) answer as our error: dead tokens are pruned, config errors say what
    to fix, 429 and 5xx retry with the server's hint."""
    what = f"APNs answered {status} {reason}".rstrip()
    if status == "410" or reason in _DEAD_TOKEN:
        return InvalidTarget(what)
    if status == "429" or status.startswith("5") or reason in ("ExpiredProviderToken",
                                                                 "TooManyProviderTokenUpdates"):
        return RetryableError(what, retry_after=retry_after)
    if reason in _AUTH or status == "403":
        return PermanentError(f"{what}: APNs refused the token-auth key; {_KEY_HINT}")
    if reason in _TOPIC:
        return PermanentError(f"{what}: check NOTIFIER_APNS_TOPIC (the app's bundle id), the device's topic "
                              "and NOTIFIER_APNS_USE_SANDBOX")
    if reason == "PayloadTooLarge" or status == "413":
        return PermanentError(f"{what}: the payload is over Apple's {MAX_PAYLOAD}-byte limit")
    return PermanentError(f"{what}: the push was rejected")


def _alert(title: str, body: str) -> dict[str, str]:
    return {"title": title, **({"body": body} if body else {})}
