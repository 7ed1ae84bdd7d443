"""The delivery log's tasks, on their own ``log`` queue: the drain and retention.

The scheduler loop (``workers/scheduler.py``) sends them through :data:`JOBS`: the drain about every
second while events wait in Redis, retention every hour (a run finds at most an hour of rows past
``NOTIFIER_LOG_RETENTION_DAYS``, and one missed while the database was away costs an hour, not a day).
"""

from __future__ import annotations

import logging

from notifier.config import get_settings
from notifier.deliverylog.events import EventLog
from notifier.deliverylog.webhooks import Outbox
from notifier.errors import LogDatabaseNotUpgraded
from notifier.pipeline.periodic import Job
from notifier.pipeline.queues import DRAIN_LOG, LOG_QUEUE, PRUNE_LOG
from workers.app import app
from workers.base import NotifierTask

log = logging.getLogger("notifier.deliverylog")

DRAIN_INTERVAL_SECONDS = 1.0
PRUNE_INTERVAL_SECONDS = 3600.0


@app.task(bind=True, base=NotifierTask, name=DRAIN_LOG)
def drain_log(self: NotifierTask) -> int:
    """Write the events waiting in Redis to the log's database; returns how many.

    The database's modules (SQLAlchemy, psycopg, Alembic: ~30 MB) are imported here, not when the
    worker starts, so only a process that runs the log's tasks holds them."""
    from notifier.deliverylog.drain import Drain

    return Drain(enqueue=self.enqueue).run()


@app.task(bind=True, base=NotifierTask, name=PRUNE_LOG)
def prune_log(self: NotifierTask) -> int:
    """Delete the events past retention, in batches; returns how many."""
    from notifier.deliverylog import store
    from notifier.deliverylog.drain import OUTAGE
    from notifier.deliverylog.upgrades import ensure_current

    not_now: tuple[type[BaseException], ...] = (LogDatabaseNotUpgraded, *OUTAGE)
    try:
        ensure_current()
        deleted = store.delete_older_than(store.retention_cutoff())
    except not_now as exc:
        log.warning("delivery log retention skipped: %s", exc)
        return 0
    if deleted:
        log.info("delivery log retention: deleted %d event(s) older than %d days", deleted,
                 get_settings().log_retention_days)
    return deleted


def _events_waiting() -> bool:
    """Events to write, or written ones whose webhooks wait for the broker."""
    return EventLog().pending() > 0 or Outbox().pending() > 0


def jobs() -> tuple[Job, ...]:
    """What the scheduler loop sends for the log; nothing when ``NOTIFIER_DELIVERY_LOG`` is off."""
    if not get_settings().delivery_log:
        return ()
    return (Job(DRAIN_LOG, LOG_QUEUE, DRAIN_INTERVAL_SECONDS, _events_waiting, expires_seconds=30),
            Job(PRUNE_LOG, LOG_QUEUE, PRUNE_INTERVAL_SECONDS, expires_seconds=600))
