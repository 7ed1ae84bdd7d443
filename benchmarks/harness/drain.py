"""When the pipeline is done: no task waiting or unacknowledged, and every inbox write made.

Figures end at the last inbox write, read afterwards from the entry ids (a stream id starts with the
Redis server's clock in ms), so finding the end does not observe, and slow, the run itself.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Protocol

import redis

from benchmarks.harness.database import client

SEP = "\x06\x16"
PRIORITIES = (0, 3, 6, 9)
"""kombu's Redis transport keeps one list per queue and priority step: ``name``, ``name\\x06\\x163``..."""


class Watched(Protocol):
    """A subprocess whose death ends a wait early, with its output."""

    name: str

    def alive(self) -> bool: ...

    def log(self, last: int | None = None) -> str: ...


def drained(queues: Iterable[str], r: redis.Redis | None = None) -> bool:
    """No message waiting in these queues and none delivered but unacknowledged.

    notifier's task queues are streams (``notifier/pipeline/streams_transport.py``); others, like the no-op
    baseline's, are kombu's lists with its ``unacked`` hash.
    """
    from notifier.pipeline.queues import QUEUES
    from notifier.pipeline.streams_transport import in_flight, waiting

    r = r or client()
    streams = tuple(q for q in queues if q in QUEUES)
    if any(waiting(r, q) for q in streams) or in_flight(r, streams):
        return False
    pipe = r.pipeline(transaction=False)
    for queue in (q for q in queues if q not in QUEUES):
        for p in PRIORITIES:
            pipe.llen(queue if p == 0 else f"{queue}{SEP}{p}")
    pipe.hlen("unacked")
    return not any(pipe.execute())


def wait_drained(queues: Sequence[str], timeout: float, interval: float = 0.002,
                 workers: Sequence[Watched] = ()) -> float:
    """Block until the queues stay drained for two polls; returns the time of the first of them.

    Two polls: kombu's list transport (the no-op baseline's) moves a fetched message to the unacked
    hash in a second step, so a single poll could fall between the two.
    """
    r = client()
    deadline = time.monotonic() + timeout
    first: float | None = None
    while True:
        now = time.time()
        if drained(queues, r):
            if first is not None:
                return first
            first = now
        else:
            first = None
        if time.monotonic() > deadline:
            raise TimeoutError(f"queues {list(queues)} not drained after {timeout}s")
        for w in workers:
            if not w.alive():
                raise RuntimeError(f"{w.name} died:\n{w.log(40)}")
        time.sleep(interval)


def inbox_writes(user_ids: Sequence[str], chunk: int = 5000) -> tuple[int, float]:
    """How many inbox entries these users have, and when the newest was written (epoch seconds)."""
    from notifier.redis import store

    r = client()
    keys = store.get_keys()
    total, newest = 0, 0
    for start in range(0, len(user_ids), chunk):
        pipe = r.pipeline(transaction=False)
        for user in user_ids[start:start + chunk]:
            pipe.xlen(keys.inbox(user))
            pipe.xrevrange(keys.inbox(user), count=1)
        replies = pipe.execute()
        for length, last in zip(replies[::2], replies[1::2], strict=True):
            total += length
            if last:
                newest = max(newest, int(last[0][0].split("-")[0]))
    return total, newest / 1000


def inbox_write_times(user_ids: Sequence[str]) -> dict[str, float]:
    """When each notification was written to these users' inboxes (epoch seconds, from its entry id:
    Redis's clock, to the millisecond), by notification id."""
    from notifier.redis import store

    r = client()
    keys = store.get_keys()
    pipe = r.pipeline(transaction=False)
    for user in user_ids:
        pipe.xrange(keys.inbox(user))
    return {fields["nid"]: int(entry_id.split("-")[0]) / 1000
            for entries in pipe.execute() for entry_id, fields in entries}


def wait_inboxes(user_ids: Sequence[str], expected: int, queues: Sequence[str], timeout: float,
                 workers: Sequence[Watched] = ()) -> float:
    """Wait for the pipeline to finish, check every inbox write happened, return the last one's time."""
    wait_drained(queues, timeout, workers=workers)
    count, newest = inbox_writes(user_ids)
    if count != expected:
        raise RuntimeError(f"expected {expected} inbox entries, found {count}")
    return newest
