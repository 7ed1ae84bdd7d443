"""Test support: an isolated Redis database per test session, real Celery workers, polling.

Each pytest session claims a Redis database nobody else is using (``redisdb``'s lock, which the
benchmarks hold too), so parallel test runs on one machine never see each other's data; workers run
as real ``celery worker`` subprocesses (``processes``, shared with the benchmarks).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.parse
import uuid
import zoneinfo
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis

from tests.support import redisdb
from tests.support.processes import ROOT as ROOT  # re-exported: the tests' one name for the repository
from tests.support.processes import CeleryWorker, no_op_task

_session = uuid.uuid4().hex
_db: int | None = None
_private: int | None = None
_private_module: str | None = None


def claim_db() -> int:
    """The first Redis database (1-15) no other test session holds; flushed for this session."""
    global _db
    if _db is None:
        _db = redisdb.claim_free_db(_session)
    return _db


def private_env() -> dict[str, str]:
    """Store and broker in a database of their own, for a test whose worker must be the only one.

    One such database per session, flushed whenever a new test module starts using it (modules run
    one after another, so their workers never share it).
    """
    global _private, _private_module
    if _private is None:
        _private = redisdb.claim_free_db(_session)
    url = redisdb.url(_private)
    module = os.environ.get("PYTEST_CURRENT_TEST", "").split("::", 1)[0]
    if module != _private_module:
        redisdb.flush(url, _session)
        _redeclare_streams(redis.Redis.from_url(url))
        _private_module = module
    return {"NOTIFIER_REDIS_URL": url, "NOTIFIER_BROKER_URL": url}


def _redeclare_streams(client: redis.Redis) -> None:
    """Give the emptied database its task streams' consumer group back, as a declare would.

    The flush deleted them, and this process's producer will not declare them again: kombu keeps
    what a pooled connection declared, across Celery apps with the same broker URL. Without a group a
    stream's sends wait uncounted (``streams_transport.waiting`` answers 0), so a test that queues
    before its worker starts saw an empty queue whenever an earlier module had published here.
    """
    from notifier.pipeline.queues import QUEUES
    from notifier.pipeline.streams_transport import GROUP, stream_key

    for queue in QUEUES:
        client.xgroup_create(stream_key(queue), GROUP, id="0", mkstream=True)


def own_broker_env() -> dict[str, str]:
    """:func:`private_env`, with a RabbitMQ virtual host of its own as the broker in the RabbitMQ re-run."""
    env = private_env()
    if os.environ.get("NOTIFIER_TEST_BROKER") == "amqp":
        env["NOTIFIER_BROKER_URL"] = amqp_broker(env["NOTIFIER_REDIS_URL"])
    return env


def release_db() -> None:
    for db in (d for d in (_db, _private) if d is not None):
        redisdb.release(redisdb.url(db), _session)


_log_dir = os.path.join(tempfile.gettempdir(), f"notifier-test-{_session}")


def log_database_url() -> str:
    """The session's delivery log: a SQLite file in a folder of its own, never the working directory
    (the embedded default), removed at the end (:func:`remove_log_database`)."""
    os.makedirs(_log_dir, exist_ok=True)
    return f"sqlite:///{_log_dir}/log.sqlite3"


def remove_log_database() -> None:
    shutil.rmtree(_log_dir, ignore_errors=True)


def amqp_broker(redis_url: str) -> str:
    """A RabbitMQ virtual host of this session's own (``NOTIFIER_TEST_BROKER=amqp``), named for the
    Redis database the session claimed, port included: two sessions on different Redis servers (one
    on a private server) must not share, or delete, each other's vhost."""
    target = urllib.parse.urlsplit(redis_url)
    vhost = f"notifier-test-{target.port}-{target.path.strip('/') or 0}"
    # no check: the vhost is usually not there yet
    subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], capture_output=True, timeout=60, check=False)
    subprocess.run(["rabbitmqctl", "-q", "add_vhost", vhost], capture_output=True, timeout=60, check=True)
    subprocess.run(["rabbitmqctl", "-q", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"],
                   capture_output=True, timeout=60, check=True)
    return f"amqp://guest:guest@127.0.0.1:5672/{vhost}"


_broker: str | None = None


def base_env() -> dict[str, str]:
    """Environment for the test process and every worker/gateway subprocess it starts."""
    global _broker
    db = claim_db()
    url = redisdb.url(db)
    if _broker is None:
        _broker = amqp_broker(url) if os.environ.get("NOTIFIER_TEST_BROKER") == "amqp" else url
    return {
        "NOTIFIER_REDIS_URL": url,
        "NOTIFIER_BROKER_URL": _broker,
        "NOTIFIER_KEY_PREFIX": "nt",
        "NOTIFIER_RETRY_BACKOFF_SECONDS": "0.2",
        "NOTIFIER_RETRY_BACKOFF_MAX_SECONDS": "1",
        "NOTIFIER_MAX_RETRIES": "3",
        "NOTIFIER_COUNTDOWN_MAX_SECONDS": "2",
        "NOTIFIER_VISIBILITY_TIMEOUT_SECONDS": "30",
        "NOTIFIER_RATE_LIMITS": "realtime=1000/60,email=3/60,fcm=1000/60,apns=1000/60,webpush=1000/60",
        "NOTIFIER_SECRET_KEY": "test-secret-key-0123456789abcdef",
        "NOTIFIER_API_KEY": "test-api-key",
        "NOTIFIER_API_RATE_LIMIT": "100000/60",
        "NOTIFIER_DATABASE_URL": log_database_url(),
    }


class Worker(CeleryWorker):
    """A running ``celery -A workers worker`` subprocess, ready once it logs so; its output is kept
    for failure messages and read back for the tasks it ran."""

    def __init__(self, env: dict[str, str], queues: str, concurrency: int = 2) -> None:
        self.env = env
        self._ready = threading.Event()
        super().__init__(env, queues.split(","), concurrency=concurrency,
                         level=env.get("NOTIFIER_LOG_LEVEL", "INFO"))

    def on_line(self, line: str) -> None:
        if " ready." in line:
            self._ready.set()

    def wait_ready(self, timeout: float = 60) -> Worker:
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.1):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("worker did not start:\n" + self.log(50))
        return self

    def tasks(self) -> tuple[Counter[str], Counter[str]]:
        """How many times each task id was received, and how many times it finished (succeeded,
        failed, retried or was rejected), from Celery's own log lines."""
        received: Counter[str] = Counter()
        finished: Counter[str] = Counter()
        for match in _TASK_LINE.finditer(self.log()):
            if match["did"]:
                finished[match["did"]] += 1
            else:
                (received if match["what"] == "received" else finished)[match["id"]] += 1
        return received, finished

    def received(self, task_name: str) -> list[str]:
        """The ids of the ``task_name`` tasks the worker has received, in the order it received them."""
        return [m["id"] for m in _TASK_LINE.finditer(self.log()) if m["name"] == task_name and m["what"] == "received"]

    def names(self, task_ids: list[str]) -> dict[str, str]:
        """The task name of each of these ids the worker received (for failure messages)."""
        wanted = set(task_ids)
        return {m["id"]: m["name"] for m in _TASK_LINE.finditer(self.log()) if m["id"] in wanted}

    def unfinished(self, *task_ids: str) -> list[str]:
        """Those of ``task_ids`` (a send's router task has the notification's id) and of the tasks
        the worker has received that it has not finished yet."""
        received, finished = self.tasks()
        return [t for t in {**dict.fromkeys(task_ids, 1), **received} if finished[t] < max(received[t], 1)]

    def wait_finished(self, *task_ids: str, timeout: float = 15) -> None:
        """Wait until :meth:`unfinished` is empty."""
        try:
            wait_for(lambda: not self.unfinished(*task_ids), timeout=timeout, message="the worker to finish its tasks")
        except AssertionError as exc:
            left = self.unfinished(*task_ids)
            named = Counter(self.names(left).values())
            raise AssertionError(f"{exc}: {left} unfinished ({dict(named)}); log:\n{self.log()[-3000:]}") from None


_TASK_LINE = re.compile(r"(?:Task (?P<name>[\w.]+)\[(?P<id>[^\]]+)\] (?P<what>\w+))"
                        r"|(?:Discarding revoked task: (?P<dname>[\w.]+)\[(?P<did>[^\]]+)\])")
"""Celery's lines for a task received and finished (succeeded, failed, retry, rejected), and for one
it discarded unrun (revoked, or past its ``expires``: the log's periodic drains expire when a busy
worker reaches them late), which is finished too."""


def wait_idle(worker: Worker, *task_ids: str, timeout: float = 15) -> None:
    """Wait until ``worker`` has done everything it was asked to, and everything that led to.

    The positive signal to wait for before asserting that something did *not* happen. Every queue
    hands out its messages in order, so once a no-op marker task sent to each queue the worker
    consumes has run, everything queued before it has been received; then every received task
    (``task_ids`` included) must have finished. A task may queue more (the router queues
    deliveries), so rounds repeat until one sees no task but its own markers. The test process's
    settings must name the worker's broker.
    """
    from notifier.pipeline.producer import producer_app

    worker.wait_finished(*task_ids, timeout=timeout)
    while True:
        before = set(worker.tasks()[0])
        markers = [producer_app().send_task(*no_op_task(q), queue=q, task_id=uid("marker")).id
                   for q in worker.queues]
        worker.wait_finished(*markers, timeout=timeout)
        if set(worker.tasks()[0]) - before <= set(markers):
            return


def start_worker(env: dict[str, str] | None = None, queues: str | None = None, concurrency: int = 2) -> Worker:
    from notifier.pipeline.queues import QUEUES

    return Worker({**base_env(), **(env or {})}, queues or ",".join(QUEUES), concurrency).wait_ready()


def wait_for(predicate: Callable[[], Any], timeout: float = 10, interval: float = 0.05,
             message: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message} (last value: {value!r})")
        time.sleep(interval)


def reload_settings() -> None:
    """Make this process (a test session, a benchmark) read ``NOTIFIER_*`` again: settings, the producer's
    Celery app, channel clients."""
    from notifier.channels import close_all
    from notifier.config import reload_settings as reload
    from notifier.pipeline import producer

    reload()
    producer.producer_app.cache_clear()
    close_all()


@contextmanager
def use_env(values: dict[str, str]) -> Iterator[dict[str, str]]:
    """These ``NOTIFIER_*`` values in the test process while the block runs; the old ones after."""
    patch = pytest.MonkeyPatch()
    for key, value in values.items():
        patch.setenv(key, value)
    reload_settings()
    try:
        yield values
    finally:
        patch.undo()
        reload_settings()


def uid(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def overnight_window_around_now() -> tuple[str, str, str]:
    """A quiet window (zone, start, end) that crosses midnight and contains now, in a non-UTC zone."""
    for zone in ("Asia/Tokyo", "America/New_York", "Europe/Berlin"):
        local = dt.datetime.now(zoneinfo.ZoneInfo(zone))
        start = (local + dt.timedelta(hours=2)).strftime("%H:%M")
        end = (local + dt.timedelta(hours=1)).strftime("%H:%M")
        if start > end:
            return zone, start, end
    raise AssertionError("no zone gave an overnight window")


def quiet_hours_around_now() -> dict[str, str]:
    """Quiet hours (in UTC, the default time zone) from an hour ago to an hour from now."""
    now = dt.datetime.now(dt.UTC)
    return {"start": (now - dt.timedelta(hours=1)).strftime("%H:%M"),
            "end": (now + dt.timedelta(hours=1)).strftime("%H:%M")}


def dead_letters_naming(text: str) -> list[dict[str, Any]]:
    """The dead letters whose task arguments name ``text`` (a user id, an address)."""
    import json

    from notifier.state.deadletters import DeadLetters

    return [e for e in DeadLetters().list(1000) if text in json.dumps(e["args"])]
