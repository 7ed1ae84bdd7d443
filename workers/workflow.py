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

import logging
import time
from collections import defaultdict
from typing import Any

from notifier.config import get_settings
from notifier.metrics import WORKFLOW_STEPS
from notifier.models import Notification
from notifier.pipeline.queues import ADVANCE, ROUTE, ROUTER_QUEUE
from notifier.pipeline.router import Router
from notifier.state.schedule import Schedule
from notifier.workflows.engine import Engine
from notifier.workflows.runs import RUNNING, WAITING, Runs
from workers.app import app
from workers.base import NotifierTask
from workers.dispatch import dispatch

log = logging.getLogger("notifier.worker")


def start(task: NotifierTask, sends: list[tuple[str, dict[str, Any]]]) -> None:
    """Start a run per ``(user_id, notification)``: at once, or at its ``send_at``."""
    if not sends:
        return
    starts, now_refs = [], []
    later: dict[float, list[list[Any]]] = defaultdict(list)
    for user_id, n in sends:
        send_at = Notification.model_validate(n).send_at
        until = send_at.timestamp() if send_at is not None and send_at.timestamp() > time.time() else None
        starts.append((user_id, n["type"], n, until))
        if until is None:
            now_refs.append([user_id, n["id"], 0])
        else:
            later[until].append([user_id, n["id"], 0])
    Runs().start_many(starts)
    for due, refs in later.items():
        Schedule().add(due, ADVANCE, [refs], {}, ROUTER_QUEUE)
    if now_refs:
        take_steps(task, now_refs)


def take_steps(task: NotifierTask, refs: list[list[Any]]) -> None:
    """Take every step the runs ``[user_id, run_id, step]`` can take now; a run not at that step any
    more (a repeated task or timer) or over (done, cancelled) is left alone."""
    runs = Runs()
    loaded = runs.load_many([(u, r) for u, r, _ in refs])
    candidates = [run for run, (_, _, step) in zip(loaded, refs, strict=True)
                  if run is not None and run.status in (RUNNING, WAITING) and run.step == step]
    claims = runs.claim_many([(r.user_id, r.run_id, r.step) for r in candidates], get_settings().claim_seconds)
    ready = [run for run, (answer, _) in zip(candidates, claims, strict=True) if answer == "ok"]
    busy = [([run.user_id, run.run_id, run.step], until) for run, (answer, until) in
            zip(candidates, claims, strict=True) if answer == "busy"]
    if busy:  # another worker holds them: look again when its lease ends (it moved them on, or died)
        Schedule().add(max(until for _, until in busy), ADVANCE, [[ref for ref, _ in busy]], {}, ROUTER_QUEUE)
    if not ready:
        return
    progress = Engine().plan(ready)
    if progress.route:
        dispatch(task, Router().plan(progress.route, runs=False), ROUTE)
    for due, timer_refs in progress.timers.items():
        Schedule().add(due, ADVANCE, [timer_refs], {}, ROUTER_QUEUE)
    results = runs.move_many(progress.moves)
    for (workflow, kind, outcome), count in progress.outcomes.items():
        WORKFLOW_STEPS.labels(workflow, kind, outcome).inc(count)
    if log.isEnabledFor(logging.INFO):
        for move, result in zip(progress.moves, results, strict=True):
            steps = "; ".join(f"step {i + 1} {e['outcome']} ({e['detail']})" for i, e in sorted(move.log.items()))
            log.info("workflow run %s of %s: %s -> %s%s", move.run_id, move.user_id, steps, move.status,
                     "" if result == "ok" else f" (not moved: {result})",
                     extra={"notification_id": move.run_id})


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
