"""Where the CPU went: per-process and machine meters (from /proc), and waiting for a quiet machine.

On a machine shared with other sessions, their work is the largest source of noise, so every figure
is taken after :func:`wait_quiet` and printed with :class:`CpuMeter`'s line, whose ``other work`` is
what the rest of the machine used meanwhile.
"""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import redis

from benchmarks.harness.database import DEFAULT_URL, client


class Measured(Protocol):
    """A subprocess the meter reads: its name in the line and its pid (its children are added)."""

    name: str

    @property
    def pid(self) -> int: ...


def machine() -> dict[str, Any]:
    info = redis.Redis.from_url(os.environ.get("NOTIFIER_REDIS_URL", DEFAULT_URL)).info("server")
    model = ""
    with contextlib.suppress(OSError, StopIteration):
        model = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name"))
    return {"cores": os.cpu_count(), "cpu": model, "python": platform.python_version(),
            "redis": info.get("redis_version"), "load": os.getloadavg()[0]}


def cpu_busy(seconds: float = 0.5) -> float:
    """Fraction of all cores busy over ``seconds`` (from /proc/stat)."""
    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(fields), fields[3] + fields[4]

    total0, idle0 = sample()
    time.sleep(seconds)
    total1, idle1 = sample()
    return 1 - (idle1 - idle0) / max(1, total1 - total0)


def wait_quiet(threshold: float = 0.15, timeout: float = 60) -> float:
    """Wait (at most ``timeout``) until other work leaves the cores idle, so runs compare; returns the
    busy fraction seen last."""
    deadline = time.monotonic() + timeout
    busy = cpu_busy()
    while busy > threshold and time.monotonic() < deadline:
        busy = cpu_busy(1.0)
    if busy > threshold:
        print(f"note: the machine is {busy:.0%} busy with other work; figures will be low")
    return busy


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used, 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu() -> float:
    """CPU seconds all cores have been busy since boot (from /proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def redis_cpu() -> float:
    info = client().info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def children(pid: int) -> list[int]:
    """Pids of a process's direct children (a worker's pool processes)."""
    try:
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False).stdout
    except OSError:
        return []
    return [int(p) for p in out.split()]


class CpuMeter:
    """CPU seconds used by Redis, by worker processes (with their pool children) and by this process,
    between ``start()`` and ``stop()``: which of them bounds a figure. ``other work`` is what the rest
    of the machine used meanwhile (other sessions' tests on a shared machine): the noise indicator."""

    def __init__(self, workers: Sequence[Measured] = (), extra: dict[str, int | Sequence[int]] | None = None) -> None:
        self.workers = list(workers)
        self.extra = extra or {}
        self.before: dict[str, float] = {}
        self.used: dict[str, float] = {}

    def _pids(self) -> dict[str, list[int]]:
        pids = {"this process": [os.getpid()]}
        for w in self.workers:
            pids[w.name] = [w.pid, *children(w.pid)]
        for name, pid in self.extra.items():
            pids[name] = [pid] if isinstance(pid, int) else list(pid)
        return pids

    def _sample(self) -> dict[str, float]:
        sample = {name: sum(process_cpu(p) for p in pids) for name, pids in self._pids().items()}
        sample["redis-server"] = redis_cpu()
        sample["machine"] = machine_cpu()
        sample["wall"] = time.monotonic()
        return sample

    def start(self) -> CpuMeter:
        self.before = self._sample()
        return self

    def stop(self) -> dict[str, float]:
        after = self._sample()
        self.used = {k: after[k] - self.before.get(k, after[k]) for k in after}
        ours = sum(v for k, v in self.used.items() if k not in ("machine", "wall"))
        self.used["other work"] = max(0.0, self.used.pop("machine") - ours)
        return self.used

    def line(self) -> str:
        wall = self.used.get("wall", 0) or 1
        return "CPU: " + ", ".join(f"{k} {v:.2f} s ({v / wall:.0%})" for k, v in self.used.items() if k != "wall") + \
            f" over {wall:.2f} s"


class RedisCommands:
    """Redis's own time per command between ``start()`` and ``stop()`` (``INFO commandstats``, which
    counts the commands a Lua script runs as well as the script call itself): what a figure bound by
    Redis spends its time on. Other clients of the same server are counted too, so read it on a quiet one."""

    def __init__(self) -> None:
        self.before: dict[str, tuple[int, int]] = {}
        self.used: dict[str, tuple[int, int]] = {}

    @staticmethod
    def _sample() -> dict[str, tuple[int, int]]:
        return {name.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"]))
                for name, v in client().info("commandstats").items()}

    def start(self) -> RedisCommands:
        self.before = self._sample()
        return self

    def stop(self) -> dict[str, tuple[int, int]]:
        after = self._sample()
        used = {name: (calls - self.before.get(name, (0, 0))[0], usec - self.before.get(name, (0, 0))[1])
                for name, (calls, usec) in after.items()}
        self.used = {name: cu for name, cu in used.items() if cu[0]}
        return self.used

    def lines(self, per: int, label: str, top: int = 12) -> list[str]:
        """The ``top`` commands by time, as calls and microseconds per ``label`` (``per`` of them)."""
        ranked = sorted(self.used.items(), key=lambda item: -item[1][1])[:top]
        return [f"{name:>18} {calls / per:6.2f} calls, {usec / per:6.2f} µs per {label}"
                for name, (calls, usec) in ranked]
