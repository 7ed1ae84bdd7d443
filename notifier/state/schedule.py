"""Deferred task messages in a Redis sorted set of due times.

Quiet-hour deferrals (hours) and long backoffs must not be Celery ETAs: with the Redis broker an ETA
longer than the visibility timeout is redelivered and runs twice (celery #2481, #3270, #7009). They wait
here instead, and a small loop in every worker (``workers/scheduler.py``) releases what is due into the
normal queues. A message is removed only after it was re-enqueued, so a crash in between sends it
twice at worst, never zero times; deliveries are idempotent, so twice is harmless.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable
from typing import Any, cast

import orjson
import redis

from notifier.redis import store
from notifier.redis.keys import Keys

Sender = Callable[[str, list[Any], dict[str, Any], str], None]


class Schedule:
    def __init__(self, client: redis.Redis | None = None, keys: Keys | None = None) -> None:
        self.r = client or store.get_redis()
        self.keys = keys or store.get_keys()

    def add(self, due: float, task: str, args: list[Any], kwargs: dict[str, Any], queue: str) -> str:
        """Hold a task message until ``due`` (epoch seconds); returns its id."""
        message_id = uuid.uuid4().hex
        member = orjson.dumps({"id": message_id, "task": task, "args": args, "kwargs": kwargs, "queue": queue})
        self.r.zadd(self.keys.schedule(), {member: due})
        return message_id

    def size(self) -> int:
        return int(self.r.zcard(self.keys.schedule()))

    def release_due(self, send: Sender, now: float | None = None, batch: int = 500,
                    lock_seconds: int = 30) -> int:
        """Send every message that is due; returns how many. Only one caller at a time does the work."""
        lock = self.r.lock(self.keys.scheduler_lock(), timeout=lock_seconds, blocking=False)
        if not lock.acquire():
            return 0
        released = 0
        try:
            while True:
                due = cast("list[str]", self.r.zrangebyscore(self.keys.schedule(), "-inf", now or time.time(),
                                                              start=0, num=batch))
                if not due:
                    return released
                for member in due:
                    msg = orjson.loads(member)
                    send(msg["task"], msg["args"], msg["kwargs"], msg["queue"])
                    self.r.zrem(self.keys.schedule(), member)
                    released += 1
                lock.reacquire()
        finally:
            with contextlib.suppress(redis.exceptions.LockError):
                lock.release()
