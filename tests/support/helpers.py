"""Test support: an isolated Redis database per test session, real Celery workers, polling.

Each pytest session claims a Redis database nobody else is using (a lock key in it), so parallel test
runs on one machine never see each other's data; workers run as real ``celery worker`` subprocesses.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis

ROOT = Path(__file__).resolve().parents[2]
REDIS_HOST = os.environ.get("NOTIFIER_TEST_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("NOTIFIER_TEST_REDIS_PORT", "6379"))
_LOCK = "notifier-test-session-lock"
_session = uuid.uuid4().hex
_db: int | None = None


_private: int | None = None
_private_module: str | None = None


def _holder_alive(value: bytes | None) -> bool:
    """Whether the process named at the end of a lock value (``<owner>:<pid>``) still runs here."""
    if value is None:
        return False
    digits = re.search(rb"(\d+)$", value)
    if digits is None:
        return True
    try:
        os.kill(int(digits.group(1)), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def lock_value(owner: str) -> str:
    """A database lock value that names the holding process, so a crashed holder's lock is taken over."""
    return f"{owner}:{os.getpid()}"


def claim_free_db(owner: str, order: range = range(1, 16)) -> int:
    """A Redis database no live test session or benchmark holds, flushed and locked for ``owner``."""
    value = lock_value(owner)
    for db in order:
        client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db)
        claimed = bool(client.set(_LOCK, value, nx=True, ex=3600))
        if not claimed and not _holder_alive(client.get(_LOCK)):
            client.set(_LOCK, value, ex=3600)
            claimed = True
        if claimed:
            for key in client.scan_iter(count=1000):
                if key != _LOCK.encode():
                    client.delete(key)
            return db
    raise RuntimeError("every Redis database 1-15 is held by a running test session or benchmark")


def claim_db() -> int:
    """The first Redis database (1-15) no other test session holds; flushed for this session."""
    global _db
    if _db is None:
        _db = claim_free_db(_session)
    return _db


def private_env() -> dict[str, str]:
    """Store and broker in a database of their own, for a test whose worker must be the only one.

    One such database per session, flushed whenever a new test module starts using it (modules run
    one after another, so their workers never share it).
    """
    global _private, _private_module
    if _private is None:
        _private = claim_free_db(_session)
    module = os.environ.get("PYTEST_CURRENT_TEST", "").split("::", 1)[0]
    if module != _private_module:
        client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=_private)
        for key in client.scan_iter(count=1000):
            if key != _LOCK.encode():
                client.delete(key)
        _redeclare_streams(client)
        _private_module = module
    url = f"redis://{REDIS_HOST}:{REDIS_PORT}/{_private}"
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
        env["NOTIFIER_BROKER_URL"] = amqp_broker(int(env["NOTIFIER_REDIS_URL"].rsplit("/", 1)[1]))
    return env


def release_db() -> None:
    for db in (d for d in (_db, _private) if d is not None):
        client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db)
        if client.get(_LOCK) == lock_value(_session).encode():
            client.flushdb()


def amqp_broker(db: int) -> str:
    """A RabbitMQ virtual host of this session's own (``NOTIFIER_TEST_BROKER=amqp``)."""
    vhost = f"notifier-test-{db}"
    subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], capture_output=True, timeout=60)
    subprocess.run(["rabbitmqctl", "-q", "add_vhost", vhost], capture_output=True, timeout=60, check=True)
    subprocess.run(["rabbitmqctl", "-q", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"],
                   capture_output=True, timeout=60, check=True)
    return f"amqp://guest:guest@127.0.0.1:5672/{vhost}"


_broker: str | None = None


def base_env() -> dict[str, str]:
    """Environment for the test process and every worker/gateway subprocess it starts."""
    global _broker
    db = claim_db()
    url = f"redis://{REDIS_HOST}:{REDIS_PORT}/{db}"
    if _broker is None:
        _broker = amqp_broker(db) if os.environ.get("NOTIFIER_TEST_BROKER") == "amqp" else url
    return {
        "NOTIFIER_REDIS_URL": url,
        "NOTIFIER_BROKER_URL": _broker,
        "NOTIFIER_KEY_PREFIX": "nt",
        "NOTIFIER_RETRY_BACKOFF": "0.2",
        "NOTIFIER_RETRY_BACKOFF_MAX": "1",
        "NOTIFIER_MAX_RETRIES": "3",
        "NOTIFIER_COUNTDOWN_MAX": "2",
        "NOTIFIER_SCHEDULER_INTERVAL": "0.2",
        "NOTIFIER_VISIBILITY_TIMEOUT": "30",
        "NOTIFIER_RATE_LIMITS": "realtime=1000/60,email=3/60,fcm=1000/60,apns=1000/60,webpush=1000/60",
        "NOTIFIER_SECRET_KEY": "test-secret-key-0123456789abcdef",
        "NOTIFIER_API_KEY": "test-api-key",
        "NOTIFIER_API_RATE_LIMIT": "100000/60",
    }


class Worker:
    """A running ``celery -A workers worker`` subprocess; its output is kept for failure messages."""

    def __init__(self, env: dict[str, str], queues: str, concurrency: int = 2) -> None:
        self.env = env
        self.queues = queues.split(",")
        self.name = f"test-{uuid.uuid4().hex[:8]}@%h"
        self.output: list[str] = []
        cmd = [sys.executable, "-m", "celery", "-A", "workers", "worker", "-Q", queues, "-c", str(concurrency),
               "-P", "prefork", "--without-gossip", "--without-mingle", "--without-heartbeat",
               "-n", self.name, "-l", env.get("NOTIFIER_LOG_LEVEL", "INFO")]
        # The test process's own metrics folder (set when it imports workers/) is not the worker's:
        # shared, every worker's counters would add up on each one's /metrics.
        inherited = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env={**inherited, **env}, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self._ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            if " ready." in line:
                self._ready.set()

    def wait_ready(self, timeout: float = 60) -> Worker:
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.1):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("worker did not start:\n" + "".join(self.output[-50:]))
        return self

    def log(self) -> str:
        return "".join(self.output)

    def tasks(self) -> tuple[Counter[str], Counter[str]]:
        """How many times each task id was received, and how many times it finished (succeeded,
        failed, retried or was rejected), from Celery's own log lines."""
        received: Counter[str] = Counter()
        finished: Counter[str] = Counter()
        for match in _TASK_LINE.finditer(self.log()):
            (received if match["what"] == "received" else finished)[match["id"]] += 1
        return received, finished

    def received(self, task_name: str) -> list[str]:
        """The ids of the ``task_name`` tasks the worker has received, in the order it received them."""
        return [m["id"] for m in _TASK_LINE.finditer(self.log()) if m["name"] == task_name and m["what"] == "received"]

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
            raise AssertionError(f"{exc}: {self.unfinished(*task_ids)} unfinished; log:\n{self.log()[-3000:]}") from None

    def kill(self) -> None:
        """SIGKILL the whole worker (main process and pool children), as a crash would."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                pass
        self.kill()


_TASK_LINE = re.compile(r"Task (?P<name>[\w.]+)\[(?P<id>[^\]]+)\] (?P<what>\w+)")


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
    from notifier.pipeline.queues import CHANNELS, ROUTE, ROUTER_QUEUE, deliver_task

    no_op = {ROUTER_QUEUE: (ROUTE, [[]]), **{c: (deliver_task(c), [{}, []]) for c in CHANNELS}}
    worker.wait_finished(*task_ids, timeout=timeout)
    while True:
        before = set(worker.tasks()[0])
        markers = [producer_app().send_task(no_op[q][0], args=no_op[q][1], queue=q, task_id=uid("marker")).id
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
    """Make the test process read ``NOTIFIER_*`` again: settings, the producer's Celery app, channel clients."""
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
