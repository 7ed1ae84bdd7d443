"""Delivery receipts: each (notification, channel, target) is sent at most once while receipts last.

A task that is redelivered (worker killed, visibility timeout) or replayed from the dead-letter queue
runs again; before sending, it claims the receipt. A ``done`` receipt means the target already got it;
a ``pending`` claim means another run is sending right now (or crashed mid-send: the claim expires
after ``NOTIFIER_CLAIM_SECONDS``, then the send is tried again). A live run keeps its claims alive
(:meth:`Receipts.keep_alive`), so a batch slower than the claim is never sent twice at once, while a
killed worker's claims lapse soon enough for its redelivered task to send them.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from enum import Enum

import redis

from notifier.config import get_settings
from notifier.redis import scripts, store
from notifier.redis.keys import Keys

Item = tuple[str, str, str, str]
"""``(user_id, channel, notification_id, target)``"""


class Claim(Enum):
    SEND = "send"
    DONE = "done"
    BUSY = "busy"


class Receipts:
    def __init__(self, client: redis.Redis | None = None, keys: Keys | None = None) -> None:
        self.r = client or store.get_redis()
        self.keys = keys or store.get_keys()
        settings = get_settings()
        self.claim_seconds = settings.claim_seconds
        self.ttl = settings.receipt_ttl_seconds

    def _key(self, item: Item) -> str:
        user_id, channel, nid, target = item
        return self.keys.receipt(user_id, channel, nid, target)

    def claim_many(self, items: Sequence[Item]) -> list[Claim]:
        if not items:
            return []
        pipe = self.r.pipeline(transaction=False)
        for item in items:
            pipe.set(self._key(item), "pending", nx=True, get=True, ex=self.claim_seconds)
        return [Claim.SEND if old is None else Claim.DONE if old == "done" else Claim.BUSY
                for old in pipe.execute()]

    def done_many(self, items: Sequence[Item]) -> None:
        self._write(items, lambda pipe, key: pipe.set(key, "done", ex=self.ttl))

    @contextmanager
    def keep_alive(self, items: Sequence[Item]) -> Iterator[None]:
        """While the block runs, renew the still-pending claims of ``items`` every third of their life."""
        if not items:
            yield
            return
        stop = threading.Event()
        calls = [(scripts.script("extend_if"), [self._key(item)], ["pending", self.claim_seconds]) for item in items]

        def renew() -> None:
            while not stop.wait(self.claim_seconds / 3):
                # the next renewal tries again; a lapsed claim only allows a retry
                with contextlib.suppress(redis.RedisError):
                    scripts.run_scripts(self.r, calls)

        thread = threading.Thread(target=renew, name="claim-keep-alive", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def release_many(self, items: Sequence[Item]) -> None:
        """Give up a claim after a failed send, so a retry may claim it again."""
        self._write(items, lambda pipe, key: pipe.delete(key))

    def _write(self, items: Sequence[Item], op: object) -> None:
        if not items:
            return
        pipe = self.r.pipeline(transaction=False)
        for item in items:
            op(pipe, self._key(item))  # type: ignore[operator]
        pipe.execute()
