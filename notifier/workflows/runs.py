"""Workflow runs in Redis: one hash per (user, notification), moved on only by Lua scripts.

A run's id is its notification's id, so a redelivered router task finds the run it already started
(``run_start`` records it once, after its first steps were taken). Before a worker
takes a step it claims it (``run_claim``: a lease, so two tasks for one step never both take it,
while a killed worker's lease runs out), and every move to the next step names the step it leaves
(``run_advance``): a repeated task, a second timer, or a run cancelled meanwhile changes nothing.

The user id is in every run key's hash tag, so a run's scripts stay in one Cluster slot; on one
server a script call carries up to ``RUNS_PER_CALL`` runs. The notification is kept once per id
(``Keys.run_notification``), not per run: a broadcast's runs share it. The cancel index
(``Keys.cancel``) is written before the runs, so that a cancel never misses a run it should stop.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import orjson
import redis
from redis.cluster import RedisCluster

from notifier.redis import scripts, store
from notifier.redis.keys import Keys

TTL_SECONDS = 14 * 86400
"""How long a run's state is kept after its last move (``notifier runs show`` reads it)."""
RUNS_PER_CALL = 100
"""Runs per script call on one server, as for inbox appends: short calls that do not stall Redis."""
RUNNING, WAITING, DONE, CANCELLED = "running", "waiting", "done", "cancelled"


@dataclass(frozen=True)
class Run:
    """One run as stored: ``step`` is the index of the next step to take. ``notification`` is shared
    by every run of the same notification: read it, never change it."""

    user_id: str
    run_id: str
    workflow: str
    notification: dict[str, Any]
    step: int
    status: str
    until: float | None
    cancel_key: str | None
    created: float
    log: dict[int, dict[str, Any]] = field(default_factory=dict)
    """What each step passed became: ``{"outcome": ..., "detail": ..., "at": epoch s}``."""


@dataclass(frozen=True)
class Move:
    """A run leaving step ``from_step`` for ``to_step`` (``status`` waiting with ``until``, or done)."""

    user_id: str
    run_id: str
    from_step: int
    to_step: int
    status: str
    until: float | None = None
    log: dict[int, dict[str, Any]] = field(default_factory=dict)
    notification: dict[str, Any] | None = None
    """What the run's later steps send instead of its own notification (a closed digest's), kept
    with the run."""


class Runs:
    def __init__(self, client: redis.Redis | None = None, keys: Keys | None = None) -> None:
        self.r = client or store.get_redis()
        self.keys = keys or store.get_keys()
        self.per_call = 1 if isinstance(self.r, RedisCluster) else RUNS_PER_CALL

    def prepare_many(self, starts: Sequence[tuple[str, str, dict[str, Any], float | None]]) -> list[str]:
        """Before starting ``(user_id, workflow type, notification, until)`` runs (``until``: waiting
        for a ``send_at``): keep each notification once, index the cancel keys, and say per run what
        it starts as: ``running``, ``waiting`` or ``cancelled`` (its cancel came first). One round
        trip. Whether an earlier attempt (a redelivered router task's) already recorded a run is not
        asked: it would cost a command per recipient on every broadcast, for the rare redelivery,
        whose repeated first steps receipts and the inbox's idempotent appends make harmless."""
        pipe = self.r.pipeline(transaction=False)
        stored: set[str] = set()
        keyed: list[str] = []
        for user_id, _, n, _ in starts:
            if n["id"] not in stored:
                stored.add(n["id"])
                pipe.set(self.keys.run_notification(n["id"]), orjson.dumps(n), ex=TTL_SECONDS)
            if n.get("cancel_key"):
                keyed.append(n["cancel_key"])
                pipe.sadd(self.keys.cancel(n["cancel_key"]), orjson.dumps([user_id, n["id"]]).decode())
                pipe.expire(self.keys.cancel(n["cancel_key"]), TTL_SECONDS)
        for key in keyed:
            pipe.get(self.keys.cancelled(key))
        replies = pipe.execute()
        cancelled_at = dict(zip(keyed, replies[len(replies) - len(keyed):], strict=True))
        statuses = []
        for _, _, n, until in starts:
            at = cancelled_at.get(n.get("cancel_key") or "")
            if at is not None and float(at) >= _epoch(n.get("timestamp")):
                statuses.append(CANCELLED)
            else:
                statuses.append(WAITING if until else RUNNING)
        return statuses

    def record_many(self, records: Sequence[tuple[str, dict[str, Any], Move]]) -> list[bool]:
        """Record started runs ``(workflow type, notification, move from step 0)`` in the state their
        first steps left them; False for a run that exists already (left as it is). One round trip."""
        items = [([self.keys.run(m.user_id, m.run_id), self.keys.runs(m.user_id)],
                  (m.run_id, workflow, m.to_step, m.status, _time(m.until), n.get("cancel_key") or "",
                   *_log_args(m.log, m.notification))) for workflow, n, m in records]
        calls = scripts.grouped_calls(scripts.script("run_start"), [time.time(), TTL_SECONDS], items, self.per_call)
        return [bool(x) for answers in scripts.run_scripts(self.r, calls) for x in answers]

    def load_many(self, refs: Sequence[tuple[str, str]]) -> list[Run | None]:
        """The runs ``(user_id, run_id)``, None where there is none (expired, or never started)."""
        pipe = self.r.pipeline(transaction=False)
        for user_id, run_id in refs:
            pipe.hgetall(self.keys.run(user_id, run_id))
        hashes = cast("list[dict[str, str]]", pipe.execute())
        ids = sorted({rid for (_, rid), h in zip(refs, hashes, strict=True) if h})
        pipe = self.r.pipeline(transaction=False)
        for rid in ids:
            pipe.get(self.keys.run_notification(rid))
        notifications = {rid: orjson.loads(text) if text else {} for rid, text in zip(ids, pipe.execute(), strict=True)}
        return [_run(u, rid, h, notifications.get(rid, {})) for (u, rid), h in zip(refs, hashes, strict=True)]

    def get(self, user_id: str, run_id: str) -> Run | None:
        return self.load_many([(user_id, run_id)])[0]

    def claim_many(self, refs: Sequence[tuple[str, str, int]], lease_seconds: float) -> list[tuple[str, float]]:
        """Claim each ``(user_id, run_id, step)`` for this worker for ``lease_seconds``: per ref
        ``("ok", 0)``, ``("busy", lease end)`` (another worker holds it), or ``("stale" | "done" |
        "cancelled" | "gone", 0)``. One round trip."""
        now = time.time()
        answers = self._run("run_claim", [now + lease_seconds, now], refs,
                            lambda ref: ([self.keys.run(ref[0], ref[1])], [ref[2]]))
        return [(a.split(":")[0], float(a.split(":")[1]) if ":" in a else 0.0) for a in map(str, answers)]

    def move_many(self, moves: Sequence[Move]) -> list[str]:
        """Apply moves in one round trip; per move ``ok``, ``stale``, ``cancelled``, ``done`` or ``gone``."""
        def row(m: Move) -> tuple[list[str], list[Any]]:
            return [self.keys.run(m.user_id, m.run_id)], [m.from_step, m.to_step, m.status, _time(m.until),
                                                           *_log_args(m.log, m.notification)]

        return [str(x) for x in self._run("run_advance", [TTL_SECONDS], moves, row)]

    def cancel(self, cancel_key: str) -> list[tuple[str, str]]:
        """Cancel every run started with ``cancel_key``, and those of sends made before now that have
        not started yet (still queued); returns the ``(user_id, run_id)`` of the runs this call stopped."""
        now = time.time()
        self.r.set(self.keys.cancelled(cancel_key), repr(now), ex=TTL_SECONDS)
        pairs = [orjson.loads(p) for p in cast("set[str]", self.r.smembers(self.keys.cancel(cancel_key)))]
        lua = scripts.script("run_cancel")
        entry = orjson.dumps({"outcome": CANCELLED, "detail": f"cancel_key {cancel_key}", "at": now})
        calls: list[scripts.ScriptCall] = [(lua, [self.keys.run(u, rid)], [entry, now, TTL_SECONDS])
                                           for u, rid in pairs]
        stopped = scripts.run_scripts(self.r, calls)
        return [(u, rid) for (u, rid), x in zip(pairs, stopped, strict=True) if int(x)]

    def latest(self, user_id: str, limit: int = 50) -> list[Run]:
        """The user's latest runs, newest first."""
        ids = cast("list[str]", self.r.zrevrange(self.keys.runs(user_id), 0, limit - 1))
        return [run for run in self.load_many([(user_id, i) for i in ids]) if run is not None]

    def _run(self, name: str, head: list[Any], items: Sequence[Any],
             row: Callable[[Any], tuple[list[str], list[Any]]]) -> list[Any]:
        """``items`` through script ``name``, ``per_call`` to a call, in one round trip; one answer each."""
        lua = scripts.script(name)
        calls: list[scripts.ScriptCall] = []
        for start in range(0, len(items), self.per_call):
            keys: list[str] = []
            args = list(head)
            for item in items[start:start + self.per_call]:
                item_keys, item_args = row(item)
                keys += item_keys
                args += item_args
            calls.append((lua, keys, args))
        return [answer for answers in scripts.run_scripts(self.r, calls) for answer in answers]


def _epoch(timestamp: Any) -> float:
    """A notification's ``timestamp`` (ISO 8601, as its JSON form has it) in epoch seconds."""
    return dt.datetime.fromisoformat(timestamp).timestamp() if isinstance(timestamp, str) else 0.0


def _log_args(log: dict[int, dict[str, Any]], carried: dict[str, Any] | None = None) -> list[Any]:
    """A move's fields as the scripts take them: their count, then field and JSON pairs: the log
    entries (a run cancelled before it started has its entry in ``cancelled``) and, when the run's
    later steps send another notification (a closed digest), that one as ``n``."""
    args: list[Any] = [len(log) + (carried is not None)]
    for step, entry in sorted(log.items()):
        args += ["cancelled" if entry["outcome"] == CANCELLED else f"s{step}", _entry_json(entry)]
    if carried is not None:
        args += ["n", orjson.dumps(carried)]
    return args


def _entry_json(entry: dict[str, Any]) -> bytes:
    """A log entry's JSON; the runs of one batch share few distinct entries (a broadcast's all say
    the same), so each is encoded once."""
    key = (entry["outcome"], entry["detail"], entry["at"])
    found = _ENTRIES.get(key)
    if found is None:
        if len(_ENTRIES) > 1000:
            _ENTRIES.clear()
        found = _ENTRIES[key] = orjson.dumps(entry)
    return found


_ENTRIES: dict[tuple[Any, ...], bytes] = {}


def _time(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def _run(user_id: str, run_id: str, h: dict[str, str], notification: dict[str, Any]) -> Run | None:
    if not h or "status" not in h:
        return None
    log = {int(k[1:]): orjson.loads(v) for k, v in h.items() if k[:1] == "s" and k[1:].isdigit()}
    if "cancelled" in h:
        log[int(h.get("step") or 0)] = orjson.loads(h["cancelled"])
    if h.get("n"):
        notification = orjson.loads(h["n"])
    return Run(user_id, run_id, h.get("workflow", ""), notification, int(h.get("step") or 0), h["status"],
               float(h["until"]) if h.get("until") else None, h.get("cancel_key") or None,
               float(h.get("created") or 0), log)
