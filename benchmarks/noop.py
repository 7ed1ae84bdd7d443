"""The baseline task: a Celery app with notifier's worker settings and one task that does nothing.

``celery -A benchmarks.noop worker -Q bench-noop -P prefork -c 2`` runs it with the same broker,
serializer, acks, prefetch and events as ``workers``, so its rate is Celery's own per-task cost.
"""

from __future__ import annotations

from celery import Celery
from kombu import Queue

from notifier.config import get_settings
from notifier.pipeline.celeryconfig import celery_config

QUEUE = "bench-noop"
TASK = "bench.noop"

app = Celery("bench-noop", set_as_current=False)
app.conf.update(celery_config(get_settings()))
app.conf.update(task_routes={TASK: {"queue": QUEUE}}, task_queues=[Queue(QUEUE, routing_key=QUEUE)],
                task_default_queue=QUEUE)


@app.task(name=TASK, ignore_result=True)
def noop(*_args: object) -> None:
    """Nothing: what is measured is the broker round trip and the worker's per-task bookkeeping."""
