"""Messages no task can run (an unknown task name) go to the dead-letter queue, not to the void."""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import task_unknown

from notifier.deadletters import DeadLetters
from notifier.queues import queue_of

log = logging.getLogger("notifier.worker")


@task_unknown.connect
def _unknown(name: str | None = None, id: str | None = None, message: Any = None, **_: Any) -> None:
    try:
        body = message.decode() if message is not None else None
        args, kwargs = (list(body[0]), dict(body[1])) if isinstance(body, (list, tuple)) and len(body) >= 2 else (
            [body], {})
    except Exception as exc:  # an undecodable body: keep what can be kept
        args, kwargs = [repr(getattr(message, "body", None))], {"decode_error": str(exc)}
    entry = DeadLetters().add(task=name or "?", args=args, kwargs=kwargs, queue=queue_of(name or ""),
                              error=f"unknown task {name!r}: no worker task has this name",
                              error_type="UnknownTask", attempts=1)
    log.warning("dead-lettered unknown task %s (message %s) as %s", name, id, entry)
