"""The Redis-database lock test sessions and benchmarks share (tests/support/redisdb.py), on real Redis.

Each test claims a database of its own for the owner ``test-redisdb`` and gives it back at the end.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from tests.support import redisdb

OWNER = "test-redisdb"
DEAD = "ghost:4194305"
"""A lock value naming a pid above Linux's largest (pid_max is at most 2**22), so never a live process."""


@pytest.fixture
def db_url() -> Iterator[str]:
    url = redisdb.url(redisdb.claim_free_db(OWNER))
    yield url
    redisdb.release(url, OWNER)


def lock(url: str) -> str | None:
    value = redis.Redis.from_url(url, decode_responses=True).get(redisdb.LOCK)
    return None if value is None else str(value)


def test_holder_alive_reads_the_pid_at_the_end_of_the_value() -> None:
    assert redisdb.holder_alive(redisdb.lock_value("anyone"))
    assert redisdb.holder_alive("benchmark-1")  # the older benchmark format; pid 1 always runs
    assert not redisdb.holder_alive(DEAD)
    assert not redisdb.holder_alive(None)
    assert redisdb.holder_alive("no-pid-at-all")  # unknown format: assume someone holds it


def test_a_live_holder_keeps_its_database_and_its_owner_may_claim_it_again(db_url: str) -> None:
    assert lock(db_url) == redisdb.lock_value(OWNER)
    assert not redisdb.claim(db_url, "someone-else")
    assert redisdb.claim(db_url, OWNER)
    assert lock(db_url) == redisdb.lock_value(OWNER)


def test_a_dead_holders_database_is_taken_over(db_url: str) -> None:
    redis.Redis.from_url(db_url).set(redisdb.LOCK, DEAD, ex=60)
    assert redisdb.claim(db_url, OWNER)
    assert lock(db_url) == redisdb.lock_value(OWNER)


def test_flush_empties_the_database_but_keeps_the_lock(db_url: str) -> None:
    r = redis.Redis.from_url(db_url, decode_responses=True)
    r.set("left-over", "1")
    redisdb.flush(db_url, OWNER)
    assert r.keys("*") == [redisdb.LOCK]
    assert 0 < r.ttl(redisdb.LOCK) <= redisdb.TTL


def test_release_acts_only_for_the_holder_and_keeps_data_when_asked(db_url: str) -> None:
    r = redis.Redis.from_url(db_url, decode_responses=True)
    r.set("result", "1")
    redisdb.release(db_url, "someone-else")
    assert r.get("result") == "1" and lock(db_url) == redisdb.lock_value(OWNER)
    redisdb.release(db_url, OWNER, keep_data=True)
    assert r.get("result") == "1" and lock(db_url) is None
    assert redisdb.claim(db_url, OWNER)
    redisdb.release(db_url, OWNER)
    assert r.keys("*") == []


def test_claiming_a_free_database_again_gives_another_one(db_url: str) -> None:
    """A session's private database must not be its own session database (the first one's worker would
    then take the private test's tasks)."""
    second = redisdb.url(redisdb.claim_free_db(OWNER))
    try:
        assert second != db_url
        assert lock(db_url) == lock(second) == redisdb.lock_value(OWNER)
    finally:
        redisdb.release(second, OWNER)
