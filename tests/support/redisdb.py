"""Which database of the local Redis server a test session or a benchmark may flush: one lock per database.

Every test session and benchmark on the machine shares one Redis server, and each flushes what it
uses; so each holds a lock key in its database whose value names the owner and its pid
(``<owner>:<pid>``). A database whose lock names a live process is taken; one whose holder died (a
killed pytest, a benchmark stopped with SIGKILL) is free again. Test sessions look for a free one
(:func:`claim_free_db`); a benchmark names its own and refuses to run when someone else holds it.
"""

from __future__ import annotations

import os
import re

import redis

HOST = os.environ.get("NOTIFIER_TEST_REDIS_HOST", "127.0.0.1")
PORT = int(os.environ.get("NOTIFIER_TEST_REDIS_PORT", "6379"))
LOCK = "notifier-test-session-lock"
"""The lock key; its name predates benchmarks holding it, and sessions of older checkouts look for it."""
TTL = 3600
"""Seconds a lock lasts: one that outlives a session by accident frees itself."""


def url(db: int) -> str:
    """The URL of database ``db`` of the local server."""
    return f"redis://{HOST}:{PORT}/{db}"


def _client(db_url: str) -> redis.Redis:
    return redis.Redis.from_url(db_url, decode_responses=True)


def lock_value(owner: str) -> str:
    """A lock value that names the holding process, so a crashed holder's lock is taken over."""
    return f"{owner}:{os.getpid()}"


def holder_alive(value: str | None) -> bool:
    """Whether the process named at the end of a lock value still runs on this machine."""
    if value is None:
        return False
    digits = re.search(r"(\d+)$", value)
    if digits is None:
        return True
    try:
        os.kill(int(digits.group(1)), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def claim(db_url: str, owner: str) -> bool:
    """Lock this database for ``owner`` unless a live process other than this one holds it.

    A dead holder's lock is taken over inside a transaction that watches the key, so two claimants
    that both saw it dead cannot both win.
    """
    value = lock_value(owner)
    r = _client(db_url)
    if r.set(LOCK, value, nx=True, ex=TTL):
        return True
    with r.pipeline() as pipe:
        try:
            pipe.watch(LOCK)
            holder = pipe.get(LOCK)
            if holder is not None and holder != value and holder_alive(str(holder)):
                return False
            pipe.multi()
            pipe.set(LOCK, value, ex=TTL)
            pipe.execute()
        except redis.WatchError:
            return False
    return True


def flush(db_url: str, owner: str) -> None:
    """Delete everything in a database ``owner`` holds but the lock (one transaction, so no one claims
    it in between)."""
    pipe = _client(db_url).pipeline(transaction=True)
    pipe.flushdb()
    pipe.set(LOCK, lock_value(owner), ex=TTL)
    pipe.execute()


def claim_free_db(owner: str, order: range = range(1, 16)) -> int:
    """The first database in ``order`` no live test session or benchmark holds, flushed and locked.

    One this owner holds already is skipped: a session asking again wants a second database (its
    private one), and getting its own back would flush it under the session's own worker.
    """
    for db in order:
        if _client(url(db)).get(LOCK) == lock_value(owner):
            continue
        if claim(url(db), owner):
            flush(url(db), owner)
            return db
    raise RuntimeError(f"every Redis database {min(order)}-{max(order)} is held by a running test session "
                       "or benchmark")


def release(db_url: str, owner: str, keep_data: bool = False) -> None:
    """Give the database back if ``owner`` still holds it: flushed (lock included), or with its data
    left for a look (a benchmark's) and only the lock removed."""
    r = _client(db_url)
    if r.get(LOCK) != lock_value(owner):
        return
    if keep_data:
        r.delete(LOCK)
    else:
        r.flushdb()
