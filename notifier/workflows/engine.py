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

import datetime as dt
import hashlib
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from notifier.channels import registry
from notifier.models import MAX_DATA_BYTES, Preferences
from notifier.redis import store
from notifier.redis.keys import Keys
from notifier.state.digests import Digests, JoinItem
from notifier.state.inbox import Inbox
from notifier.state.preferences import PreferenceStore
from notifier.state.ratelimit import RateLimiter
from notifier.workflows.files import Workflows, get_workflows
from notifier.workflows.model import PUSH, ROLLUP, Step, value_at
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
    unheld: set[str] = field(default_factory=set)
    """Ids of routed notifications no rate limit or quiet hours may hold (roll-up summaries)."""
    routed: dict[tuple[int, str], dict[str, Any]] = field(default_factory=dict, repr=False)
    """One routed notification per (notification, channel step), shared by all its runs' items, so
    the router validates it once."""


@dataclass
class _State:
    run: Run
    step: int
    notification: dict[str, Any]
    """What the run's next steps send: its notification, or the digest a digest step closed."""
    log: dict[int, dict[str, Any]] = field(default_factory=dict)
    until: float | None = None
    stays: bool = False
    """It waits at this step (an open digest) rather than after it (a delay)."""
    over: bool = False
    carried: dict[str, Any] | None = None
    """A notification the run's later steps send instead of the stored one (a closed digest's)."""


class Engine:
    def __init__(self, workflows: Workflows | None = None, client: Any = None, keys: Keys | None = None) -> None:
        self.workflows = workflows if workflows is not None else get_workflows()
        self.r = client or store.get_redis()
        self.keys = keys or store.get_keys()
        self.push_channels = tuple(n for n, c in registry.classes().items() if c.is_push)
        self._events: dict[str, dict[str, Any]] = {}
        """Notification id -> its digest event, made once for all the runs of a broadcast."""

    def plan(self, runs: Sequence[Run], now: float | None = None) -> Progress:
        """Take every step of ``runs`` that can be taken now, up to the first wait or the end."""
        now = time.time() if now is None else now
        progress = Progress()
        states = [_State(r, r.step, r.notification) for r in runs]
        for s in states:
            if self._step(s) is None:
                s.over = True
        active = [s for s in states if not s.over]
        while active:
            steps = [(s, self._step(s)) for s in active]
            read = self._read_state([s for s, step in steps if _needs(step, "read")])
            prefs = self._prefs([s for s, step in steps if _needs(step, "prefs")])
            skipped = {id(s) for s, step in steps if not self._holds(s, step, read, prefs)}
            taken = [(s, step) for s, step in steps if id(s) not in skipped]
            allowed = self._throttles([s for s, step in taken if _kind(step) == "throttle"])
            digests = self._digests([s for s, step in taken if _kind(step) == "digest"], now, progress)
            moving = []
            for s, step in steps:
                assert step is not None
                if id(s) in skipped:
                    outcome, detail = "skipped", f"if {step.condition} is false"
                else:
                    outcome, detail = self._take(s, step, now, progress, allowed, digests)
                s.log[s.step] = {"outcome": outcome, "detail": detail, "at": now}
                progress.outcomes[(s.run.workflow, step.kind, outcome)] += 1
                if s.over:
                    continue
                if not s.stays:
                    s.step += 1
                if s.until is None:
                    if self._step(s) is None:
                        s.over = True
                    else:
                        moving.append(s)
            active = moving
        for s in states:
            status = WAITING if s.until is not None else DONE
            progress.moves.append(Move(s.run.user_id, s.run.run_id, s.run.step, s.step, status, s.until, s.log,
                                       s.carried))
        return progress

    def _step(self, s: _State) -> Step | None:
        steps = self.workflows.for_type(s.run.workflow).steps
        return steps[s.step] if s.step < len(steps) and not s.over and s.until is None else None

    def _holds(self, s: _State, step: Step | None, read: dict[tuple[str, str], bool],
               prefs: dict[str, dict[str, Any]]) -> bool:
        """Whether the step's condition lets it run (checked on arrival: a digest's owner coming back
        to close it is past its condition). Before any step acts, so a skipped run neither counts
        against a throttle nor joins a digest."""
        if step is None or step.condition is None or _waiting_at(s, "opened"):
            return True
        run = s.run
        unread = not read.get((run.user_id, run.run_id), False)
        return step.condition.holds(s.notification.get("data") or {}, prefs.get(run.user_id, {}), unread)

    def _take(self, s: _State, step: Step, now: float, progress: Progress, allowed: dict[tuple[str, str], bool],
              digests: dict[tuple[str, str], tuple[str, str]]) -> tuple[str, str]:
        """What ``step`` does for this run now: ``(outcome, detail)`` for its log."""
        run = s.run
        if step.kind == "channel":
            key = (id(s.notification), step.channel)
            n = progress.routed.get(key)
            if n is None:
                n = progress.routed[key] = dict(s.notification)
                if step.channel == PUSH:
                    n["channels"] = list(self.push_channels)
                elif step.channel != "*":
                    n["channels"] = [step.channel]
            if not step.held:
                progress.unheld.add(n["id"])
            progress.route.append([run.user_id, n, None])
            return "sent", ", ".join(n.get("channels") or ["every channel"])
        if step.kind == "delay":
            s.until = now + step.seconds
            progress.timers.setdefault(round(s.until, 1), []).append([run.user_id, run.run_id, s.step + 1])
            return "waited", f"{step.seconds:g}s"
        if step.kind == "digest":
            return digests[(run.user_id, run.run_id)]
        if allowed.get((run.user_id, run.run_id), True):
            return "passed", f"within {step.limit} per {step.seconds:g}s"
        s.over = True
        return "throttled", f"over {step.limit} per {step.seconds:g}s; the run ends here"

    def _digests(self, states: list[_State], now: float,
                 progress: Progress) -> dict[tuple[str, str], tuple[str, str]]:
        """Join the runs arriving at a digest step, close those whose digest is due (one round trip
        each for the batch); set each run's state and return its log entry."""
        out: dict[tuple[str, str], tuple[str, str]] = {}
        closing = [s for s in states if _waiting_at(s, "opened")]
        joining = [s for s in states if not _waiting_at(s, "opened")]
        if joining:
            users = sorted({s.run.user_id for s in joining})
            own = dict(zip(users, PreferenceStore(self.r, self.keys).get_many(users), strict=True))
            items = [self._join_item(s, own[s.run.user_id], now) for s in joining]
            for s, item, joined in zip(joining, items, Digests(self.r, self.keys).join_many(items, now), strict=True):
                ref = (s.run.user_id, s.run.run_id)
                if joined.full:  # the owner closes it now, whoever it is (this run, if it also opened it)
                    progress.timers.setdefault(round(now, 1), []).append(
                        [s.run.user_id, joined.digest_id, s.step])
                if joined.opened:
                    s.until, s.stays = joined.due, True
                    if not joined.full:
                        progress.timers.setdefault(round(joined.due, 1), []).append(
                            [s.run.user_id, s.run.run_id, s.step])
                    out[ref] = ("opened", f"digest {item.key or 'of all'} until {joined.due:.0f}")
                else:
                    s.over = True
                    out[ref] = ("joined", f"digest {joined.digest_id} ({joined.count} events); this run ends here")
        if closing:
            items = [self._join_item(s) for s in closing]
            closed = Digests(self.r, self.keys).close_many(
                [(i.user_id, i.workflow, i.key, s.run.run_id) for s, i in zip(closing, items, strict=True)])
            for s, digest in zip(closing, closed, strict=True):
                ref = (s.run.user_id, s.run.run_id)
                if digest is None:
                    s.over = True
                    out[ref] = ("lost", "the digest's events expired before it closed")
                    continue
                s.carried = s.notification = digest_notification(s.notification, s.step, digest.events,
                                                                 s.run.workflow.startswith(ROLLUP))
                out[ref] = ("closed", f"{digest.count} events")
        return out

    def _join_item(self, s: _State, prefs: Preferences | None = None, now: float = 0.0) -> JoinItem:
        """The digest this run's event joins; its window is the user's own for this workflow when
        they set one (``Preferences.digests``), a roll-up's lasts until its hold ends."""
        step = self._step(s)
        assert step is not None and step.kind == "digest"
        value = value_at(s.run.notification.get("data") or {}, step.key) if step.key else None
        mine = prefs.digests.get(s.run.workflow) if prefs is not None else None
        if prefs is not None and mine is not None:
            window = mine.seconds_from(dt.datetime.fromtimestamp(now or time.time(), dt.UTC), prefs.timezone)
        else:
            window = step.seconds or max(1.0, (s.run.until or 0) - time.time())
        event = self._events.get(s.run.run_id)
        if event is None:
            event = self._events[s.run.run_id] = digest_event(s.run.notification)
        return JoinItem(s.run.user_id, f"{s.run.workflow}.{s.step}", "" if value is None else str(value),
                        s.run.run_id, event, window, step.limit or None)

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


def _kind(step: Step | None) -> str:
    return step.kind if step is not None else ""


def _waiting_at(s: _State, outcome: str) -> bool:
    """Whether the run waits at its current step with that outcome (an open digest it owns)."""
    return s.run.status == WAITING and s.run.log.get(s.step, {}).get("outcome") == outcome


DIGEST_SHOWN = 3
"""Events of a digest shown first and last in its notification's ``data.digest`` (templates read
them): with 100 characters of body each, what a push provider's 4 KiB data holds with room to spare."""


def digest_event(n: dict[str, Any]) -> dict[str, Any]:
    """What a digest keeps of a notification that joins it: what its notification shows of each
    event (:func:`digest_notification`) and the send time it is ordered by, not the whole payload."""
    return {"id": n.get("id"), "title": n.get("title"), "body": (n.get("body") or "")[:100],
            "timestamp": n.get("timestamp")}


def digest_notification(n: dict[str, Any], step: int, events: list[dict[str, Any]],
                        summary: bool = False) -> dict[str, Any]:
    """The notification a closed digest sends: the opener's, with its own id (so channels that
    already had the opener, the inbox too, take the digest as new) and ``data.digest``: the count and
    the first and last events (id, title, body) in the order they were sent (concurrent router
    tasks may join them in another), fewer when the data would exceed its 4 KiB. A roll-up's
    ``summary`` says in its title how many more it holds ("Order shipped (+4 more)")."""
    events = sorted(events, key=lambda e: str(e.get("timestamp") or ""))

    def brief(e: dict[str, Any]) -> dict[str, Any]:
        return {"id": e.get("id"), "title": e.get("title"), "body": (e.get("body") or "")[:100]}

    for shown in range(DIGEST_SHOWN, -1, -1):
        digest = {"count": len(events), "first": [brief(e) for e in events[:shown]],
                  "last": [brief(e) for e in events[-shown:]] if shown and len(events) > shown else []}
        data = {**(n.get("data") or {}), "digest": digest}
        if len(orjson.dumps(data)) <= MAX_DATA_BYTES:
            break
    else:
        data = {"digest": {"count": len(events)}}
    digest_id = f"{n['id']}-d{step}"
    if len(digest_id) > 64:  # a producer's own id may already use the 64 characters an id may have
        digest_id = hashlib.sha1(digest_id.encode()).hexdigest()
    title = n.get("title") or ""
    if summary and title and len(events) > 1:  # a templated notification counts its events itself
        title = f"{events[0].get('title') or title} (+{len(events) - 1} more)"
    return {**n, "id": digest_id, "data": data, "title": title[:256]}


def _needs(step: Step | None, what: str) -> bool:
    c = step.condition if step is not None else None
    if c is None:
        return False
    return c.kind in ("unread", "read") if what == "read" else c.kind == "compare" and c.source == "prefs"

