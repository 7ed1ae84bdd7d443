"""The digest state of a workflow's digest step: which events of (user, workflow, digest key) are
rolled into one notification, opened, joined and closed atomically in Redis.

The first event for a (user, workflow, key) *opens* a digest: its run becomes the owner (the digest
id is its run id), waits until ``due`` (now + window) and then closes it, carrying every event. Later
events *join* the open digest and their runs end. A digest that reaches ``max_events`` is *sealed* by
the join that filled it (``full``): no event joins it any more, the next opens a new one, and the owner
should close it at once. What Knock's batch function and Novu's digest do, without their races:

- **Two digests for one key** (novuhq/novu#2569: events in the same second each sent a digest, because
  a job looked for an open digest and created one in separate steps). Here the look and the open are
  one Lua script (``digest_join.lua``), so of concurrent events exactly one opens and the rest join.
- **Events of different keys merged** (novu#2698) and **events of one key not bucketed together**
  (novu#3893): the digest's identity is the key name itself, a SHA-1 over the workflow and the key
  (:meth:`Keys.digest`), never a query over stored payloads; two keys cannot share a digest, one key
  cannot have two open ones.
- **Events not merged at all, or lost** (novu#6470; and novu#12373, where a retried job merged into
  itself and the digest was never sent): a join is recorded per run id (its own key, with the answer
  it got), so a redelivered task gets the same answer and never adds its event twice, nor opens a
  digest it already owns. A close takes the events and ends the digest in one script
  (``digest_close.lua``), so an event joins either before the close (and is in it) or after (and
  opens the next digest); the closed events are kept for a day, so a close repeated after a crash
  returns the same events instead of nothing.

An owner that never comes back (its run lost) would hold its key forever, collecting events nobody
sends: once a digest is ``LATE_SECONDS`` past due, the next event seals it (the owner's close still
gets its events) and opens a new digest. Every key expires (``MARGIN_SECONDS`` after its window), and
each event is stored once: in the open digest (the first in its hash, so that opening one creates
a single key; later ones in its list), then moved, never copied, to the sealed or closed record.
Key names come from :mod:`notifier.redis.keys`; every key of one item shares the user's hash tag, so
on a Redis Cluster each script call is one item in that user's slot.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import orjson
import redis
from redis.cluster import RedisCluster

from notifier.redis import scripts, store
from notifier.redis.keys import Keys

ITEMS_PER_CALL = 100
"""Joins per script call on one server, as for inbox appends: one call per event costs the client more
than the join itself (``benchmarks/digest_join.py``)."""
MARGIN_SECONDS = 86_400
"""How long a digest's state outlives its window, and a closed digest's events its close: a redelivered
join or close (visibility timeout, a worker down for hours) finds what the first call did."""
LATE_SECONDS = 600
"""How long after its due time an open digest waits for its owner's close before the next event seals
it and opens a new one. The owner's timer is in the Redis schedule, released within seconds of due; a
digest this late has lost its owner, and new events must not pile up behind it."""


@dataclass(frozen=True)
class JoinItem:
    """One event for the digest of (user, workflow, key), from the run ``run_id``."""

    user_id: str
    workflow: str
    key: str
    run_id: str
    event: dict[str, Any]
    """The notification dict; stored as JSON and returned by :meth:`Digests.close` as it was given."""
    window_seconds: float
    max_events: int | None


@dataclass(frozen=True)
class Joined:
    digest_id: str
    """The digest joined (= the run id of the event that opened it)."""
    opened: bool
    """This event opened it: its run waits until ``due``, then closes it."""
    count: int
    """Events in the digest after this join."""
    due: float
    """Epoch seconds when the window closes."""
    full: bool
    """This join reached ``max_events``: the digest takes no more events (the next opens a new one) and
    its owner should close it now. True for exactly one join of a digest (and its redeliveries)."""


@dataclass(frozen=True)
class Closed:
    digest_id: str
    count: int
    events: list[dict[str, Any]]
    """In join order."""


class Digests:
    """Digest state for any user, on one Redis client and key namespace."""

    def __init__(self, client: redis.Redis | None = None, keys: Keys | None = None) -> None:
        self.r = client or store.get_redis()
        self.keys = keys or store.get_keys()

    def _keys(self, user_id: str, workflow: str, key: str) -> tuple[str, str, str]:
        """The open digest hash, the list of its later events and the sealed hash of (user, workflow, key)."""
        digest = self.keys.digest(user_id, workflow, key)
        return digest, Keys.digest_part(digest, "events"), Keys.digest_part(digest, "sealed")

    def join_many(self, items: Sequence[JoinItem], now: float | None = None) -> list[Joined]:
        """Join each item's event to its digest (opening one where none is open), in one round trip.

        Items are joined in order, so events of one digest keep the order given. On one server a script
        call joins up to ``ITEMS_PER_CALL`` items; on a cluster each user's keys live in their own slot,
        so one each.
        """
        lua = scripts.script("digest_join")
        per_call = 1 if isinstance(self.r, RedisCluster) else ITEMS_PER_CALL
        head: list[Any] = [round((time.time() if now is None else now) * 1000), MARGIN_SECONDS * 1000,
                           LATE_SECONDS * 1000]
        encoded: dict[int, bytes] = {}  # a broadcast's joins share one event dict: encoded once
        rows = []
        for item in items:
            if item.window_seconds <= 0 or (item.max_events is not None and item.max_events < 1):
                raise ValueError(f"a digest needs a window > 0 and a max >= 1, not {item.window_seconds} s "
                                 f"and {item.max_events}")
            event = encoded.get(id(item.event))
            if event is None:
                event = encoded[id(item.event)] = orjson.dumps(item.event)
            digest, events, sealed = self._keys(item.user_id, item.workflow, item.key)
            rows.append(([digest, events, sealed, Keys.digest_part(digest, "run", item.run_id)],
                         (item.run_id, event, round(item.window_seconds * 1000), item.max_events or 0)))
        calls = scripts.grouped_calls(lua, head, rows, per_call)
        joined = []
        for item, record in zip(items, (r for result in scripts.run_scripts(self.r, calls) for r in result),
                                strict=True):
            count, due, full, owner = str(record).split("\n", 3)
            joined.append(Joined(owner, owner == item.run_id, int(count), int(due) / 1000, full == "1"))
        return joined

    def join(self, item: JoinItem, now: float | None = None) -> Joined:
        return self.join_many([item], now)[0]

    def close_many(self, digests: Sequence[tuple[str, str, str, str]]) -> list[Closed | None]:
        """Close each ``(user_id, workflow, key, digest_id)`` in one round trip: take the digest's events
        and end it (if it is still the open one). A repeated close returns the same events; None for a
        digest that never existed (or whose record expired). Batched as :meth:`join_many` is."""
        lua = scripts.script("digest_close")
        per_call = 1 if isinstance(self.r, RedisCluster) else ITEMS_PER_CALL
        head: list[Any] = [MARGIN_SECONDS * 1000]
        calls: list[scripts.ScriptCall] = []
        keys: list[str] = []
        args = list(head)
        for user_id, workflow, key, digest_id in digests:
            digest, events, sealed = self._keys(user_id, workflow, key)
            keys += [digest, events, sealed, Keys.digest_part(digest, "closed", digest_id)]
            args.append(digest_id)
            if len(keys) == 4 * per_call:
                calls.append((lua, keys, args))
                keys, args = [], list(head)
        if keys:
            calls.append((lua, keys, args))
        closed: list[Closed | None] = []
        for (_, _, _, digest_id), array in zip(
                digests, (a for result in scripts.run_scripts(self.r, calls) for a in result), strict=True):
            taken: list[dict[str, Any]] | None = None if array is None else orjson.loads(array)
            closed.append(None if taken is None else Closed(digest_id, len(taken), taken))
        return closed

    def close(self, user_id: str, workflow: str, key: str, digest_id: str) -> Closed | None:
        return self.close_many([(user_id, workflow, key, digest_id)])[0]

    def peek(self, user_id: str, workflow: str, key: str) -> tuple[str, int, float] | None:
        """The open digest's id, count and due time (epoch seconds), or None when none is open.

        Two reads in one round trip, not one script: for display (``runs show``), where a join or close
        landing between them may make the count one off, or report nothing open.
        """
        digest, events, _ = self._keys(user_id, workflow, key)
        pipe = self.r.pipeline(transaction=False)
        pipe.hmget(digest, ["id", "due", "first"])
        pipe.llen(events)
        (digest_id, due, first), later = cast("tuple[list[str | None], int]", pipe.execute())
        if digest_id is None or due is None:
            return None
        return digest_id, (first is not None) + int(later), int(due) / 1000
