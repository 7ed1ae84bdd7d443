"""Messages no task can run go to the dead-letter queue, not to the void, and never stop the worker.

Three kinds: an unknown task name (``task_unknown``); a message Celery refuses (no task header, a
disallowed serializer such as pickle: ``task_rejected``); and one Celery cannot even parse (a body
that is not JSON, or not ``[args, kwargs, embed]``, or headers without an id). Celery acks the
undecodable ones with a log line only, and a body or header of the wrong shape raises out of its
message handler and stops the worker ("Unrecoverable error"); since the message was never acked it
comes back and stops the next worker too. ``workers.consumer.Consumer`` dead-letters both through
:func:`dead_letter_message`.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from celery.signals import task_rejected, task_unknown

from notifier.pipeline.queues import queue_of
from notifier.state.deadletters import DeadLetters

log = logging.getLogger("notifier.worker")
MAX_BODY_CHARS = 10_000
"""How much of an unreadable body a dead letter keeps (enough to recognise the sender)."""


def _queue(message: Any, name: str) -> str:
    """The queue the message really came from (its routing key), else the task's own queue."""
    info = getattr(message, "delivery_info", None) or {}
    return str(info.get("routing_key") or queue_of(name))


@task_unknown.connect
def _unknown(name: str | None = None, id: str | None = None, message: Any = None, **_: Any) -> None:
    try:
        body = message.decode() if message is not None else None
        args, kwargs = (list(body[0]), dict(body[1])) if isinstance(body, (list, tuple)) and len(body) >= 2 else (
            [body], {})
    except Exception as exc:  # noqa: BLE001  an undecodable body (any decoder's error): keep what can be kept
        args, kwargs = [repr(getattr(message, "body", None))], {"decode_error": str(exc)}
    entry = DeadLetters().add(task=name or "?", args=args, kwargs=kwargs, queue=_queue(message, name or ""),
                              error=f"unknown task {name!r}: no worker task has this name",
                              error_type="UnknownTask", attempts=1)
    log.warning("dead-lettered unknown task %s (message %s) as %s", name, id, entry)


def dead_letter_message(message: Any, error: str, error_type: str) -> None:
    """Keep a message that cannot run as it arrived: its body as text and its headers."""
    headers = dict(getattr(message, "headers", None) or {})
    name = str(headers.get("task") or "?")
    body = getattr(message, "body", b"")
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    try:
        entry = DeadLetters().add(task=name, args=[text[:MAX_BODY_CHARS]], kwargs={"headers": headers},
                                  queue=_queue(message, name), error=error, error_type=error_type, attempts=1)
    except redis.RedisError as exc:
        log.error("could not dead-letter a %s message (%s): %s", error_type, exc, error)
        return
    log.warning("dead-lettered a message from queue %s as %s: %s", _queue(message, name), entry, error)


@task_rejected.connect
def _rejected(message: Any = None, exc: BaseException | None = None, **_: Any) -> None:
    if exc is None:
        dead_letter_message(message, "not a task message (no task header): sent to the wrong queue?",
                            "UnknownMessage")
    else:
        dead_letter_message(message, f"invalid task message: {exc}", type(exc).__name__)
