"""``--profile``: py-spy profiles of the workers, the gateway or this process while the runs go on.

Collapsed stacks go to ``benchmarks/results/profiles/<name>.txt``; :func:`top_functions` reads them
back into the inclusive and self share of busy samples per function, printed after the runs.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from benchmarks.harness.report import RESULTS
from tests.support.processes import ROOT


class Profiler:
    """``py-spy record`` of a process (and its children, with ``subprocesses``) until :meth:`stop`."""

    def __init__(self, pid: int, name: str, rate: int = 250, subprocesses: bool = True) -> None:
        self.path = RESULTS / "profiles" / f"{name}.txt"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        py_spy = Path(sys.executable).with_name("py-spy")
        self.proc = subprocess.Popen([str(py_spy), "record", "-p", str(pid), *(["-s"] if subprocesses else []),
                                      "-r", str(rate), "-f", "raw", "--nonblocking", "-o", str(self.path)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> Path:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        return self.path


def profile(enabled: bool, benchmark: str, processes: dict[str, int],
            subprocesses: bool = True) -> Callable[[], None]:
    """Start profilers for ``{label: pid}`` when enabled; the returned function stops them and prints."""
    if not enabled:
        return lambda: None
    profilers = {label: Profiler(pid, f"{benchmark}-{label}", subprocesses=subprocesses)
                 for label, pid in processes.items()}

    def stop() -> None:
        for label, profiler in profilers.items():
            path = profiler.stop()
            print(f"\n-- profile of {label} ({path.relative_to(ROOT)}) --\n{top_functions(path)}")

    return stop


def top_functions(path: Path, limit: int = 25, skip_idle: bool = True) -> str:
    """Inclusive and self share of samples per function, from a py-spy raw profile."""
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    idle = ("_brpop_read", "poll (selectors", "select (selectors", "wait (threading", "_wait_for_tstate_lock",
            "recv_into", "sleep", "read (multiprocessing", "get_message", "_recv (", "drain_events", "epoll")
    for line in _records(path):
        stack, _, count = line.rpartition(" ")
        frames = [f for f in stack.split(";") if not f.startswith("process ")] or ["?"]
        if skip_idle and any(mark in frames[-1] for mark in idle):
            continue
        n = int(count)
        total += n
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + n
        own[frames[-1]] = own.get(frames[-1], 0) + n
    if not total:
        return "(no busy samples)"
    rows = [f"busy samples: {total}", "incl%  self%  function"]
    for frame, n in sorted(inclusive.items(), key=lambda kv: -kv[1])[:limit]:
        rows.append(f"{100 * n / total:5.1f}  {100 * own.get(frame, 0) / total:5.1f}  {frame}")
    rows.append("-- top self time --")
    for frame, n in sorted(own.items(), key=lambda kv: -kv[1])[:limit]:
        rows.append(f"{100 * inclusive[frame] / total:5.1f}  {100 * n / total:5.1f}  {frame}")
    return "\n".join(rows)


def _records(path: Path) -> Iterable[str]:
    """py-spy raw lines are ``frame;frame;... count``; a frame may hold a newline, so rejoin them."""
    pending = ""
    for line in path.read_text(errors="replace").splitlines():
        pending += line
        stack, _, count = pending.rpartition(" ")
        if count.isdigit() and stack:
            yield pending
            pending = ""
