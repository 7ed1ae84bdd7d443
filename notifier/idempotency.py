"""Idempotency keys: the first send with a key wins; later sends resolve to its notification id.

The claim is one atomic ``SET key id NX GET EX ttl``, so two producers racing with the same key
cannot both deliver.
"""

from __future__ import annotations

import re
from typing import Sequence

import redis

from notifier import store
from notifier.config import get_settings
from notifier.errors import ValidationError
from notifier.keys import Keys

_KEY = re.compile(r"[^\x00-\x1f\x7f]{1,256}")


def check_key(key: str | None) -> str | None:
    """Idempotency keys are free text up to 256 characters (no control characters)."""
    if key is not None and (not isinstance(key, str) or not _KEY.fullmatch(key)):
        raise ValidationError(f"invalid idempotency key {key!r}: 1 to 256 printable characters")
    return key


class Idempotency:
    def __init__(self, client: redis.Redis | None = None, keys: Keys | None = None,
                 ttl: int | None = None) -> None:
        self.r = client or store.get_redis()
        self.keys = keys or store.get_keys()
        self.ttl = ttl or get_settings().idempotency_ttl

    def claim_many(self, claims: Sequence[tuple[str, str]]) -> list[str | None]:
        """For each ``(key, notification_id)``: None if this send claimed the key, else the winner's id."""
        if not claims:
            return []
        pipe = self.r.pipeline(transaction=False)
        for key, nid in claims:
            pipe.set(self.keys.idempotency(key), nid, nx=True, get=True, ex=self.ttl)
        return list(pipe.execute())

    def release(self, key: str, notification_id: str) -> None:
        """Drop a claim that was never used (its send did not reach the broker)."""
        store.script("release_if")([self.keys.idempotency(key)], [notification_id], client=self.r)

    def lookup(self, key: str) -> str | None:
        """The id a key already resolved to, if any (a cheap pre-check for producers)."""
        return self.r.get(self.keys.idempotency(key))
