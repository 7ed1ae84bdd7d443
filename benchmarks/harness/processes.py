"""The benchmark's subprocesses: workers and the gateway, and Python functions spawned beside it.

Workers and the gateway build on the tests' subprocess helpers (``tests/support/processes.py``: a
session of its own, output kept, SIGTERM then SIGKILL to the group) and are stopped when this process
exits; what differs from the tests' is when each is ready: a benchmark worker once probe tasks ran
(so its pool is warm), the gateway (or a server it is measured against) once ``/healthz`` answers.
:class:`Spawned` runs the load generator and the push peers in processes of their own, off this
one's GIL and event loop.
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Self

from benchmarks.harness.drain import drained
from tests.support.processes import CeleryWorker, Child, free_port, no_op_task, wait_healthy

_started: list[Child] = []


def _stop_all(*_: Any) -> None:
    """At exit, stop what still runs (a stopped one is left alone: its pid may be another's by now)."""
    for child in _started:
        if child.alive():
            child.stop(5)


atexit.register(_stop_all)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


class Worker(CeleryWorker):
    """``celery -A <app> worker -Q <queues> -P <pool> -c <n>`` at WARNING, ready once it has run probe tasks."""

    def __init__(self, env: dict[str, str], queues: Sequence[str], app: str = "workers", pool: str = "prefork",
                 concurrency: int = 2, extra: Sequence[str] = ()) -> None:
        super().__init__(env, queues, app=app, pool=pool, concurrency=concurrency, node="bench", level="WARNING",
                         extra=extra)
        _started.append(self)

    def wait_ready(self, probe: Callable[[str], None], timeout: float = 60) -> Worker:
        """Send harmless tasks to each queue and wait until they ran: then the pool is warm."""
        for queue in self.queues:
            for _ in range(4):
                probe(queue)
        deadline = time.monotonic() + timeout
        while not drained(self.queues):
            if not self.alive() or time.monotonic() > deadline:
                out = self.log(40)
                self.stop()
                raise RuntimeError(f"worker for {self.queues} did not start:\n{out}")
            time.sleep(0.05)
        return self


def notifier_probe(queue: str) -> None:
    """A task that does nothing on a notifier queue (an empty batch)."""
    from notifier.pipeline.producer import producer_app

    name, args = no_op_task(queue)
    producer_app().send_task(name, args=args, queue=queue, ignore_result=True)


def start_workers(env: dict[str, str], queues: Sequence[str], **options: Any) -> Worker:
    return Worker(env, queues, **options).wait_ready(notifier_probe)


class Server(Child):
    """A live-connection server on ``port``, ready once ``/healthz`` answers 200."""

    port: int

    def wait_ready(self, timeout: float = 30) -> Self:
        wait_healthy(self, f"http://127.0.0.1:{self.port}/healthz", timeout)
        return self

    def rss(self) -> int:
        """Resident memory in bytes."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0


class Gateway(Server):
    """``uvicorn notifier.gateway:app`` on uvloop and httptools, one process.

    ``http`` and ``ws`` are uvicorn's ``--http`` and ``--ws`` (notifier's, as ``notifier gateway`` runs them,
    unless told); ``tuning`` are options of
    ``benchmarks._tuned_gateway``, which switch a piece of the gateway's GC handling off for a comparison.
    """

    def __init__(self, env: dict[str, str], port: int | None = None, ws: str | None = None,
                 tuning: Sequence[str] = (), http: str | None = None) -> None:
        from notifier.gateway.tuning import HTTP_PROTOCOL, WS_PROTOCOL

        self.port = port or free_port()
        args = ["notifier.gateway:app", "--host", "127.0.0.1", "--port", str(self.port), "--loop", "uvloop",
                "--http", http or HTTP_PROTOCOL, "--log-level", "warning", "--no-access-log", "--backlog", "4096",
                "--timeout-graceful-shutdown", "2", "--ws", ws or WS_PROTOCOL]
        launcher = ["benchmarks._tuned_gateway", *tuning, "--"] if tuning else ["uvicorn"]
        super().__init__([sys.executable, "-m", *launcher, *args], env, "gateway")
        _started.append(self)


class FloorServer(Server):
    """``python -m benchmarks.floor_server``: the least a server must do per live event, the gateway's floor."""

    def __init__(self, env: dict[str, str], port: int | None = None) -> None:
        self.port = port or free_port()
        super().__init__([sys.executable, "-m", "benchmarks.floor_server", "--port", str(self.port)], env, "floor")
        _started.append(self)


class SocketIOServer(Server):
    """``python -m benchmarks.peers.socketio_server``: python-socketio with its Redis manager, the peer."""

    def __init__(self, env: dict[str, str], port: int | None = None) -> None:
        self.port = port or free_port()
        super().__init__([sys.executable, "-m", "benchmarks.peers.socketio_server", "--port", str(self.port)], env,
                         "socketio")
        _started.append(self)


class Spawned:
    """``target(*args, conn)`` in a freshly spawned Python process, talked to over the pipe ``conn``."""

    def __init__(self, target: Callable[..., None], *args: Any) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.proc = context.Process(target=target, args=(*args, child), daemon=True)
        self.proc.start()

    @property
    def pid(self) -> int:
        assert self.proc.pid is not None, "started in __init__"
        return self.proc.pid

    def stop(self, command: object = "stop") -> None:
        """Send ``command``, wait for the answer, then for the process (killed if it lingers)."""
        with contextlib.suppress(OSError, EOFError):
            self.conn.send(command)
            self.conn.poll(30)
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()
