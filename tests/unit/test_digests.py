"""Digest state (notifier.state.digests) on real Redis: concurrent events from several processes open
one digest, max closes early, redeliveries change nothing, and a Redis Cluster keeps an item's keys in
its user's slot."""

from __future__ import annotations

import itertools
import multiprocessing
import re
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from redis.cluster import RedisCluster

from notifier.redis.keys import Keys
from notifier.redis.store import get_keys, get_redis
from notifier.state.digests import LATE_SECONDS, MARGIN_SECONDS, Closed, Digests, Joined, JoinItem
from tests.support.cluster_support import cluster_url, redis_cluster  # noqa: F401
from tests.support.helpers import uid

WORKFLOW = "comment"
Row = tuple[str, bool, str, int, float, float]
"""A join seen by a process: run id, opened, digest id, count, sent at, answered at."""


def item(user: str, run: str, key: str = "post-1", window: float = 60, max_events: int | None = None,
         **event: Any) -> JoinItem:
    return JoinItem(user, WORKFLOW, key, run, {"id": run, **event}, window, max_events)


def _join_from_process(user: str, events: list[tuple[str, str]], barrier: Any) -> list[Row]:
    """One process of the concurrency tests: wait for the others, then join each ``(key, run)`` event in
    its own call (one round trip each, so the processes' events interleave in Redis)."""
    digests = Digests()
    digests.peek(user, WORKFLOW, "post-1")  # connected and the script loaded before the start
    barrier.wait()
    out = []
    for key, run in events:
        sent = time.time()
        joined = digests.join(item(user, run, key=key))
        out.append((run, joined.opened, joined.digest_id, joined.count, sent, time.time()))
    return out


def _from_processes(user: str, per_process: list[list[tuple[str, str]]],
                    meanwhile: Callable[[], object] = lambda: None) -> list[Row]:
    """Each list of events joined by a process of its own, all starting at once; ``meanwhile`` is
    called in this process until they are done."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Manager().Barrier(len(per_process))
    with context.Pool(len(per_process)) as pool:
        pending = pool.starmap_async(_join_from_process, [(user, events, barrier) for events in per_process])
        while not pending.ready():
            meanwhile()
        results = pending.get()
    return [join for result in results for join in result]


def test_200_events_from_4_processes_open_one_digest_holding_each_once() -> None:
    user = uid()
    runs = [f"run-{p}-{i}" for p in range(4) for i in range(50)]
    joins = _from_processes(user, [[("post-1", run) for run in runs[p * 50:(p + 1) * 50]] for p in range(4)])
    span = max(j[5] for j in joins) - min(j[4] for j in joins)
    order = [j[0].split("-")[1] for j in sorted(joins, key=lambda j: j[4])]
    switches = sum(a != b for a, b in itertools.pairwise(order))
    assert switches >= 20 and span < 2, f"{switches} switches between processes in {span * 1000:.0f} ms: the " \
        "events did not interleave, so the test proves less"
    # (27-44 ms here on a quiet machine, more on a loaded one; the 4 processes interleave 85-160 times)
    opened = [j for j in joins if j[1]]
    assert len(opened) == 1, f"{len(opened)} digests opened"
    owner = opened[0][0]
    assert {j[2] for j in joins} == {owner}
    assert sorted(j[3] for j in joins) == list(range(1, 201)), "each join saw its own count"
    closed = Digests().close(user, WORKFLOW, "post-1", owner)
    assert closed is not None and closed.count == 200
    assert Counter(e["id"] for e in closed.events) == Counter(runs)
    order = {j[0]: j[3] for j in joins}
    assert [order[e["id"]] for e in closed.events] == list(range(1, 201)), "events in join order"
    writers = [e["id"].split("-")[1] for e in closed.events]
    switches = sum(a != b for a, b in itertools.pairwise(writers))
    assert switches >= 20, f"the processes' joins interleaved {switches} times: too few to show a race"
    assert Digests().peek(user, WORKFLOW, "post-1") is None


def test_first_events_of_40_keys_from_4_processes_open_one_digest_each() -> None:
    """Where a look-then-open races (novu#2569): the four processes' first events of each key arrive
    together, 40 times over."""
    user = uid()
    keys = [f"k{i}" for i in range(40)]
    joins = _from_processes(user, [[(key, f"{key}-{p}") for key in keys] for p in range(4)])
    for key in keys:
        mine = [j for j in joins if j[0].startswith(f"{key}-")]
        opened = [j[0] for j in mine if j[1]]
        assert len(opened) == 1, f"{key}: {len(opened)} digests opened"
        assert {j[2] for j in mine} == set(opened) and sorted(j[3] for j in mine) == [1, 2, 3, 4]
        closed = Digests().close(user, WORKFLOW, key, opened[0])
        assert closed is not None and sorted(e["id"] for e in closed.events) == sorted(j[0] for j in mine)


def test_closes_while_events_join_lose_nothing_and_take_nothing_twice() -> None:
    """An event joins before a close (and is in it) or after (and opens the next digest)."""
    user, digests = uid(), Digests()
    closed: list[Closed] = []

    def close_the_open_one() -> None:
        open_now = digests.peek(user, WORKFLOW, "post-1")
        if open_now and (got := digests.close(user, WORKFLOW, "post-1", open_now[0])):
            closed.append(got)

    runs = [f"run-{p}-{i}" for p in range(3) for i in range(100)]
    joins = _from_processes(user, [[("post-1", run) for run in runs[p * 100:(p + 1) * 100]] for p in range(3)],
                            close_the_open_one)
    close_the_open_one()
    assert len(closed) > 3, "the closes should have cut the stream of events several times"
    assert Counter(e["id"] for c in closed for e in c.events) == Counter(runs)
    owners = {j[2] for j in joins}
    assert {c.digest_id for c in closed} == owners and sum(j[1] for j in joins) == len(owners)
    by_digest = Counter(j[2] for j in joins)
    assert all(c.count == by_digest[c.digest_id] for c in closed)


def test_max_closes_early_and_the_next_event_opens_a_new_digest() -> None:
    user, digests = uid(), Digests()
    runs = [f"r{i}" for i in range(120)]
    joined = digests.join_many([item(user, run, max_events=50, n=i) for i, run in enumerate(runs)])
    full = [(i, j) for i, j in enumerate(joined) if j.full]
    assert [(i, j.count, j.digest_id) for i, j in full] == [(49, 50, "r0"), (99, 50, "r50")]
    assert [j.digest_id for j in joined if j.opened] == ["r0", "r50", "r100"]
    assert digests.peek(user, WORKFLOW, "post-1")[:2] == ("r100", 20)
    first, second = digests.close(user, WORKFLOW, "post-1", "r0"), digests.close(user, WORKFLOW, "post-1", "r50")
    assert first is not None and [e["n"] for e in first.events] == list(range(50))
    assert second is not None and [e["n"] for e in second.events] == list(range(50, 100))
    assert digests.peek(user, WORKFLOW, "post-1")[:2] == ("r100", 20), "closing a full digest leaves the open one"
    third = digests.close(user, WORKFLOW, "post-1", "r100")
    assert third is not None and [e["n"] for e in third.events] == list(range(100, 120))
    one = digests.join(item(user, "solo", key="other", max_events=1))
    assert one.opened and one.full and one.count == 1, "max 1: the opener fills it"
    assert digests.peek(user, WORKFLOW, "other") is None


def test_redelivered_joins_and_closes_change_nothing() -> None:
    user, digests = uid(), Digests()
    now = time.time()
    first = digests.join_many([item(user, "a", n=1), item(user, "b", n=2)], now=now)
    assert first == [Joined("a", True, 1, round(now * 1000 + 60_000) / 1000, False),
                     Joined("a", False, 2, first[0].due, False)]
    assert digests.join_many([item(user, "b", n=2), item(user, "a", n=1)], now=now + 5) == first[::-1], \
        "a redelivered join returns what the first returned, the opener still told it opened"
    assert digests.join(item(user, "c", n=3), now=now + 6).count == 3
    closed = digests.close(user, WORKFLOW, "post-1", "a")
    assert closed == Closed("a", 3, [{"id": "a", "n": 1}, {"id": "b", "n": 2}, {"id": "c", "n": 3}])
    assert digests.close(user, WORKFLOW, "post-1", "a") == closed, "a repeated close returns the same"
    assert digests.join(item(user, "b", n=2)) == first[1], "a join redelivered after the close opens nothing"
    assert digests.peek(user, WORKFLOW, "post-1") is None
    assert digests.close(user, WORKFLOW, "post-1", "b") is None, "b joined a digest, it never owned one"
    assert digests.close(user, WORKFLOW, "post-1", "never") is None
    assert digests.close(uid(), WORKFLOW, "post-1", "a") is None


def test_keys_workflows_and_users_are_separate_and_order_is_kept() -> None:
    alice, bob, digests = uid(), uid(), Digests()
    # ("a:b", "c") and ("a", "b:c") would be one name if the two were joined with ":" unhashed
    items = [JoinItem(alice, "a:b", "c", "1", {"i": 1}, 60, None), JoinItem(alice, "a", "b:c", "2", {"i": 2}, 60, None),
             item(alice, "3", key="x"), item(alice, "4", key="y"), item(bob, "5", key="x"),
             *[item(alice, f"x{i}", key="x", i=i) for i in range(30)]]
    joined = digests.join_many(items)
    assert [j.opened for j in joined[:5]] == [True] * 5, "every (user, workflow, key) opens its own"
    assert {j.digest_id for j in joined[5:]} == {"3"}
    assert digests.peek(alice, "a:b", "c")[:2] == ("1", 1) and digests.peek(alice, "a", "b:c")[:2] == ("2", 1)
    closed = digests.close(alice, WORKFLOW, "x", "3")
    assert closed is not None and [e.get("i") for e in closed.events] == [None, *range(30)]
    assert digests.peek(bob, WORKFLOW, "x")[:2] == ("5", 1) and digests.peek(alice, WORKFLOW, "y")[:2] == ("4", 1)
    assert digests.close(bob, WORKFLOW, "x", "3") is None


def test_odd_users_keys_and_run_ids_stay_in_their_own_keys() -> None:
    """User ids, digest keys and run ids with separators, braces and globs: each digest's keys are the
    user's, named only by hex, and hold only that digest's events."""
    tag = uid("odd")
    users = [f"{tag}{u}" for u in ("*", "a:b", "{x}", "a}b", "}{", " sp ", "ünï💥", "v}:digest:")]
    odd = ["*", "a:b", "{x}", "}:run:", "ü 💥", ""]
    digests, k, r = Digests(), get_keys(), get_redis()
    wanted = [(u, key, f"{key}|{run}") for u in users for key in odd for run in odd]
    joined = digests.join_many([JoinItem(u, "w:{1}", key, run, {"u": u, "k": key}, 60, None) for u, key, run in wanted])
    assert sum(j.opened for j in joined) == len(users) * len(odd)
    for u in users:
        prefix = f"{k.prefix}:{{{u}}}:digest:"
        names = list(r.scan_iter(match=prefix.replace("*", "\\*").replace("{", "\\{").replace("}", "\\}")
                                 .replace("?", "\\?").replace("[", "\\[") + "*", count=1000))
        suffixes = {name[len(prefix):] for name in names if name.startswith(prefix)}
        assert len(suffixes) == len(names) == len(odd) * (2 + len(odd)), "open hash, list, join records"
        assert all(re.fullmatch(r"[0-9a-f]{40}(:events|:run:[0-9a-f]{40})?", s) for s in suffixes), suffixes
        for key in odd:
            closed = digests.close(u, "w:{1}", key, f"{key}|*")
            assert closed is not None and closed.events == [{"u": u, "k": key}] * len(odd)


def test_close_many_closes_each_once_in_one_round_trip() -> None:
    users, digests = [uid() for _ in range(150)], Digests()
    digests.join_many([item(u, f"{u}-{i}", i=i) for u in users for i in range(3)])
    asks = [(u, WORKFLOW, "post-1", f"{u}-0") for u in users]
    closed = digests.close_many([*asks, asks[7], (users[0], WORKFLOW, "post-1", "never")])
    assert all(c is not None and [e["i"] for e in c.events] == [0, 1, 2] for c in closed[:150])
    assert closed[150] == closed[7], "the same digest twice in one batch: the second gets the first's answer"
    assert closed[151] is None
    assert digests.close_many(asks) == closed[:150]
    assert all(digests.peek(u, WORKFLOW, "post-1") is None for u in users)


def test_a_late_digest_is_sealed_for_its_owner_and_the_next_event_opens_a_new_one() -> None:
    user, digests = uid(), Digests()
    now = time.time()
    digests.join_many([item(user, "owner", window=10), item(user, "early", window=10)], now=now)
    assert digests.join(item(user, "on-time", window=10), now=now + 10 + LATE_SECONDS - 1).digest_id == "owner", \
        "a close a little late still takes every event joined before it"
    fresh = digests.join(item(user, "after", window=10), now=now + 10 + LATE_SECONDS + 1)
    assert fresh.opened and fresh.count == 1
    late = digests.close(user, WORKFLOW, "post-1", "owner")
    assert late is not None and [e["id"] for e in late.events] == ["owner", "early", "on-time"]
    assert digests.peek(user, WORKFLOW, "post-1")[:2] == ("after", 1)


def test_every_key_expires() -> None:
    user, digests = uid(), Digests()
    digests.join_many([item(user, f"r{i}", window=30, max_events=3) for i in range(8)])
    digests.close(user, WORKFLOW, "post-1", "r0")
    r = get_redis()
    keys = list(r.scan_iter(match=f"{get_keys().prefix}:{{{user}}}:*", count=1000))
    assert len(keys) == 8 + 1 + 1 + 2, ("8 join records, the closed digest, the sealed hash (r3's), the open one's "
                                        "hash (with r6's event) and list (r7's)")
    ttls = [r.pttl(key) for key in keys]
    assert all(0 < ttl <= (30 + MARGIN_SECONDS) * 1000 for ttl in ttls), ttls


def test_digests_on_redis_cluster(cluster_url: str,  # noqa: F811
                                  settings_env: Callable[[dict[str, str]], None]) -> None:
    settings_env({"NOTIFIER_REDIS_URL": cluster_url})
    client = get_redis()
    assert isinstance(client, RedisCluster)
    users = [uid() for _ in range(12)]
    digests = Digests()
    joined = digests.join_many([item(u, f"{u}-{key}-{i}", key=key, i=i) for u in users for key in ("p", "q")
                                for i in range(3)])
    assert sum(j.opened for j in joined) == 24
    closed = digests.close_many([(u, WORKFLOW, "p", f"{u}-p-0") for u in users])
    assert all(c is not None and [e["i"] for e in c.events] == [0, 1, 2] for c in closed)
    assert digests.close(users[0], WORKFLOW, "p", f"{users[0]}-p-0") == closed[0]
    for u in users:
        assert digests.peek(u, WORKFLOW, "q")[:2] == (f"{u}-q-0", 3)
    k = get_keys()
    assert len({client.get_node_from_key(k.digest(u, WORKFLOW, "p")).name for u in users}) > 1, \
        "users should spread over the shards"
    for u in users[:4]:
        digest = k.digest(u, WORKFLOW, "p")
        names = [digest, *(Keys.digest_part(digest, part) for part in ("events", "sealed")),
                 Keys.digest_part(digest, "closed", "any id"), Keys.digest_part(digest, "run", "any run"),
                 k.inbox(u)]
        assert len({client.keyslot(name) for name in names}) == 1



def test_a_digest_opened_before_the_upgrade_joins_seals_and_closes_with_each_event_once() -> None:
    """Digests opened by the previous layout (every event in the list, the first too, none in the
    hash) still live for their window after an upgrade: they count, seal and close their events once."""
    user, digests = uid(), Digests()
    r = get_redis()
    for key, owner in (("old-open", "o1"), ("old-full", "o2")):
        digest = get_keys().digest(user, WORKFLOW, key)
        r.hset(digest, mapping={"id": owner, "due": round(time.time() * 1000) + 60_000})
        r.rpush(Keys.digest_part(digest, "events"), f'{{"id": "{owner}", "n": 0}}')
        r.pexpire(digest, 120_000)
    joined = digests.join(item(user, "j1", key="old-open", n=1))
    assert (joined.digest_id, joined.opened, joined.count) == ("o1", False, 2)
    assert digests.peek(user, WORKFLOW, "old-open")[:2] == ("o1", 2)
    closed = digests.close(user, WORKFLOW, "old-open", "o1")
    assert closed == Closed("o1", 2, [{"id": "o1", "n": 0}, {"id": "j1", "n": 1}])
    full = digests.join(item(user, "j2", key="old-full", max_events=2, n=1))
    assert (full.count, full.full) == (2, True)
    sealed = digests.close(user, WORKFLOW, "old-full", "o2")
    assert sealed == Closed("o2", 2, [{"id": "o2", "n": 0}, {"id": "j2", "n": 1}])
