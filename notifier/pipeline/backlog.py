"""What waits: messages ready per queue, and dead letters sent back through the pipeline.

``notifier stats`` and ``notifier dlq replay`` on the command line and the admin API and page in
the gateway read and act through here, so both answer the same.
"""

from __future__ import annotations

from collections.abc import Sequence

import kombu
import kombu.exceptions
from celery.result import AsyncResult

from notifier.batches import batched
from notifier.errors import ValidationError
from notifier.pipeline.producer import broker_unavailable, producer_app
from notifier.pipeline.queues import QUEUES, REPLAY, queue_of
from notifier.state.deadletters import DeadLetters


def queue_depths() -> dict[str, int]:
    """Messages ready in each of notifier's queues (BrokerUnavailable when the broker is away)."""
    app = producer_app()
    conn = app.connection_for_read()
    try:
        with conn:
            conn.ensure_connection(**app.conf.task_publish_retry_policy)  # a publish's retries, not kombu's 2 + 2 s
            return {q: _size(conn, q) for q in QUEUES}
    except (kombu.exceptions.OperationalError, *conn.connection_errors) as exc:
        raise broker_unavailable(exc) from None


def _size(conn: kombu.Connection, queue: str) -> int:
    """Messages ready in ``queue``; 0 when the broker has not declared it yet.

    A channel per queue: on AMQP a passive declare of a missing queue closes its channel.
    """
    channel = conn.channel()
    try:
        return int(channel.queue_declare(queue=queue, passive=True).message_count)
    except conn.channel_errors:
        return 0
    finally:
        channel.close()


def replay(entry_ids: Sequence[str] | None, chunk: int = 100) -> tuple[list[list[str]], list[AsyncResult]]:
    """Queue replay tasks for the dead letters ``entry_ids`` (all of them for None), ``chunk`` to a
    task; every id is checked first, so an unknown one queues nothing (ValidationError). Returns the
    chunks and their tasks' results (each gives ``{"replayed": [...], "missing": [...]}``)."""
    letters = DeadLetters()
    if entry_ids is not None:
        found, unknown = letters.lookup(entry_ids)
        if unknown:
            raise ValidationError(f"no dead letter {', '.join(unknown)}; nothing was queued (see notifier dlq list)")
        ids = [e["id"] for e in found]
    else:
        ids = [e["id"] for e in letters.all()]
    app = producer_app()
    chunks = [list(part) for part in batched(ids, chunk)]
    try:
        return chunks, [app.send_task(REPLAY, args=[part], queue=queue_of(REPLAY)) for part in chunks]
    except kombu.exceptions.OperationalError as exc:
        raise broker_unavailable(exc) from None
