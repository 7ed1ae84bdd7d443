"""Moving runs forward: for a batch of runs, decide what each of their next steps does, and send nothing.

Like ``Router.plan``, :meth:`Engine.plan` only decides: it returns a :class:`Progress` (sends to route
through the router's rules, timers to set in the Redis schedule, moves of the runs) that the worker
task (``workers/workflow.py``) carries out in that order, so that a worker killed in between repeats
sends (which receipts and the inbox's idempotent appends make harmless) rather than losing them: a
run only moves past a step after what the step sends is queued. Facts a step needs (read state,
preferences, throttle counts) are read in one round trip per step taken across the whole batch,
never per recipient.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from notifier.channels import registry
from notifier.redis import store
from notifier.redis.keys import Keys
from notifier.state.inbox import Inbox
from notifier.state.preferences import PreferenceStore
from notifier.state.ratelimit import RateLimiter
from notifier.workflows.files import Workflows, get_workflows
from notifier.workflows.model import PUSH, Step, value_at
from notifier.workflows.runs import DONE, WAITING, Move, Run


@dataclass
class Progress:
    """What a batch of runs does next."""

    route: list[list[Any]] = field(default_factory=list)
    """``[user_id, notification, None]`` items for the router (``Router.plan(..., runs=False)``)."""
    timers: dict[float, list[list[Any]]] = field(default_factory=dict)
    """Due time -> ``[user_id, run_id, step]`` refs to advance then (one schedule entry per due time)."""
    moves: list[Move] = field(default_factory=list)
    outcomes: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    """``(workflow, step kind, outcome)`` counts, for the metrics."""
    routed: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict, repr=False)
    """One routed notification per (notification, channel step), shared by all its runs' items, so
    the router validates it once."""


@dataclass
class _State:
    run: Run
    step: int
    log: dict[int, dict[str, Any]] = field(default_factory=dict)
    until: float | None = None
    over: bool = False


class Engine:
    def __init__(self, workflows: Workflows | None = None, client: Any = None, keys: Keys | None = None) -> None:
        self.workflows = workflows if workflows is not None else get_workflows()
        self.r = client or store.get_redis()
        self.keys = keys or store.get_keys()
        self.push_channels = tuple(n for n, c in registry.classes().items() if c.needs_device)

    def plan(self, runs: Sequence[Run], now: float | None = None) -> Progress:
        """Take every step of ``runs`` that can be taken now, up to the first wait or the end."""
        now = time.time() if now is None else now
        progress = Progress()
        states = [_State(r, r.step) for r in runs]
        active = [s for s in states if self._step(s) is not None]
        for s in states:
            if self._step(s) is None:
                s.over = True
        while active:
            read = self._read_state([s for s in active if _needs(self._step(s), "read")])
            prefs = self._prefs([s for s in active if _needs(self._step(s), "prefs")])
            allowed = self._throttles([s for s in active if self._step(s).kind == "throttle"])  # type: ignore[union-attr]
            moving = []
            for s in active:
                step = self._step(s)
                assert step is not None
                outcome, detail = self._take(s, step, now, progress, read, prefs, allowed)
                s.log[s.step] = {"outcome": outcome, "detail": detail, "at": now}
                progress.outcomes[(s.run.workflow, step.kind, outcome)] += 1
                if s.until is None and not s.over:
                    s.step += 1
                    if self._step(s) is None:
                        s.over = True
                    else:
                        moving.append(s)
                elif s.until is not None:
                    s.step += 1
            active = moving
        for s in states:
            status = WAITING if s.until is not None else DONE
            progress.moves.append(Move(s.run.user_id, s.run.run_id, s.run.step, s.step, status, s.until, s.log))
        return progress

    def _step(self, s: _State) -> Step | None:
        steps = self.workflows.for_type(s.run.workflow).steps
        return steps[s.step] if s.step < len(steps) and not s.over and s.until is None else None

    def _take(self, s: _State, step: Step, now: float, progress: Progress, read: dict[tuple[str, str], bool],
              prefs: dict[str, dict[str, Any]], allowed: dict[tuple[str, str], bool]) -> tuple[str, str]:
        """What ``step`` does for this run now: ``(outcome, detail)`` for its log."""
        run = s.run
        if step.condition is not None:
            unread = not read.get((run.user_id, run.run_id), False)
            if not step.condition.holds(run.notification.get("data") or {}, prefs.get(run.user_id, {}), unread):
                return "skipped", f"if {step.condition} is false"
        if step.kind == "channel":
            n = progress.routed.get((run.run_id, step.channel))
            if n is None:
                n = progress.routed[(run.run_id, step.channel)] = dict(run.notification)
                if step.channel == PUSH:
                    n["channels"] = list(self.push_channels)
                elif step.channel != "*":
                    n["channels"] = [step.channel]
            progress.route.append([run.user_id, n, None])
            return "sent", ", ".join(n.get("channels") or ["every channel"])
        if step.kind == "delay":
            s.until = now + step.seconds
            progress.timers.setdefault(round(s.until, 1), []).append([run.user_id, run.run_id, s.step + 1])
            return "waited", f"{step.seconds:g}s"
        if allowed.get((run.user_id, run.run_id), True):
            return "passed", f"within {step.limit} per {step.seconds:g}s"
        s.over = True
        return "throttled", f"over {step.limit} per {step.seconds:g}s; the run ends here"

    def _read_state(self, states: list[_State]) -> dict[tuple[str, str], bool]:
        pairs = [(s.run.user_id, s.run.run_id) for s in states]
        return dict(zip(pairs, Inbox(self.r, self.keys).read_many(pairs), strict=True)) if pairs else {}

    def _prefs(self, states: list[_State]) -> dict[str, dict[str, Any]]:
        users = sorted({s.run.user_id for s in states})
        found = PreferenceStore(self.r, self.keys).get_many(users) if users else []
        return {u: p.model_dump(mode="json") for u, p in zip(users, found, strict=True)}

    def _throttles(self, states: list[_State]) -> dict[tuple[str, str], bool]:
        """Count each run against its throttle (per user, workflow, step and key); one round trip per
        distinct throttle. A redelivered count is not counted twice (the run id is the member)."""
        verdicts: dict[tuple[str, str], bool] = {}
        groups: dict[str, list[tuple[_State, str]]] = {}
        for s in states:
            step = self._step(s)
            assert step is not None
            value = value_at(s.run.notification.get("data") or {}, step.key) if step.key else None
            key = hashlib.sha1(orjson.dumps(value)).hexdigest()[:16] if step.key else "all"
            groups.setdefault(f"{s.run.workflow}.{s.step}", []).append((s, key))
        for name, members in groups.items():
            step = self._step(members[0][0])
            assert step is not None
            limits = {f"wf:{name}:{key}": (step.limit, int(step.seconds)) for _, key in members}
            limiter = RateLimiter(self.r, self.keys, limits)
            answers = limiter.allow_many([(s.run.user_id, s.run.run_id, [f"wf:{name}:{key}"]) for s, key in members])
            for (s, key), answer in zip(members, answers, strict=True):
                verdicts[(s.run.user_id, s.run.run_id)] = answer[f"wf:{name}:{key}"]
        return verdicts


def _needs(step: Step | None, what: str) -> bool:
    c = step.condition if step is not None else None
    if c is None:
        return False
    return c.kind in ("unread", "read") if what == "read" else c.kind == "compare" and c.source == "prefs"

