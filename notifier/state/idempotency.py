"""Idempotency keys: the first send with a key wins; later sends resolve to its notification id.

A key is claimed twice. The producer claims it for a short while (``NOTIFIER_IDEMPOTENCY_PENDING_TTL_SECONDS``)
so that a repeated send is answered at once with the first id; if the producer fails before the
broker has the task (an exception, or the process dying), the claim is released or lapses and a
later send with the key goes out. The router claims it again when it routes the send, which turns the
pending claim into the full ``NOTIFIER_IDEMPOTENCY_TTL_SECONDS`` when it is still the same send's. Both claims
are one atomic script (``lua/idempotency_claim.lua``), so of two sends with one key exactly one is
routed, even when a pending claim lapsed while its task waited in the queue.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import redis

from notifier.config import get_settings
from notifier.errors import ValidationError
from notifier.redis import scripts, store
from notifier.redis.keys import Keys

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
        self.ttl = ttl or get_settings().idempotency_ttl_seconds

    def claim_many(self, claims: Sequence[tuple[str, str]]) -> list[str | None]:
        """For each ``(key, notification_id)``: None if the key was free, else the id holding it.

        A key held by the same id (a redelivered task, or the router after the producer) is extended
        to this claim's ttl.
        """
        if not claims:
            return []
        claim = scripts.script("idempotency_claim")
        return scripts.run_scripts(self.r, [(claim, [self.keys.idempotency(key)], [nid, self.ttl])
                                          for key, nid in claims])

    def release(self, key: str, notification_id: str) -> None:
        """Drop a claim that was never used (its send did not reach the broker)."""
        scripts.script("release_if")([self.keys.idempotency(key)], [notification_id], client=self.r)
