"""Single sends that arrive faster than one at a time are routed together: a router task takes the
sends waiting behind it.

When ``notifier.route`` starts, it asks the router queue (``basic_get``, no wait) for more
``notifier.route`` messages, up to :data:`MOST` of them and ``NOTIFIER_BATCH_SIZE`` items in all,
and routes their items with its own in one :meth:`notifier.pipeline.router.Router.plan`: the batch
path of ``send_bulk``, one round trip each for idempotency claims, preferences, rate limits and the
inbox, and one Celery task instead of one per send. When the queue is empty the ask finds nothing
and the send is routed alone, as before. Each taken message is acknowledged only after the batch's
writes (inbox appends, delivery tasks enqueued); until then it is held, so a worker killed
mid-batch gives it back: on RabbitMQ when the child's connection closes, on Redis Streams through the
pending list (taken back after the visibility timeout, as any dead worker's entries). A redelivered
send is routed again without sending twice (inbox appends are idempotent per notification id, rate
limits count a send once, receipts guard the other channels).

Only what routes the same way joins a batch: a ``notifier.route`` JSON message without an ETA whose
arguments are one list of items. The first other message (a bulk fan-out, a replay, a poison message)
goes back to the queue, where Celery's consumer runs it (or dead-letters it) as before, and ends the
take. A batch whose routing fails ends like its task: on a lost Redis every taken message goes back
to the queue, on an unexpected error each is dead-lettered with its own arguments.

Why not ``celery-batches``: it buffers requests in the worker's main process and flushes them every
``flush_every`` messages or ``flush_interval`` seconds, so a lone send waits for the timer (latency),
and a buffer can never outgrow the prefetch window that late acks keep full; its flush acks the
requests only in the pool's success callback, so a pool child killed mid-batch leaves them unacked
for the life of the worker (Redis Streams would even keep refreshing them as held), where a Celery
task is rejected and redelivered (``task_reject_on_worker_lost``). Taking from the queue inside the
task keeps every other behaviour of the task: its retries and dead letters, Celery's own ack of the
first message and its redelivery.

Operators see batches in ``notifier_router_batch_messages`` (router messages per router task run)
and, at INFO, one ``Task notifier.route[<id>] routed in the batch of notifier.route[<id>]`` line per
taken message, after its ack (in place of Celery's received/succeeded lines); with task events on,
each taken message gets a ``task-succeeded`` event (one events message per batch), so Flower shows it
done as it shows the task's own.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from celery.events.dispatcher import EventDispatcher
from kombu import Connection
from kombu.message import Message

from notifier.config import get_settings
from notifier.metrics import ROUTER_BATCH
from notifier.per_process import PerProcess
from notifier.pipeline.queues import ROUTE, ROUTER_QUEUE
from notifier.redis import store
from workers.app import app
from workers.base import NotifierTask

log = logging.getLogger("notifier.worker")

MOST = 100
"""Router messages one task takes besides its own (a bound on a batch's latency: one ``basic_get`` each).
A backlog of 3,000 single sends drains at ~3,400 sends/s with 100, ~2,300 with 10, ~550-620 without
taking, and 3,400-3,900 with 400 (``python -m benchmarks.single_sends --backlog``, RESULTS.md section 1,
session 5)."""

_connection: PerProcess[Connection] = PerProcess(lambda: app.connection_for_read(heartbeat=0))
"""Each pool child's own broker connection for taking (no heartbeats: it sits idle between batches)."""
_events: PerProcess[EventDispatcher] = PerProcess(
    lambda: app.events.Dispatcher(app.connection_for_write(), buffer_group={"task"}, buffer_limit=MOST + 1))
"""Each pool child's task-event dispatcher for taken messages (one events message per batch)."""


def _items(message: Message) -> list[Any] | None:
    """The items of a message that can join a batch; None for any other message."""
    headers = message.headers or {}
    if headers.get("task") != ROUTE or headers.get("eta") or headers.get("expires"):
        return None
    try:
        body = message.decode()
    except Exception:  # noqa: BLE001  any decoder's error: Celery's consumer dead-letters it, not us
        return None
    if not isinstance(body, (list, tuple)) or len(body) != 3:
        return None
    args, kwargs, _ = body
    if kwargs or not isinstance(args, list) or len(args) != 1 or not isinstance(args[0], list):
        return None
    return args[0]


def _take(room: int) -> list[tuple[Message, list[Any]]]:
    """Waiting router messages that can join this batch, up to :data:`MOST` and ``room`` items."""
    taken: list[tuple[Message, list[Any]]] = []
    conn = _connection.get()
    errors = conn.connection_errors + conn.channel_errors
    try:
        queue = app.amqp.queues[ROUTER_QUEUE].bind(conn.default_channel)
        while len(taken) < MOST and room > 0:
            message = queue.get(no_ack=False, accept={"application/json"})
            if message is None:
                break
            items = _items(message)
            if items is None:
                message.requeue()
                break
            taken.append((message, items))
            room -= len(items)
    except errors as exc:
        log.warning("router: could not take waiting sends (%r); routing what was taken", exc)
        _connection.reset(_close)
    return taken


def _close(conn: Connection) -> None:
    with contextlib.suppress(Exception):  # already broken: dropping it is all that is left
        conn.release()


def _settle(taken: list[tuple[Message, list[Any]]], requeue: bool) -> None:
    """Ack (or give back) each taken message; one the broker no longer takes comes back by itself."""
    for message, _ in taken:
        try:
            if requeue:
                message.requeue()
            else:
                message.ack()
        except Exception as exc:  # noqa: BLE001  a lost broker connection: the message is redelivered
            log.warning("router: could not %s a taken send (%r); it is redelivered and routed again",
                        "give back" if requeue else "ack", exc)
            _connection.reset(_close)
            return


def _report(task: NotifierTask, ids: list[str], runtime: float) -> None:
    """A ``task-succeeded`` event for each taken message, in one message: Flower shows them done, as it
    shows the task's own (best effort, like Celery's own events)."""
    if not task.app.conf.worker_send_task_events:
        return
    try:
        dispatcher = _events.get()
        dispatcher.hostname = task.request.hostname or dispatcher.hostname
        for task_id in ids:
            dispatcher.send("task-succeeded", uuid=task_id, result="None", runtime=runtime)
        dispatcher.flush(errors=False)
    except Exception as exc:  # noqa: BLE001  a lost broker connection: the events are lost, nothing else
        log.warning("router: could not send the task events of a batch (%r)", exc)
        _events.reset()


@contextmanager
def waiting_sends(task: NotifierTask, items: list[Any]) -> Iterator[list[Any]]:
    """``items`` and the items of the router messages waiting behind this task, for one batch.

    Leaving the block without an error acks every taken message; with one, each taken message
    ends as the task's own would (see the module docstring).
    """
    started = time.monotonic()
    taken = _take(get_settings().batch_size - len(items))
    ROUTER_BATCH.observe(len(taken) + 1)
    try:
        yield items + [item for _, more in taken for item in more]
    except store.UNAVAILABLE:
        _settle(taken, requeue=True)
        raise
    except Exception as exc:
        for _, more in taken:
            task.dead_letter([more], {}, f"{type(exc).__name__}: {exc}", type(exc).__name__)
        _settle(taken, requeue=False)
        raise
    except BaseException:
        _settle(taken, requeue=True)
        raise
    if not taken:
        return
    _settle(taken, requeue=False)
    ids = [str((message.headers or {}).get("id")) for message, _ in taken]
    _report(task, ids, time.monotonic() - started)
    if log.isEnabledFor(logging.INFO):
        for task_id in ids:
            log.info("Task %s[%s] routed in the batch of %s[%s]", ROUTE, task_id, ROUTE, task.request.id)
