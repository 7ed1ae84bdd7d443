"""Jobs every worker's scheduler loop offers to send, sent by one of them per interval.

A job's key is set with ``NX`` and an expiry of its interval: the worker that sets it sends the job,
the others find it set, so however many workers run, the job goes out once per interval (and a
worker restart does not send it again early, since the key lives in Redis).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import redis

from notifier.redis import store
from notifier.redis.keys import Keys


@dataclass(frozen=True)
class Job:
    task: str
    queue: str
    interval_seconds: float
    wanted: Callable[[], bool] = lambda: True
    """Asked before the interval is claimed: False skips this send (nothing to do), and claims nothing."""
    expires_seconds: float | None = None
    """A send not started within this is discarded (the next interval sends another)."""


class Periodic:
    def __init__(self, jobs: tuple[Job, ...], client: redis.Redis | None = None, keys: Keys | None = None) -> None:
        self.jobs = jobs
        self.r = client or store.get_redis()
        self.keys = keys or store.get_keys()

    def due(self) -> list[Job]:
        """The jobs this caller should send now (they have work, and it claimed their interval)."""
        return [job for job in self.jobs
                if job.wanted()
                and self.r.set(self.keys.periodic(job.task), "1", nx=True, px=int(job.interval_seconds * 1000))]
