"""Per-channel delivery tasks, one per channel queue (``notifier.deliver.<channel>``)."""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from typing import Any, Callable

from notifier import delivery
from notifier.channels import Delivery
from notifier.metrics import DELIVERIES, LATENCY
from notifier.config import CHANNELS
from notifier.queues import deliver_task
from workers.app import app
from workers.base import NotifierTask

log = logging.getLogger("notifier.worker")


def _make(channel: str) -> Callable[..., dict[str, int]]:
    def deliver(self: NotifierTask, notifications: dict[str, Any], targets: list[list[str]],
                attempt: int = 0, first_attempt_at: float | None = None) -> dict[str, int]:
        first_attempt_at = first_attempt_at or time.time()
        report = delivery.run(channel, notifications, targets)
        self.dead_letter_deliveries(report.failed, delivery.rows, attempt, first_attempt_at)
        if not self.retry_targets(report.retry, delivery.rows, attempt, first_attempt_at):
            report.give_up()
        for d, error in report.pruned:
            log.info("pruned %s target %s of user %s: %s", channel, d.target, d.user_id, error,
                     extra={"notification_id": d.notification.id, "channel": channel})
        observe(channel, report)
        return {"delivered": len(report.delivered), "already": len(report.already),
                "expired": len(report.expired), "pruned": len(report.pruned),
                "retry": len(report.retry), "failed": len(report.failed)}

    deliver.__name__ = f"deliver_{channel}"
    return app.task(bind=True, base=NotifierTask, name=deliver_task(channel))(deliver)


def observe(channel: str, report: delivery.Report) -> None:
    """Metrics for the batch, and one log line per notification with what happened to it."""
    now = time.time()
    per_notification: dict[str, Counter[str]] = defaultdict(Counter)
    outcomes: list[tuple[str, list[Any]]] = [
        ("sent", report.delivered), ("already", report.already), ("expired", report.expired),
        ("pruned", [d for d, _ in report.pruned]), ("retried", [d for d, _ in report.retry]),
        ("failed", [d for d, _ in report.failed])]
    latency = LATENCY.labels(channel)
    for outcome, items in outcomes:
        if items:
            DELIVERIES.labels(channel, outcome).inc(len(items))
        for d in items:
            nid = d.notification.id if isinstance(d, Delivery) else "?"
            per_notification[nid][outcome] += 1
            if outcome == "sent":
                latency.observe(max(0.0, now - d.notification.timestamp.timestamp()))
    for nid, counts in per_notification.items():
        log.info("%s: %s", channel, ", ".join(f"{o} {n}" for o, n in counts.items()),
                 extra={"notification_id": nid, "channel": channel})


tasks = {channel: _make(channel) for channel in CHANNELS}
