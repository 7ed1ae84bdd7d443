"""Subprocesses the tests and the benchmarks start (Celery workers, gateways), and their ports.

Each runs in a session of its own, so it can be stopped together with what it started (a worker's
pool children): SIGTERM to the main process first, for Celery's warm shutdown, then SIGKILL to the
whole group for whatever is left. Its output is kept in memory for failure messages and log checks.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Child:
    """A subprocess in its own session, started in the repository with ``env`` over this process's
    environment (less the names in ``drop``); ``output`` holds its lines as they come."""

    def __init__(self, cmd: Sequence[str], env: dict[str, str], name: str, drop: Iterable[str] = ()) -> None:
        self.name = name
        self.output: list[str] = []
        dropped = set(drop)
        inherited = {k: v for k, v in os.environ.items() if k not in dropped}
        self.proc = subprocess.Popen(list(cmd), cwd=ROOT, env={**inherited, **env}, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, start_new_session=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            self.on_line(line)

    def on_line(self, line: str) -> None:
        """Called with each line of output, in the reading thread (a subclass's readiness signal)."""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self, last: int | None = None) -> str:
        """Its output so far, or the ``last`` lines of it."""
        return "".join(self.output[-last:] if last else self.output)

    def kill(self) -> None:
        """SIGKILL the whole group (main process and children), as a crash would."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM, up to ``timeout`` seconds to exit, then :meth:`kill` for what is left."""
        if self.alive():
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout)
        self.kill()


class CeleryWorker(Child):
    """``celery -A <app> worker`` for ``queues``, named ``<node>-<random>@<host>``, without gossip,
    mingle or heartbeat: nothing here needs to hear of other workers, and they cost start-up time.

    The test process's metrics folder (set when it imports workers/) is not passed on: shared, every
    worker's counters would add up on each one's /metrics.
    """

    def __init__(self, env: dict[str, str], queues: Sequence[str], app: str = "workers", pool: str = "prefork",
                 concurrency: int = 2, node: str = "test", level: str = "INFO", extra: Sequence[str] = ()) -> None:
        self.queues = list(queues)
        self.node = f"{node}-{uuid.uuid4().hex[:8]}@%h"
        cmd = [sys.executable, "-m", "celery", "-A", app, "worker", "-Q", ",".join(self.queues), "-P", pool,
               "-c", str(concurrency), "--without-gossip", "--without-mingle", "--without-heartbeat",
               "-n", self.node, "-l", level, *extra]
        super().__init__(cmd, env, f"worker-{'-'.join(self.queues)}", drop=("PROMETHEUS_MULTIPROC_DIR",))


def no_op_task(queue: str) -> tuple[str, list[Any]]:
    """Name and arguments of a task that does nothing on a notifier queue (routing or delivering an
    empty batch, draining the delivery log, posting an empty webhook batch): a marker whose run shows the
    worker has consumed the queue up to it."""
    from notifier.pipeline.queues import (
        DRAIN_LOG,
        EVENT_WEBHOOK,
        EVENT_WEBHOOKS_QUEUE,
        LOG_QUEUE,
        ROUTE,
        ROUTER_QUEUE,
        deliver_task,
    )

    if queue == LOG_QUEUE:
        return DRAIN_LOG, []
    if queue == EVENT_WEBHOOKS_QUEUE:
        return EVENT_WEBHOOK, ["", "", {}]
    return (ROUTE, [[]]) if queue == ROUTER_QUEUE else (deliver_task(queue), [{}, []])


def wait_healthy(child: Child, url: str, timeout: float = 30) -> None:
    """Poll ``url`` (a gateway's ``/healthz``) until it answers 200; stop the child and fail with its
    output if it exits or ``timeout`` passes first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and child.alive():
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    child.stop()
    raise RuntimeError(f"{child.name} did not start:\n{child.log(60)}")
