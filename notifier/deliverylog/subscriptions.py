"""Event webhook subscriptions: which URLs get which kinds of delivery events, kept in Redis.

A subscription has an id (``wh_`` and 16 hex digits), an http(s) URL (checked as the webhook channel
checks users' URLs: https, plain http only to a loopback host, no private address unless
``NOTIFIER_WEBHOOK_ALLOW_PRIVATE``), the event kinds it wants (``events.KINDS``, or ``*`` for every
kind, future ones included), a Standard Webhooks secret (``whsec_...``, generated, shown once when
added), its creation time, its state (``active``, or ``disabled`` with when and why) and, while its
endpoint fails, when the failures began. Each is one Redis hash; the set of ids and the hashes share
one slot, so adding and removing are transactions and the failure and enable scripts never recreate
a removed subscription.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import redis

from notifier.channels import egress
from notifier.channels.webhook import WebhookChannel
from notifier.deliverylog.events import KINDS
from notifier.errors import InvalidWebhook, UnknownWebhook
from notifier.redis import scripts, store
from notifier.redis.keys import Keys
from notifier.state.deadletters import iso

ALL_KINDS = "*"
"""The filter that takes every kind of event."""
ID_PATTERN = r"^wh_[0-9a-f]{16}$"
_ID = re.compile(ID_PATTERN)

State = Literal["active", "disabled"]


@dataclass(frozen=True)
class Subscription:
    id: str
    url: str
    kinds: tuple[str, ...]
    """The event kinds it receives; ``("*",)`` for every kind."""
    secret: str
    created_at: float
    state: State = "active"
    disabled_at: float | None = None
    disabled_reason: str | None = None
    failing_since: float | None = None
    """When its endpoint began failing (the first failure since its last success); None while it works."""

    def wants(self, kind: str) -> bool:
        return self.state == "active" and (ALL_KINDS in self.kinds or kind in self.kinds)

    def to_dict(self, with_secret: bool = False) -> dict[str, Any]:
        """As listed (``notifier webhooks list``, ``GET /v1/admin/webhooks``): times in ISO 8601, the
        secret only when just added."""
        shown: dict[str, Any] = {"id": self.id, "url": self.url, "events": list(self.kinds), "state": self.state,
                                 "created_at": iso(self.created_at)}
        if self.state == "disabled":
            shown["disabled_at"] = iso(self.disabled_at) if self.disabled_at is not None else None
            shown["disabled_reason"] = self.disabled_reason
        shown["failing_since"] = iso(self.failing_since) if self.failing_since is not None else None
        if with_secret:
            shown["secret"] = self.secret
        return shown


def parse_kinds(kinds: str | Iterable[str]) -> tuple[str, ...]:
    """Event kinds from ``"sent,failed"`` or a list, each once; :class:`InvalidWebhook` for none or an
    unknown one."""
    names = [k.strip() for k in (kinds.split(",") if isinstance(kinds, str) else kinds)]
    names = list(dict.fromkeys(k for k in names if k))
    if not names:
        raise InvalidWebhook(f"name the event kinds to send, e.g. sent,failed,read ({ALL_KINDS} for every kind)")
    if ALL_KINDS in names:
        return (ALL_KINDS,)
    unknown = [k for k in names if k not in KINDS]
    if unknown:
        raise InvalidWebhook(f"unknown event kind(s) {', '.join(map(repr, unknown))}; the kinds are "
                             f"{', '.join(KINDS)} (or {ALL_KINDS} for every kind)")
    return tuple(names)


def check_url(url: str) -> str:
    try:
        egress.check_url("event webhook", url)
    except ValueError as exc:
        raise InvalidWebhook(str(exc)) from None
    return url


class Subscriptions:
    def __init__(self, client: redis.Redis | None = None, keys: Keys | None = None) -> None:
        self.r = client or store.get_redis()
        self.keys = keys or store.get_keys()

    def add(self, url: str, kinds: str | Sequence[str]) -> Subscription:
        """A new active subscription with a fresh secret (:class:`InvalidWebhook` for a bad URL or kinds)."""
        sub = Subscription(id="wh_" + secrets.token_hex(8), url=check_url(url), kinds=parse_kinds(kinds),
                           secret=WebhookChannel.new_secret(), created_at=time.time())
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(self.keys.event_webhook(sub.id), mapping={
            "url": sub.url, "kinds": ",".join(sub.kinds), "secret": sub.secret, "created_at": repr(sub.created_at),
            "state": sub.state})
        pipe.sadd(self.keys.event_webhooks(), sub.id)
        pipe.execute()
        return sub

    def get(self, subscription_id: str) -> Subscription | None:
        if not _ID.fullmatch(subscription_id):
            return None
        return _decode(subscription_id, self.r.hgetall(self.keys.event_webhook(subscription_id)))

    def require(self, subscription_id: str) -> Subscription:
        sub = self.get(subscription_id)
        if sub is None:
            raise UnknownWebhook(f"no event webhook {subscription_id!r} (see notifier webhooks list)")
        return sub

    def list(self) -> list[Subscription]:
        """Every subscription, oldest first (one round trip for the ids, one for the hashes)."""
        ids = sorted(cast("set[str]", self.r.smembers(self.keys.event_webhooks())))
        pipe = self.r.pipeline(transaction=False)
        for i in ids:
            pipe.hgetall(self.keys.event_webhook(i))
        found = [_decode(i, fields) for i, fields in zip(ids, pipe.execute(), strict=True)]
        return sorted(filter(None, found), key=lambda s: s.created_at)

    def remove(self, subscription_id: str) -> None:
        self.require(subscription_id)
        pipe = self.r.pipeline(transaction=True)
        pipe.delete(self.keys.event_webhook(subscription_id))
        pipe.srem(self.keys.event_webhooks(), subscription_id)
        pipe.execute()

    def enable(self, subscription_id: str) -> Subscription:
        """Active again, its failure time forgotten."""
        self.require(subscription_id)
        if not scripts.script("webhook_enable")([self.keys.event_webhook(subscription_id)], [], client=self.r):
            raise UnknownWebhook(f"no event webhook {subscription_id!r} (removed meanwhile)")
        return self.require(subscription_id)

    def failed(self, subscription_id: str, disable_after_seconds: float, reason: str,
               now: float | None = None) -> tuple[bool, float | None]:
        """Record a failed attempt: whether this disabled the subscription, and since when it fails
        (None when it was removed)."""
        result = scripts.script("webhook_failed")(
            [self.keys.event_webhook(subscription_id)], [repr(now or time.time()), disable_after_seconds, reason],
            client=self.r)
        if int(result[0]) < 0:
            return False, None
        return bool(int(result[0])), float(result[1])

    def succeeded(self, subscription_id: str) -> None:
        """A success ends a run of failures."""
        self.r.hdel(self.keys.event_webhook(subscription_id), "failing_since")


def _decode(subscription_id: str, fields: dict[Any, Any]) -> Subscription | None:
    if not fields:
        return None
    f = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
         for k, v in fields.items()}

    def number(name: str) -> float | None:
        return float(f[name]) if f.get(name) else None

    return Subscription(id=subscription_id, url=f["url"], kinds=tuple(f["kinds"].split(",")), secret=f["secret"],
                        created_at=float(f["created_at"]), state=cast("State", f.get("state", "active")),
                        disabled_at=number("disabled_at"), disabled_reason=f.get("disabled_reason"),
                        failing_since=number("failing_since"))
