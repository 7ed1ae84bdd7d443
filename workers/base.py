"""The task base: it applies what happens when a task fails (retry later, or dead-letter).

Every notifier task uses :class:`NotifierTask`. A message whose arguments do not fit the task (sent
by hand, an old producer) and any unexpected exception go to the dead-letter queue with the reason,
so a worker never crashes or loops on a poison message. For deliveries, :func:`notifier.pipeline.retry.decide`
says which targets retry after how long and which are dead-lettered; :meth:`NotifierTask.apply_decision`
does it. Short waits use Celery's countdown; long ones wait in the Redis schedule (an ETA longer than
the broker's visibility timeout would run twice).
"""

from __future__ import annotations

import inspect
import logging
import time
from typing import Any

from celery import Task
from celery.exceptions import Reject

from notifier.config import get_settings
from notifier.deliverylog.emission import task_batch
from notifier.metrics import DEAD_LETTERED
from notifier.pipeline.delivery import rows
from notifier.pipeline.queues import args_summary, queue_of
from notifier.pipeline.retry import Decision
from notifier.redis import store
from notifier.state.deadletters import DeadLetters
from notifier.state.schedule import Schedule

log = logging.getLogger("notifier.worker")


class NotifierTask(Task):
    """Base task: poison messages and bugs become dead letters instead of lost or looping messages."""

    abstract = True
    ignore_result = True

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            inspect.signature(self.run).bind(*args, **kwargs)
        except TypeError as exc:
            self.dead_letter(list(args), kwargs, f"malformed task message: {exc}", "MalformedMessage")
            return None
        try:
            with task_batch():
                return super().__call__(*args, **kwargs)
        except store.UNAVAILABLE as exc:
            log.warning("%s: Redis unavailable (%r); message goes back to the queue", self.name, exc)
            raise Reject(str(exc), requeue=True) from None
        except Reject:
            raise
        except Exception as exc:  # a bug: keep the message, tell ops
            log.exception("%s failed unexpectedly; dead-lettering the message", self.name)
            self.dead_letter(list(args), kwargs, f"{type(exc).__name__}: {exc}", type(exc).__name__)
            return None

    def dead_letter(self, args: list[Any], kwargs: dict[str, Any], error: str, error_type: str,
                    attempts: int | None = None, task: str | None = None) -> str:
        attempt = kwargs.get("attempt", 0) if isinstance(kwargs.get("attempt"), int) else 0
        entry_id = DeadLetters().add(
            task=task or self.name, args=args, kwargs={k: v for k, v in kwargs.items() if k != "attempt"},
            queue=queue_of(task or self.name), error=error, error_type=error_type,
            attempts=attempts if attempts is not None else attempt + 1,
            first_attempt_at=kwargs.get("first_attempt_at"))
        DEAD_LETTERED.labels(task or self.name).inc()
        log.warning("dead-lettered %s as %s: %s", task or self.name, entry_id, error,
                    extra={"notification_id": _notification_ids(args)})
        return entry_id

    def enqueue(self, name: str, args: list[Any], kwargs: dict[str, Any] | None = None,
                delay: float = 0.0) -> None:
        """Send a task now, after a short countdown, or via the schedule when the wait is long."""
        queue = queue_of(name)
        if delay > get_settings().countdown_max_seconds:
            Schedule().add(time.time() + delay, name, args, kwargs or {}, queue)
        else:
            self.app.send_task(name, args=args, kwargs=kwargs or {}, queue=queue,
                               countdown=delay if delay > 0 else None, argsrepr=args_summary(name, args))

    def apply_decision(self, decision: Decision, attempt: int, first_attempt_at: float) -> list[str]:
        """Dead-letter each target the decision gives up on (one dead letter per target, so each can
        be inspected and replayed on its own) and send the ones to retry again as one task; returns
        the dead letters' ids, in ``decision.dead``'s order."""
        letters = [self.dead_letter(failure.args(), {"first_attempt_at": first_attempt_at}, failure.reason,
                                    type(failure.error).__name__, attempts=attempt + 1)
                   for failure in decision.dead]
        if decision.retry:
            notifications, targets = rows(decision.retry)
            log.info("%s: %d target(s) retry in %.1fs (attempt %d): %s", self.name, len(targets),
                     decision.delay, attempt + 1, decision.reason,
                     extra={"notification_id": ",".join(notifications)})
            self.enqueue(self.name, [notifications, targets],
                         {"attempt": attempt + 1, "first_attempt_at": first_attempt_at}, decision.delay)
        return letters


def _notification_ids(args: list[Any]) -> str:
    """The notification ids in a task's arguments, for log lines ("-" when none can be read)."""
    first = args[0] if args else None
    if isinstance(first, dict) and "id" in first:
        return str(first["id"])
    if isinstance(first, dict):
        return ",".join(map(str, first)) or "-"
    if isinstance(first, list) and first and isinstance(first[0], list) and len(first[0]) == 3:
        return ",".join(str(i[1].get("id", "?")) for i in first if isinstance(i, list) and len(i) == 3
                        and isinstance(i[1], dict)) or "-"
    return "-"
