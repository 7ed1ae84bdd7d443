"""Workflow tasks: start runs for the sends the router hands over, and take their next steps.

The engine (``notifier/workflows/engine.py``) decides; this claims each run's step first (a lease
of ``NOTIFIER_CLAIM_SECONDS``, so two tasks for one step never both take it, and a killed worker's
claim runs out), then carries the decisions out in the order that loses nothing: what the steps
send is routed (through the router's rules, with ``runs=False``) and the timers are set in the Redis
schedule (never Celery ETAs) before the runs move on. Killed in between, the task redelivered after
the lease finds the runs where they were and repeats the sends, which receipts and the inbox's
idempotent appends turn into one; a timer that fires twice finds its run moved on.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter, defaultdict
from typing import Any

from notifier.config import get_settings
from notifier.deliverylog import emission
from notifier.metrics import WORKFLOW_STEPS
from notifier.models import Notification
from notifier.pipeline.queues import ADVANCE, ROUTE, ROUTER_QUEUE
from notifier.pipeline.router import Plan as RouterPlan
from notifier.pipeline.router import Router
from notifier.state.schedule import Schedule
from notifier.workflows.engine import Engine, Progress
from notifier.workflows.model import ROLLUP
from notifier.workflows.runs import CANCELLED, RUNNING, WAITING, Move, Run, Runs
from workers.app import app
from workers.base import NotifierTask
from workers.dispatch import dispatch

log = logging.getLogger("notifier.worker")


def follow(task: NotifierTask, plan: RouterPlan, rejected_task: str) -> None:
    """Carry out a router plan: its sends (``dispatch``), its workflow runs and its roll-ups."""
    dispatch(task, plan, rejected_task)
    start(task, plan.runs)
    roll_up(task, plan.rollups)


def start(task: NotifierTask, sends: list[tuple[str, dict[str, Any]]]) -> None:
    """Start a run per ``(user_id, notification)`` of its type's workflow, at once or at its
    ``send_at``."""
    if not sends:
        return
    send_at: dict[str, float | None] = {}
    for _, n in sends:
        if n["id"] not in send_at:  # a broadcast's runs share one notification: read it once
            at = Notification.model_validate(n).send_at
            send_at[n["id"]] = at.timestamp() if at is not None and at.timestamp() > time.time() else None
    _begin(task, [(user_id, n["type"], n, send_at[n["id"]], None) for user_id, n in sends])


def roll_up(task: NotifierTask, held: list[tuple[str, str, dict[str, Any], float]]) -> None:
    """Start a roll-up run (``Workflow.rollup``) per send held back on a channel: it joins the user's
    digest of that channel, which the first one's hold ending closes, sending one summary. A roll-up
    run has its own id (the notification's, suffixed with the channel), so a notification held on
    two channels makes two."""
    if held:
        _begin(task, [(user_id, f"{ROLLUP}{channel}", {**n, "id": rollup_id(n["id"], channel)}, None, until)
                      for user_id, channel, n, until in held])


def rollup_id(notification_id: str, channel: str) -> str:
    """The id of a notification's roll-up run on ``channel`` (an id has at most 64 characters)."""
    rid = f"{notification_id}-r{channel}"
    return rid if len(rid) <= 64 else hashlib.sha1(rid.encode()).hexdigest()


def _begin(task: NotifierTask, starts_due: list[tuple[str, str, dict[str, Any], float | None, float | None]]) -> None:
    """Start runs ``(user, workflow, notification, send_at or None, digest due or None)``: take their
    first steps at once (or set a timer for their ``send_at``), then record them in the state those
    steps left. A redelivered router task takes the first steps again (receipts and idempotent
    appends make that harmless) and its record of a run already recorded changes nothing."""
    starts = [(user_id, workflow, n, until) for user_id, workflow, n, until, _ in starts_due]
    dues = {(user_id, n["id"]): due for user_id, _, n, _, due in starts_due}
    runs = Runs()
    statuses = runs.prepare_many(starts)
    now = time.time()
    fresh: list[Run] = []
    held: list[Move] = []
    later: dict[float, list[list[Any]]] = defaultdict(list)
    for (user_id, workflow, n, until), status in zip(starts, statuses, strict=True):
        if status == RUNNING:
            fresh.append(Run(user_id, n["id"], workflow, n, 0, RUNNING, dues[(user_id, n["id"])],
                             n.get("cancel_key"), now))
        elif status == WAITING and until is not None:
            later[until].append([user_id, n["id"], 0])
            held.append(Move(user_id, n["id"], 0, 0, WAITING, until))
        elif status == CANCELLED:
            held.append(Move(user_id, n["id"], 0, 0, CANCELLED, None, {0: {
                "outcome": CANCELLED, "detail": f"cancel_key {n.get('cancel_key')} before it started", "at": now}}))
    for due, refs in later.items():
        Schedule().add(due, ADVANCE, [refs], {}, ROUTER_QUEUE)
    progress = _carry_out(task, fresh)
    moves = [*(progress.moves if progress else []), *held]
    notifications = {n["id"]: (workflow, n) for _, workflow, n, _ in starts}
    recorded = runs.record_many([(*notifications[m.run_id], m) for m in moves])
    _log(moves, ["ok" if r else "recorded before" for r in recorded])
    emission.record(emission.workflow_moves([m for m, r in zip(moves, recorded, strict=True) if r],
                                            {rid: n.get("type") for rid, (_, n) in notifications.items()}))


def take_steps(task: NotifierTask, refs: list[list[Any]]) -> None:
    """Take every step the runs ``[user_id, run_id, step]`` can take now; a run not at that step any
    more (a repeated task or timer), over (done, cancelled), or held by another worker (looked at
    again when that worker's lease ends) is left alone."""
    runs = Runs()
    loaded = runs.load_many([(u, r) for u, r, _ in refs])
    candidates = [run for run, (_, _, step) in zip(loaded, refs, strict=True)
                  if run is not None and run.status in (RUNNING, WAITING) and run.step == step]
    claims = runs.claim_many([(r.user_id, r.run_id, r.step) for r in candidates], get_settings().claim_seconds)
    busy = [([run.user_id, run.run_id, run.step], until) for run, (answer, until) in
            zip(candidates, claims, strict=True) if answer == "busy"]
    if busy:  # another worker holds them: look again when its lease ends (it moved them on, or died)
        Schedule().add(max(until for _, until in busy), ADVANCE, [[ref for ref, _ in busy]], {}, ROUTER_QUEUE)
    _take(task, [run for run, (answer, _) in zip(candidates, claims, strict=True) if answer == "ok"])


def _carry_out(task: NotifierTask, ready: list[Run]) -> Progress | None:
    """Decide the runs' steps and send what they send and set their timers (not yet moving them)."""
    if not ready:
        return None
    progress = Engine().plan(ready)
    if progress.route:
        follow(task, Router().plan(progress.route, runs=False, unheld=frozenset(progress.unheld)), ROUTE)
    for due, timer_refs in progress.timers.items():
        Schedule().add(due, ADVANCE, [timer_refs], {}, ROUTER_QUEUE)
    for (workflow, kind, outcome), count in progress.outcomes.items():
        WORKFLOW_STEPS.labels(workflow, kind, outcome).inc(count)
    return progress


def _take(task: NotifierTask, ready: list[Run]) -> None:
    """Take the steps of runs this worker holds: send, set timers, then move the runs on."""
    progress = _carry_out(task, ready)
    if progress is None:
        return
    results = Runs().move_many(progress.moves)
    _log(progress.moves, results)
    emission.record(emission.workflow_moves([m for m, r in zip(progress.moves, results, strict=True) if r == "ok"],
                                            {r.run_id: r.notification.get("type") for r in ready}))


def _log(moves: list[Move], results: list[str]) -> None:
    """Per notification, what its runs did (at INFO: one line however many users a broadcast has);
    per run, at DEBUG. A broadcast's runs mostly did the same: each distinct story is told once."""
    if not log.isEnabledFor(logging.INFO):
        return
    debug = log.isEnabledFor(logging.DEBUG)
    stories: dict[str, Counter[tuple[Any, ...]]] = defaultdict(Counter)
    for move, result in zip(moves, results, strict=True):
        steps = tuple((i, e["outcome"]) for i, e in sorted(move.log.items()))
        stories[move.run_id][(steps, move.status, result)] += 1
        if debug:
            log.debug("workflow run %s/%s: %s", move.user_id, move.run_id, "; ".join(
                f"step {i + 1} {e['outcome']} ({e['detail']})" for i, e in sorted(move.log.items())),
                extra={"notification_id": move.run_id})
    for nid, counts in stories.items():
        told = []
        for (steps, status, result), n in counts.items():
            what = "; ".join(f"step {i + 1} {outcome}" for i, outcome in steps) + f" -> {status}"
            what += "" if result == "ok" else f" ({result})"
            told.append(f"{what} x{n}" if n > 1 else what)
        log.info("workflow: %s", ", ".join(told), extra={"notification_id": nid})


@app.task(bind=True, base=NotifierTask, name=ADVANCE)
def advance(self: NotifierTask, refs: list[Any]) -> int:
    """Take the next steps of ``[user_id, run_id, step]`` runs (a timer came due, or a batch was split)."""
    if not (isinstance(refs, list) and all(
            isinstance(r, list) and len(r) == 3 and isinstance(r[0], str) and isinstance(r[1], str)
            and isinstance(r[2], int) and not isinstance(r[2], bool) for r in refs)):
        self.dead_letter([refs], {}, "malformed task message: refs must be [[user_id, run_id, step], ...]",
                         "MalformedMessage")
        return 0
    take_steps(self, refs)
    return len(refs)
