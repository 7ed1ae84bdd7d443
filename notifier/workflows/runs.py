"""Workflow runs in Redis: one hash per (user, notification), moved on only by Lua scripts.

A run's id is its notification's id, so a redelivered router task finds the run it already started
(``run_start`` creates it once). Every move from one step to the next names the step it leaves
(``run_advance``): a redelivered advance task, a second timer, or a run cancelled meanwhile changes
nothing. The user id is in every key's hash tag, so a run's scripts stay in one Cluster slot; the
cancel index (``Keys.cancel``) is the one key per ``cancel_key``, outside the users' slots, written
before the run so that a cancel never misses a run it should stop.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import orjson
import redis

from notifier.redis import scripts, store
from notifier.redis.keys import Keys

TTL_SECONDS = 14 * 86400
"""How long a run's state is kept after its last move (``notifier runs show`` reads it)."""
RUNNING, WAITING, DONE, CANCELLED = "running", "waiting", "done", "cancelled"


@dataclass(frozen=True)
class Run:
    """One run as stored: ``step`` is the index of the next step to take."""

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


class Runs:
    def __init__(self, client: redis.Redis | None = None, keys: Keys | None = None) -> None:
        self.r = client or store.get_redis()
        self.keys = keys or store.get_keys()

    def start_many(self, starts: Sequence[tuple[str, str, dict[str, Any], float | None]]) -> list[bool]:
        """Start ``(user_id, workflow type, notification, until)`` runs (``until``: waiting for a
        ``send_at``); True for each newly started. One round trip for the cancel index, one for the runs."""
        now = time.time()
        index = self.r.pipeline(transaction=False)
        keyed = [n["cancel_key"] for _, _, n, _ in starts if n.get("cancel_key")]
        for user_id, _, n, _ in starts:
            if n.get("cancel_key"):
                index.sadd(self.keys.cancel(n["cancel_key"]), orjson.dumps([user_id, n["id"]]).decode())
                index.expire(self.keys.cancel(n["cancel_key"]), TTL_SECONDS)
        for key in keyed:
            index.get(self.keys.cancelled(key))
        replies = index.execute()
        cancelled_at = dict(zip(keyed, replies[len(replies) - len(keyed):], strict=True))
        lua = scripts.script("run_start")
        calls: list[scripts.ScriptCall] = []
        for u, workflow, n, until in starts:
            status = WAITING if until else RUNNING
            at = cancelled_at.get(n.get("cancel_key") or "")
            if at is not None and float(at) >= _epoch(n.get("timestamp")):
                status = CANCELLED
            calls.append((lua, [self.keys.run(u, n["id"]), self.keys.runs(u)],
                          [n["id"], workflow, orjson.dumps(n), status, _time(until), n.get("cancel_key") or "",
                           now, TTL_SECONDS]))
        return [bool(x) for x in scripts.run_scripts(self.r, calls)]

    def load_many(self, refs: Sequence[tuple[str, str]]) -> list[Run | None]:
        """The runs ``(user_id, run_id)``, None where there is none (expired, or never started)."""
        pipe = self.r.pipeline(transaction=False)
        for user_id, run_id in refs:
            pipe.hgetall(self.keys.run(user_id, run_id))
        return [_run(u, rid, cast("dict[str, str]", h)) for (u, rid), h in zip(refs, pipe.execute(), strict=True)]

    def get(self, user_id: str, run_id: str) -> Run | None:
        return self.load_many([(user_id, run_id)])[0]

    def claim_many(self, refs: Sequence[tuple[str, str, int]], lease_seconds: float) -> list[tuple[str, float]]:
        """Claim each ``(user_id, run_id, step)`` for this worker for ``lease_seconds``: per ref
        ``("ok", 0)``, ``("busy", lease end)`` (another worker holds it), or ``("stale" | "done" |
        "cancelled" | "gone", 0)``. One round trip."""
        now = time.time()
        lua = scripts.script("run_claim")
        calls: list[scripts.ScriptCall] = [(lua, [self.keys.run(u, rid)], [step, now + lease_seconds, now])
                                           for u, rid, step in refs]
        return [(str(r[0]), float(r[1]) if len(r) > 1 else 0.0) for r in scripts.run_scripts(self.r, calls)]

    def move_many(self, moves: Sequence[Move]) -> list[str]:
        """Apply moves in one round trip; per move ``ok``, ``stale``, ``cancelled``, ``done`` or ``gone``."""
        lua = scripts.script("run_advance")
        calls: list[scripts.ScriptCall] = []
        for m in moves:
            args: list[Any] = [m.from_step, m.to_step, m.status, _time(m.until), TTL_SECONDS]
            for step, entry in sorted(m.log.items()):
                args += [f"s{step}", orjson.dumps(entry)]
            calls.append((lua, [self.keys.run(m.user_id, m.run_id)], args))
        return [str(x) for x in scripts.run_scripts(self.r, calls)]

    def cancel(self, cancel_key: str) -> int:
        """Cancel every run started with ``cancel_key``, and those of sends made before now that have
        not started yet (still queued); returns how many runs this call stopped."""
        now = time.time()
        self.r.set(self.keys.cancelled(cancel_key), repr(now), ex=TTL_SECONDS)
        pairs = [orjson.loads(p) for p in cast("set[str]", self.r.smembers(self.keys.cancel(cancel_key)))]
        lua = scripts.script("run_cancel")
        entry = orjson.dumps({"outcome": CANCELLED, "detail": f"cancel_key {cancel_key}", "at": time.time()})
        calls: list[scripts.ScriptCall] = [(lua, [self.keys.run(u, rid)], [entry, time.time(), TTL_SECONDS])
                                           for u, rid in pairs]
        return sum(int(x) for x in scripts.run_scripts(self.r, calls))

    def list(self, user_id: str, limit: int = 50) -> list[Run]:
        """The user's latest runs, newest first."""
        ids = cast("list[str]", self.r.zrevrange(self.keys.runs(user_id), 0, limit - 1))
        return [run for run in self.load_many([(user_id, i) for i in ids]) if run is not None]


def _epoch(timestamp: Any) -> float:
    """A notification's ``timestamp`` (ISO 8601, as its JSON form has it) in epoch seconds."""
    return dt.datetime.fromisoformat(timestamp).timestamp() if isinstance(timestamp, str) else 0.0


def _time(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def _run(user_id: str, run_id: str, h: dict[str, str]) -> Run | None:
    if not h or "status" not in h:
        return None
    log = {int(k[1:]): orjson.loads(v) for k, v in h.items() if k[:1] == "s" and k[1:].isdigit()}
    if "cancelled" in h:
        log[int(h.get("step") or 0)] = orjson.loads(h["cancelled"])
    return Run(user_id, run_id, h.get("workflow", ""), orjson.loads(h["n"]) if h.get("n") else {},
               int(h.get("step") or 0), h["status"], float(h["until"]) if h.get("until") else None,
               h.get("cancel_key") or None, float(h.get("created") or 0), log)
