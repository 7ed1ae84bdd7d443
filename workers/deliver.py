"""Per-channel delivery tasks, one per channel queue (``notifier.deliver.<channel>``)."""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

from notifier import delivery
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
        self.retry_targets(report.retry, delivery.rows, attempt, first_attempt_at)
        self.dead_letter_deliveries(report.failed, delivery.rows, attempt, first_attempt_at)
        for d, error in report.pruned:
            log.info("pruned %s target of user %s: %s", channel, d.user_id, error,
                     extra={"notification_id": d.notification.id, "channel": channel})
        summary = {"delivered": len(report.delivered), "already": len(report.already),
                   "expired": len(report.expired), "pruned": len(report.pruned),
                   "retry": len(report.retry), "failed": len(report.failed)}
        log.debug("%s batch: %s", channel, summary)
        return summary

    deliver.__name__ = f"deliver_{channel}"
    return app.task(bind=True, base=NotifierTask, name=deliver_task(channel))(deliver)


tasks = {channel: _make(channel) for channel in CHANNELS}
