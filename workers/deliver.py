"""Per-channel delivery tasks, one per channel queue (``notifier.deliver.<channel>``)."""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from notifier.channels import registry
from notifier.config import get_settings
from notifier.deliverylog import emission
from notifier.metrics import DELIVERIES, LATENCY
from notifier.pipeline import delivery
from notifier.pipeline.queues import CHANNELS, deliver_task
from notifier.pipeline.retry import Decision, decide
from workers.app import app
from workers.base import NotifierTask

log = logging.getLogger("notifier.worker")


def _make(channel: str) -> Callable[..., dict[str, int]]:
    def deliver(self: NotifierTask, notifications: dict[str, Any], targets: list[list[str]],
                attempt: int = 0, first_attempt_at: float | None = None) -> dict[str, int]:
        first_attempt_at = first_attempt_at or time.time()
        report = delivery.run(channel, notifications, targets)
        done_at = time.time()  # before the retries are queued: the events' times keep their order
        decision = decide(report, attempt, get_settings())
        letters = self.apply_decision(decision, attempt, first_attempt_at)
        emission.record(emission.delivered(channel, report, decision, attempt, letters, done_at))
        for d, error in decision.pruned:
            log.info("pruned %s target %s of user %s: %s", channel, d.target, d.user_id, error,
                     extra={"notification_id": d.notification.id, "channel": channel})
        observe(channel, report, decision)
        return {"delivered": len(report.delivered), "already": len(report.already),
                "expired": len(report.expired), "pruned": len(decision.pruned),
                "retry": len(decision.retry), "failed": len(decision.dead)}

    deliver.__name__ = f"deliver_{channel}"
    return app.task(bind=True, base=NotifierTask, name=deliver_task(channel))(deliver)


def observe(channel: str, report: delivery.Report, decision: Decision) -> None:
    """Metrics for the batch, and one log line per notification with what happened to it (targets
    given up on count as ``failed``, not ``retried``)."""
    now = time.time()
    per_notification: dict[str, Counter[str]] = defaultdict(Counter)
    outcomes: list[tuple[str, Sequence[str]]] = [
        ("sent", [d.notification.id for d in report.delivered]),
        ("already", [d.notification.id for d in report.already]),
        ("expired", [d.notification.id for d in report.expired]),
        ("pruned", [d.notification.id for d, _ in decision.pruned]),
        ("retried", [d.notification.id for d in decision.retry]),
        ("failed", [f.notification_id for f in decision.dead])]
    for outcome, ids in outcomes:
        if ids:
            DELIVERIES.labels(channel, outcome).inc(len(ids))
        for nid in ids:
            per_notification[nid][outcome] += 1
    latency = LATENCY.labels(channel)
    for d in report.delivered:
        latency.observe(max(0.0, now - d.notification.timestamp.timestamp()))
    for nid, counts in per_notification.items():
        log.info("%s: %s", channel, ", ".join(f"{o} {n}" for o, n in counts.items()),
                 extra={"notification_id": nid, "channel": channel})


tasks = {channel: _make(channel) for channel in CHANNELS}

# Every channel's module is imported here, in the worker's main process before the pool forks: the
# router reads every channel's attributes, and children that imported the provider libraries each on
# their first batch held a private copy of them (the 100,000-notification backlog test saw the workers
# grow by 81 MB that way; imported before the fork, the pages are shared).
registry.classes()
