"""The loop that releases deferred messages (quiet hours, long backoffs) when they fall due, and sends
the periodic jobs (the delivery log's drain and retention, ``workers/deliverylog.py``).

It runs as a thread in every worker's main process; a Redis lock lets one of them release at a time,
and each periodic job goes out once per interval whichever worker sends it (``notifier.pipeline.periodic``).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import redis
from celery.signals import worker_ready, worker_shutdown

from notifier.pipeline.periodic import Periodic
from notifier.pipeline.queues import args_summary
from notifier.state.schedule import Schedule
from workers import deliverylog
from workers.app import app

log = logging.getLogger("notifier.scheduler")
_stop = threading.Event()

INTERVAL_SECONDS = 1.0
"""How often each worker looks for due deferred messages: a message leaves at most this late, which no
deferral (quiet hours, backoffs past the countdown limit) notices, for a Redis round trip a second."""


def _send(task: str, args: list[Any], kwargs: dict[str, Any], queue: str) -> None:
    app.send_task(task, args=args, kwargs=kwargs, queue=queue, argsrepr=args_summary(task, args))


def _loop() -> None:
    schedule = Schedule()
    periodic = Periodic(deliverylog.jobs())
    while not _stop.wait(INTERVAL_SECONDS):
        try:
            released = schedule.release_due(_send)
            if released:
                log.info("released %d deferred message(s)", released)
            for job in periodic.due():
                app.send_task(job.task, queue=job.queue, expires=job.expires_seconds)
        except redis.RedisError as exc:
            log.warning("scheduler: Redis unavailable (%s); trying again", exc)
        except Exception:
            log.exception("scheduler: unexpected error; trying again")


@worker_ready.connect
def _start(**_: Any) -> None:
    _stop.clear()
    threading.Thread(target=_loop, name="notifier-scheduler", daemon=True).start()


@worker_shutdown.connect
def _shutdown(**_: Any) -> None:
    _stop.set()
