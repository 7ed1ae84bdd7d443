"""The device registry: where each user can be reached beyond the inbox and email: phones
and browsers to push to, chat targets, webhook endpoints.

Each user has one Redis hash (``Keys.devices``) from device id to the device as JSON. A device id is
``<platform>-<hash of the token or endpoint>``, so it is stable: registering the same token again
updates that device (topic, subscription keys, last seen) and never adds a second one. The platform
prefix is what the router reads (HKEYS alone) to decide which push channels a user has.

The platforms are the registry's channels that ``needs_device``; each says what its devices register
with (``takes_subscription``, ``takes_url``, ``check_token``, ``check_url``), so this module names
none of them.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import logging
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

import orjson
import redis
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from notifier.config import is_loopback
from notifier.errors import ValidationError
from notifier.models import GROUP_RECIPIENT, check_recipient, refuse_control, utcnow, validate
from notifier.redis import store
from notifier.redis.keys import Keys

if TYPE_CHECKING:
    from notifier.channels.targets import TargetChannel

log = logging.getLogger("notifier.state.devices")

MAX_DEVICES = 100
"""Per user; a user who really has more is more likely a client registering a fresh token each launch."""
_TOPIC = re.compile(r"[A-Za-z0-9_.\-]{1,255}")


def _b64url(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


class Subscription(BaseModel):
    """A browser's ``PushSubscription.toJSON()``: where to post, and the keys to encrypt for."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    endpoint: str = Field(max_length=2048)
    keys: dict[Literal["p256dh", "auth"], str]

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        url = urlsplit(value)
        secure = url.scheme == "https" or (url.scheme == "http" and is_loopback(url.hostname))
        if not secure or not url.hostname:
            raise ValueError("endpoint must be an https URL (plain http only to a loopback host)")
        return value

    @field_validator("keys")
    @classmethod
    def _keys(cls, value: dict[str, str]) -> dict[str, str]:
        for name, size in (("p256dh", 65), ("auth", 16)):
            raw = value.get(name)
            try:
                decoded = _b64url(raw) if isinstance(raw, str) else b""
            except (binascii.Error, ValueError):
                decoded = b""
            if len(decoded) != size or (name == "p256dh" and decoded[0] != 4):
                raise ValueError(f"keys.{name} must be the browser's base64url {size}-byte value")
        return value


def platforms() -> tuple[str, ...]:
    """The channels devices register for: those that ``needs_device`` (imports the channel classes)."""
    from notifier.channels import registry

    return tuple(name for name, cls in registry.classes().items() if cls.needs_device)


def platform_class(name: str) -> type[TargetChannel]:
    """The channel class of platform ``name``; ``ValueError`` naming the platforms there are."""
    from notifier.channels import registry
    from notifier.channels.targets import TargetChannel

    cls = registry.channel_class(name) if name in registry.names() else None
    if cls is None or not cls.needs_device or not issubclass(cls, TargetChannel):
        raise ValueError(f"unknown platform {name!r}; choose from {', '.join(platforms())}")
    return cls


def _platform(name: str) -> str:
    platform_class(name)
    return name


Platform = Annotated[str, AfterValidator(_platform)]
"""A channel that ``needs_device``, checked against the registry when validating."""


class Registration(BaseModel):
    """What a client sends to register a device (the API, the CLI and Python all validate this)."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)
    label: ClassVar[str] = "device"

    platform: Platform
    token: str | None = None
    subscription: Subscription | None = None
    url: str | None = Field(None, max_length=2048)
    """Channels that post to a URL (an incoming webhook, an endpoint): where to."""
    topic: str | None = None
    """APNs: the app's bundle id (``apns-topic``) when it differs from NOTIFIER_APNS_TOPIC."""
    secret: SecretStr | None = None
    """Channels that sign what they send (``takes_secret``: webhooks): the signing secret; generated
    when left out (or kept, when the target is registered again)."""
    _identifiers = field_validator("token", "topic", "url", mode="before")(refuse_control)

    @model_validator(mode="after")
    def _target(self) -> Registration:
        cls = platform_class(self.platform)
        given = [f for f in ("token", "subscription", "url") if getattr(self, f) is not None]
        wanted = "subscription" if cls.takes_subscription else "url" if cls.takes_url else "token"
        if given != [wanted]:
            what = {"subscription": "a subscription (endpoint and keys)", "url": "a url", "token": "a token"}
            raise ValueError(f"a {self.platform} device needs {what[wanted]}"
                             + (f", not {' and '.join(given)}" if given and given != [wanted] else ""))
        if self.url is not None:
            cls.check_url(self.url)
        elif self.token is not None:
            cls.check_token(self.token)
        if self.topic is not None and not _TOPIC.fullmatch(self.topic):
            raise ValueError("topic must be an app bundle id like com.example.app")
        if self.secret is not None:
            if not cls.takes_secret:
                raise ValueError(f"a {self.platform} device takes no secret")
            cls.check_secret(self.secret.get_secret_value())
        return self

    @property
    def address(self) -> str:
        """What identifies the device at its provider: the token, or the subscription endpoint."""
        if self.subscription is not None:
            return self.subscription.endpoint
        if self.url is not None:
            return self.url
        assert self.token is not None
        return platform_class(self.platform).token_address(self.token)


class Device(BaseModel):
    """A registered device as stored and listed.

    Its ``secret`` (a webhook's signing key) is stored but never listed: :meth:`to_dict` leaves it out
    and its repr masks it; only the answer to the registration itself carries it
    (:meth:`registered_dict`), so the endpoint's owner can configure their receiver once.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str
    platform: str
    token: str | None = None
    subscription: Subscription | None = None
    url: str | None = None
    topic: str | None = None
    secret: SecretStr | None = Field(None, exclude=True)
    created_at: dt.datetime
    last_seen: dt.datetime

    def to_dict(self) -> dict[str, Any]:
        """As listed (``GET /v1/devices``, ``notifier devices list``): without the secret."""
        return self.model_dump(mode="json", exclude_none=True)

    def registered_dict(self) -> dict[str, Any]:
        """As answered to the registration: :meth:`to_dict` plus the secret, if it has one."""
        shown = self.to_dict()
        if self.secret is not None:
            shown["secret"] = self.secret.get_secret_value()
        return shown

    def _stored(self) -> str:
        """The JSON kept in the registry hash (the secret included)."""
        return orjson.dumps(self.registered_dict()).decode()


def device_id(platform: str, address: str) -> str:
    """``<platform>-<hash>``: stable for a token, safe in Redis keys and receipts, and short."""
    return f"{platform}-{hashlib.sha256(address.encode()).hexdigest()[:32]}"


def platform_of(device_id: str) -> str:
    return device_id.split("-", 1)[0]


DeviceList = list[Device]
"""(An alias: inside :class:`Devices`, ``list`` is its method.)"""


class Devices:
    """Register, list and remove devices; load them in bulk for a push batch."""

    def __init__(self, client: redis.Redis | None = None, keys: Keys | None = None) -> None:
        self.r = client or store.get_redis()
        self.keys = keys or store.get_keys()

    def register(self, user_id: str, registration: Registration | dict[str, Any]) -> Device:
        """Add a device, or refresh it (same token or endpoint: same id, new last seen). A channel that
        ``takes_secret`` gets the registration's secret, else the one it had, else a new one. ``user_id``
        may be a group's recipient id (``notifier.state.groups.group_recipient``)."""
        user_id = check_recipient(user_id)
        reg: Registration = validate(Registration, registration)
        did = device_id(reg.platform, reg.address)
        key = self.keys.devices(user_id)
        now = utcnow()
        old = self.r.hget(key, did)
        if old is None and self.r.hlen(key) >= MAX_DEVICES:
            raise ValidationError(f"user {user_id} already has {MAX_DEVICES} devices; remove stale ones first")
        previous = _load(did, old)
        cls, secret = platform_class(reg.platform), None
        if cls.takes_secret:
            secret = reg.secret or (previous.secret if previous else None) or SecretStr(cls.new_secret())
        device = Device(id=did, platform=reg.platform, token=reg.address if reg.token is not None else None,
                        subscription=reg.subscription, url=reg.url, topic=reg.topic, secret=secret,
                        created_at=previous.created_at if previous else now, last_seen=now)
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(key, did, device._stored())
        if not user_id.startswith(GROUP_RECIPIENT):  # a group's targets are no user a broadcast reaches
            pipe.sadd(self.keys.users(), user_id)
        pipe.execute()
        return device

    def list(self, user_id: str) -> list[Device]:
        """The user's devices, oldest first."""
        raw = self.r.hgetall(self.keys.devices(check_recipient(user_id)))
        devices = [d for d in (_load(i, v) for i, v in raw.items()) if d is not None]
        return sorted(devices, key=lambda d: (d.created_at, d.id))

    def get(self, user_id: str, device_id: str) -> Device | None:
        return _load(device_id, self.r.hget(self.keys.devices(check_recipient(user_id)), device_id))

    def remove(self, user_id: str, device_id: str) -> bool:
        """Forget a device; False when the user had no such device."""
        return bool(self.r.hdel(self.keys.devices(check_recipient(user_id)), device_id))

    def for_users(self, user_ids: Sequence[str], platform: str) -> dict[str, DeviceList]:
        """Each user's devices on one platform, in one pipelined round trip for the whole batch."""
        users = list(dict.fromkeys(user_ids))
        if not users:
            return {}
        pipe = self.r.pipeline(transaction=False)
        for user_id in users:
            pipe.hgetall(self.keys.devices(user_id))
        found: dict[str, list[Device]] = {}
        for user_id, raw in zip(users, pipe.execute(), strict=True):
            devices = [_load(i, v) for i, v in raw.items() if platform_of(i) == platform]
            found[user_id] = sorted((d for d in devices if d is not None), key=lambda d: d.id)
        return found


def _load(did: bytes | str, raw: bytes | str | None) -> Device | None:
    """A stored device, or None (with a warning) if the entry is missing or unreadable."""
    if raw is None:
        return None
    did = did.decode() if isinstance(did, bytes) else did
    try:
        device = Device.model_validate(orjson.loads(raw))
    except (orjson.JSONDecodeError, ValueError) as exc:
        log.warning("ignoring unreadable device %s: %s", did, exc)
        return None
    if device.id != did:
        log.warning("ignoring device stored under %s with id %s", did, device.id)
        return None
    return device


__all__ = ["Device", "Devices", "Registration", "Subscription", "device_id", "platform_of", "platforms"]
