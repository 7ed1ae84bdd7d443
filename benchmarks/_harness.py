"""What every benchmark shares: a dedicated Redis database, worker and gateway subprocesses, the
same-run baselines (a no-op Celery task, raw pipelined XADD/PUBLISH, raw Pub/Sub latency) and the
report (printed, and saved as JSON under ``benchmarks/results/`` for ``benchmarks.plot``).

Benchmarks flush their database, so they refuse DB 0 and the DBs test sessions claim (1-13), and
they talk to 127.0.0.1 only. Every subprocess is started in its own session and killed on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import orjson
import redis

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_URL = "redis://127.0.0.1:6379/14"
KEY_PREFIX = "bench"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
TEST_LOCK = "notifier-test-session-lock"
"""Test sessions skip a database holding this key (tests/support/helpers.py); holding it keeps them out."""
SEP = "\x06\x16"
PRIORITIES = (0, 3, 6, 9)
"""kombu's Redis transport keeps one list per queue and priority step: ``name``, ``name\\x06\\x163``..."""

_children: list[Process] = []


# Environment ----------------------------------------------------------------------------------
def bench_env(**extra: str) -> dict[str, str]:
    """Settings for this process and every subprocess; applied to ``os.environ`` and reloaded."""
    url = os.environ.get("NOTIFIER_REDIS_URL", DEFAULT_URL)
    check_url(url)
    env = {
        "NOTIFIER_REDIS_URL": url,
        "NOTIFIER_BROKER_URL": url,
        "NOTIFIER_RESULT_BACKEND": url,
        "NOTIFIER_KEY_PREFIX": KEY_PREFIX,
        "NOTIFIER_RATE_LIMITS": ("realtime=1000000/60,email=1000000/60,fcm=1000000/60,apns=1000000/60,"
                                 "webpush=1000000/60"),
        "NOTIFIER_LOG_LEVEL": "WARNING",
        "NOTIFIER_SECRET_KEY": "benchmark-secret-key-0123456789abcdef",
        "NOTIFIER_API_KEY": "benchmark-api-key",
        "NOTIFIER_VISIBILITY_TIMEOUT_SECONDS": "300",
    }
    env.update(extra)
    os.environ.update(env)
    from notifier.channels import close_all
    from notifier.config import reload_settings
    from notifier.pipeline import producer

    reload_settings()
    producer.producer_app.cache_clear()
    close_all()
    return env


def check_url(url: str) -> None:
    """Refuse anything but a dedicated database on the loopback interface."""
    parsed = urlparse(url)
    db = int((parsed.path or "/0").lstrip("/") or 0)
    if parsed.hostname not in LOOPBACK:
        sys.exit(f"benchmarks talk to 127.0.0.1 only; NOTIFIER_REDIS_URL={url} is not local")
    if db <= 13:
        sys.exit(f"benchmarks flush their database: NOTIFIER_REDIS_URL={url} uses DB {db}, which is the "
                 f"default or a test session's; use a dedicated one (default {DEFAULT_URL})")


def client() -> redis.Redis:
    return redis.Redis.from_url(os.environ["NOTIFIER_REDIS_URL"], decode_responses=True)


def claim_and_flush() -> None:
    """Flush the benchmark database and hold the key test sessions look for, so none picks it."""
    r = client()
    holder = r.get(TEST_LOCK)
    if holder is not None and not holder.startswith("benchmark"):
        sys.exit("a test session holds this Redis database; pick another NOTIFIER_REDIS_URL")
    r.flushdb()
    mine = f"benchmark-{os.getpid()}"
    r.set(TEST_LOCK, mine, ex=3600)
    atexit.register(_release, mine)


def _release(mine: str) -> None:
    """Give the database back to test sessions when the benchmark ends (its data is left for a look)."""
    try:
        r = client()
        if r.get(TEST_LOCK) == mine:
            r.delete(TEST_LOCK)
    except redis.RedisError:
        pass


def clear_data() -> None:
    """Delete notifier's keys between runs (the broker's queues and bindings stay)."""
    r = client()
    batch: list[str] = []
    for key in r.scan_iter(match=f"{KEY_PREFIX}:*", count=5000):
        batch.append(key)
        if len(batch) >= 5000:
            r.unlink(*batch)
            batch = []
    if batch:
        r.unlink(*batch)


def machine() -> dict[str, Any]:
    info = redis.Redis.from_url(os.environ.get("NOTIFIER_REDIS_URL", DEFAULT_URL)).info("server")
    model = ""
    try:
        model = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
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
    busy fraction seen last. Other sessions on a shared machine are the largest source of noise."""
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


class CpuMeter:
    """CPU seconds used by Redis, by worker processes (with their pool children) and by this process,
    between ``start()`` and ``stop()``: which of them bounds a figure. ``other work`` is what the rest
    of the machine used meanwhile (other sessions' tests on a shared machine): the noise indicator."""

    def __init__(self, workers: Sequence[Process] = (), extra: dict[str, int] | None = None) -> None:
        self.workers = list(workers)
        self.extra = extra or {}
        self.before: dict[str, float] = {}
        self.used: dict[str, float] = {}

    def _pids(self) -> dict[str, list[int]]:
        pids = {"this process": [os.getpid()]}
        for w in self.workers:
            pids[w.name] = [w.pid, *children(w.pid)]
        for name, pid in self.extra.items():
            pids[name] = [pid]
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


def children(pid: int) -> list[int]:
    """Pids of a process's direct children (a worker's pool processes)."""
    try:
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    except OSError:
        return []
    return [int(p) for p in out.split()]


# Subprocesses ---------------------------------------------------------------------------------
class Process:
    """A subprocess in its own session, its output in a log file, killed with its children on exit."""

    def __init__(self, cmd: Sequence[str], env: dict[str, str], name: str) -> None:
        self.name = name
        self.log_path = Path(tempfile.mkstemp(prefix=f"bench-{name}-", suffix=".log")[1])
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(list(cmd), cwd=ROOT, env={**os.environ, **env}, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        _children.append(self)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self, last: int = 40) -> str:
        return "".join(self.log_path.read_text(errors="replace").splitlines(True)[-last:])

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 15) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)
        self._log.close()
        if self in _children:
            _children.remove(self)


def _stop_all(*_: Any) -> None:
    for child in list(_children):
        child.stop(5)


atexit.register(_stop_all)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


class Worker(Process):
    """``celery -A <app> worker -Q <queues> -P <pool> -c <n>``, ready once it has run probe tasks."""

    def __init__(self, env: dict[str, str], queues: Sequence[str], app: str = "workers", pool: str = "prefork",
                 concurrency: int = 2, extra: Sequence[str] = ()) -> None:
        self.queues = list(queues)
        self.app_name = app
        cmd = [sys.executable, "-m", "celery", "-A", app, "worker", "-Q", ",".join(queues), "-P", pool,
               "-c", str(concurrency), "--without-gossip", "--without-mingle", "--without-heartbeat",
               "-n", f"bench-{uuid.uuid4().hex[:6]}@%h", "-l", "WARNING", *extra]
        super().__init__(cmd, env, f"worker-{'-'.join(queues)}")

    def wait_ready(self, probe: Callable[[str], None], timeout: float = 60) -> Worker:
        """Send harmless tasks to each queue and wait until they ran: then the pool is warm."""
        for queue in self.queues:
            for _ in range(4):
                probe(queue)
        deadline = time.monotonic() + timeout
        while not drained(self.queues):
            if not self.alive() or time.monotonic() > deadline:
                out = self.output()
                self.stop()
                raise RuntimeError(f"worker for {self.queues} did not start:\n{out}")
            time.sleep(0.05)
        return self


def notifier_probe(queue: str) -> None:
    """A task that does nothing on each notifier queue (an empty batch)."""
    from notifier.pipeline.producer import producer_app
    from notifier.pipeline.queues import ROUTE, ROUTER_QUEUE, deliver_task

    if queue == ROUTER_QUEUE:
        producer_app().send_task(ROUTE, args=[[]], queue=queue, ignore_result=True)
    else:
        producer_app().send_task(deliver_task(queue), args=[{}, []], queue=queue, ignore_result=True)


def start_workers(env: dict[str, str], queues: Sequence[str], **options: Any) -> Worker:
    return Worker(env, queues, **options).wait_ready(notifier_probe)


def drained(queues: Iterable[str], r: redis.Redis | None = None) -> bool:
    """No message waiting in these queues and none delivered but unacknowledged.

    notifier's task queues are streams (``notifier/pipeline/streams_transport.py``); others, like the no-op
    baseline's, are kombu's lists with its ``unacked`` hash.
    """
    from notifier.pipeline.queues import QUEUES
    from notifier.pipeline.streams_transport import in_flight, waiting

    r = r or client()
    streams = tuple(q for q in queues if q in QUEUES)
    if any(waiting(r, q) for q in streams) or in_flight(r, streams):
        return False
    pipe = r.pipeline(transaction=False)
    for queue in (q for q in queues if q not in QUEUES):
        for p in PRIORITIES:
            pipe.llen(queue if p == 0 else f"{queue}{SEP}{p}")
    pipe.hlen("unacked")
    return not any(pipe.execute())


def wait_drained(queues: Sequence[str], timeout: float, interval: float = 0.002,
                 workers: Sequence[Process] = ()) -> float:
    """Block until the queues stay drained for two polls; returns the time of the first of them.

    Two polls: kombu's list transport (the no-op baseline's) moves a fetched message to the unacked
    hash in a second step, so a single poll could fall between the two.
    """
    r = client()
    deadline = time.monotonic() + timeout
    first: float | None = None
    while True:
        now = time.time()
        if drained(queues, r):
            if first is not None:
                return first
            first = now
        else:
            first = None
        if time.monotonic() > deadline:
            raise TimeoutError(f"queues {list(queues)} not drained after {timeout}s")
        for w in workers:
            if not w.alive():
                raise RuntimeError(f"{w.name} died:\n{w.output()}")
        time.sleep(interval)


# Observing inboxes ----------------------------------------------------------------------------
def inbox_writes(user_ids: Sequence[str], chunk: int = 5000) -> tuple[int, float]:
    """How many inbox entries these users have, and when the newest was written (epoch seconds).

    A stream entry id starts with the Redis server's clock in ms, so the newest id is the time of the
    last inbox write, read after the run without observing (and slowing) the run itself.
    """
    from notifier.redis import store

    r = client()
    keys = store.get_keys()
    total, newest = 0, 0
    for start in range(0, len(user_ids), chunk):
        pipe = r.pipeline(transaction=False)
        for user in user_ids[start:start + chunk]:
            pipe.xlen(keys.inbox(user))
            pipe.xrevrange(keys.inbox(user), count=1)
        replies = pipe.execute()
        for length, last in zip(replies[::2], replies[1::2]):
            total += length
            if last:
                newest = max(newest, int(last[0][0].split("-")[0]))
    return total, newest / 1000


def wait_inboxes(user_ids: Sequence[str], expected: int, queues: Sequence[str], timeout: float,
                 workers: Sequence[Process] = ()) -> float:
    """Wait for the pipeline to finish, check every inbox write happened, return the last one's time."""
    wait_drained(queues, timeout, workers=workers)
    count, newest = inbox_writes(user_ids)
    if count != expected:
        raise RuntimeError(f"expected {expected} inbox entries, found {count}")
    return newest


# Baselines ------------------------------------------------------------------------------------
def start_noop_worker(env: dict[str, str], pool: str = "prefork", concurrency: int = 2,
                      extra: Sequence[str] = ()) -> Worker:
    from benchmarks import noop

    def probe(queue: str) -> None:
        noop.app.send_task(noop.TASK, queue=queue, ignore_result=True)

    return Worker(env, [noop.QUEUE], app="benchmarks.noop", pool=pool, concurrency=concurrency,
                  extra=extra).wait_ready(probe)


def noop_rate(count: int, worker: Worker, timeout: float = 120) -> float:
    """No-op tasks per second: ``send_task`` in a loop, until the queue is drained and acked."""
    from benchmarks import noop

    send = noop.app.send_task
    start = time.time()
    for i in range(count):
        send(noop.TASK, args=[i], queue=noop.QUEUE, ignore_result=True)
    end = wait_drained([noop.QUEUE], timeout, workers=[worker])
    return count / (end - start)


SAMPLE_PAYLOAD = orjson.dumps({
    "id": "0" * 32, "type": "benchmark", "title": "A benchmark notification", "body": "Something happened.",
    "data": {"order_id": "12345"}, "priority": "normal", "timestamp": "2026-01-01T00:00:00Z"}).decode()


def raw_write_rates(count: int = 100_000, pipeline: int = 1000) -> dict[str, float]:
    """redis-py pipelined ops/s: XADD alone, PUBLISH alone, and XADD+PUBLISH pairs (one per user)."""
    r = client()
    rates: dict[str, float] = {}
    for kind in ("xadd", "publish", "pair"):
        r.delete(*[f"rawbench:{{u{i}}}:s" for i in range(pipeline)])
        start = time.perf_counter()
        for base in range(0, count, pipeline):
            pipe = r.pipeline(transaction=False)
            for i in range(pipeline):
                if kind in ("xadd", "pair"):
                    pipe.xadd(f"rawbench:{{u{i}}}:s", {"nid": str(base + i), "n": SAMPLE_PAYLOAD})
                if kind in ("publish", "pair"):
                    pipe.publish(f"rawbench:{{u{i}}}:live", SAMPLE_PAYLOAD)
            pipe.execute()
        rates[kind] = count / (time.perf_counter() - start)
    r.delete(*[f"rawbench:{{u{i}}}:s" for i in range(pipeline)])
    return rates


def raw_pubsub_latency(rate: float = 200, seconds: float = 5) -> list[float]:
    """Publish-to-receive latencies (ms) of raw redis-py Pub/Sub at ``rate`` messages/s."""
    r = client()
    sub = r.pubsub(ignore_subscribe_messages=True)
    sub.subscribe("rawbench:latency")
    while sub.get_message(timeout=1) is None and not sub.subscribed:
        pass
    samples: list[float] = []
    total = int(rate * seconds)

    def listen() -> None:
        while len(samples) < total:
            message = sub.get_message(timeout=2)
            if message is None:
                return
            samples.append((time.perf_counter_ns() - int(message["data"])) / 1e6)

    reader = threading.Thread(target=listen, daemon=True)
    reader.start()
    pace(total, rate, lambda i: r.publish("rawbench:latency", str(time.perf_counter_ns())))
    reader.join(10)
    sub.close()
    return samples


def pace(count: int, rate: float, action: Callable[[int], Any]) -> None:
    """Call ``action(i)`` ``count`` times at ``rate`` per second (on an absolute schedule, no drift)."""
    start = time.perf_counter()
    for i in range(count):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        action(i)


# Numbers and reports --------------------------------------------------------------------------
def percentile(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def latency_summary(samples: Sequence[float]) -> dict[str, float]:
    return {f"p{q:g}": percentile(samples, q) for q in (50, 90, 99, 99.9)} | {
        "max": max(samples) if samples else float("nan"), "n": len(samples)}


@dataclass
class Figure:
    """One measured quantity over several runs, with its baseline from the same runs."""

    name: str
    unit: str
    values: list[float] = field(default_factory=list)
    baseline_name: str = ""
    baseline_unit: str = ""
    baselines: list[float] = field(default_factory=list)
    target: str = ""
    higher_is_better: bool = True

    def add(self, value: float, baseline: float | None = None) -> None:
        self.values.append(value)
        if baseline is not None:
            self.baselines.append(baseline)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def ratios(self) -> list[float]:
        return [v / b for v, b in zip(self.values, self.baselines) if b]

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "unit": self.unit, "values": self.values,
                               "median": self.median, "min": min(self.values), "max": max(self.values),
                               "target": self.target}
        if self.baselines:
            out |= {"baseline": self.baseline_name, "baseline_unit": self.baseline_unit,
                    "baselines": self.baselines, "baseline_median": statistics.median(self.baselines),
                    "ratio_median": statistics.median(self.ratios), "ratios": self.ratios}
        return out

    def line(self) -> str:
        text = (f"{self.name}: median {fmt(self.median)} {self.unit} "
                f"(min {fmt(min(self.values))}, max {fmt(max(self.values))}, runs {len(self.values)})")
        if self.baselines:
            text += (f"\n    baseline {self.baseline_name}: median {fmt(statistics.median(self.baselines))} "
                     f"{self.baseline_unit}; ratio median {statistics.median(self.ratios):.2f}x "
                     f"(min {min(self.ratios):.2f}x, max {max(self.ratios):.2f}x)")
        if self.target:
            text += f"\n    target: {self.target}"
        return text


def fmt(value: float) -> str:
    if value != value:
        return "nan"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def report(benchmark: str, figures: Sequence[Figure], extra: dict[str, Any] | None = None,
           command: str | None = None) -> Path:
    """Print the figures and save them (with the machine and any extra series) for the plot."""
    info = machine()
    print(f"\n== {benchmark} on {info['cores']} cores ({info['cpu']}), Redis {info['redis']}, "
          f"Python {info['python']}")
    for figure in figures:
        print(figure.line())
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{benchmark}.json"
    data = {"benchmark": benchmark, "command": command or "python -m " + " ".join(
        [f"benchmarks.{benchmark}", *sys.argv[1:]]), "machine": info, "at": time.strftime("%Y-%m-%d %H:%M:%S"),
            "figures": [f.summary() for f in figures], **(extra or {})}
    path.write_text(json.dumps(data, indent=1))
    print(f"saved {path.relative_to(ROOT)}")
    return path


def arguments(description: str, runs: int = 3) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--runs", type=int, default=runs, help="repetitions (median and min-max are reported)")
    parser.add_argument("--profile", action="store_true",
                        help="record py-spy profiles of the workers and this process (slows the runs a little)")
    return parser


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


def users(prefix: str, count: int) -> list[str]:
    return [f"{prefix}-{i}" for i in range(count)]


# Profiling ------------------------------------------------------------------------------------
class Profiler:
    """``py-spy record`` of a process and its children while the runs go on (``--profile``).

    Writes collapsed stacks to ``benchmarks/results/profiles/<name>.txt``; :func:`top_functions`
    reads them back.
    """

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


# Gateway and live clients ---------------------------------------------------------------------
def raise_open_files() -> int:
    """Raise this process's open-file limit to its hard limit (children inherit it); returns it."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Gateway(Process):
    """``uvicorn notifier.gateway:app`` on uvloop and httptools, one process, ready once /healthz is 200."""

    def __init__(self, env: dict[str, str], port: int | None = None, gc_threshold: str | None = None) -> None:
        from notifier.gateway.ws_protocol import IMPORT_PATH

        self.port = port or free_port()
        if gc_threshold:
            env = {**env, "NOTIFIER_GATEWAY_GC_THRESHOLDS": gc_threshold}
        args = ["notifier.gateway:app", "--host", "127.0.0.1", "--port", str(self.port), "--loop", "uvloop",
                "--http", "httptools", "--log-level", "warning", "--no-access-log", "--backlog", "4096",
                "--timeout-graceful-shutdown", "2", "--ws", IMPORT_PATH]
        super().__init__([sys.executable, "-m", "uvicorn", *args], env, "gateway")

    def wait_ready(self, timeout: float = 30) -> Gateway:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.alive():
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        out = self.output()
        self.stop()
        raise RuntimeError(f"gateway did not start:\n{out}")

    def rss(self) -> int:
        """Resident memory in bytes."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0


@dataclass
class Received:
    """A live notification as a client saw it: when, its id, and the producer's send time if it has one."""

    at: float
    notification_id: str
    sent_at: float | None


class _SSEProtocol(asyncio.Protocol):
    """One SSE connection as a bare asyncio protocol (HTTP head, chunked framing, events): the load
    generator shares the cores with what it measures, so it must cost as little per event as it can."""

    def __init__(self, request: bytes, on_event: Callable[[str, dict[str, Any]], None], connected: Any,
                 done: Any) -> None:
        self.request, self.on_event, self.connected, self.done = request, on_event, connected, done
        self.raw = b""
        self.events = b""
        self.head = True

    def connection_made(self, transport: Any) -> None:
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.raw += data
        if self.head:
            end = self.raw.find(b"\r\n\r\n")
            if end < 0:
                return
            head, self.raw = self.raw[:end], self.raw[end + 4:]
            status = int(head.split(b" ", 2)[1])
            if status != 200 or b"transfer-encoding: chunked" not in head.lower():
                self._finish(RuntimeError(f"SSE answered {status}: {self.raw[:500].decode(errors='replace')}"))
                return
            self.head = False
        while True:
            line_end = self.raw.find(b"\r\n")
            if line_end < 0:
                break
            size = int(self.raw[:line_end], 16)
            if size == 0:
                self._finish(None)
                return
            if len(self.raw) < line_end + 2 + size + 2:
                break
            self.events += self.raw[line_end + 2:line_end + 2 + size]
            self.raw = self.raw[line_end + 2 + size + 2:]
        *complete, self.events = self.events.split(b"\n\n")
        for raw in complete:
            kind, payload = "message", b""
            for line in raw.split(b"\n"):
                if line.startswith(b"event: "):
                    kind = line[7:].decode()
                elif line.startswith(b"data: "):
                    payload += line[6:]
            if kind == "connected":
                self.connected.set()
            elif payload:
                self.on_event(kind, orjson.loads(payload))

    def eof_received(self) -> None:
        self._finish(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish(exc)

    def _finish(self, exc: BaseException | None) -> None:
        if self.done.done():
            return
        if exc is None:
            self.done.set_result(None)
        else:
            self.done.set_exception(exc)


async def sse_client(port: int, token: str, on_event: Callable[[str, dict[str, Any]], None],
                     connected: Any) -> None:
    """One SSE connection: calls ``on_event(kind, data)`` per event and sets ``connected`` (an
    asyncio.Event) at the ``connected`` event; returns when the server ends the stream."""
    import asyncio

    loop = asyncio.get_running_loop()
    done = loop.create_future()
    request = (f"GET /v1/stream?token={token} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               "Accept: text/event-stream\r\n\r\n").encode()
    transport, _ = await loop.create_connection(lambda: _SSEProtocol(request, on_event, connected, done),
                                                "127.0.0.1", port)
    try:
        await done
    finally:
        transport.close()


async def ws_client(port: int, token: str, on_event: Callable[[str, dict[str, Any]], None],
                    connected: Any) -> None:
    """One WebSocket connection to ``/v1/ws``; frames are JSON with a ``type``."""
    import websockets

    async with websockets.connect(f"ws://127.0.0.1:{port}/v1/ws?token={token}", open_timeout=60,
                                  ping_interval=None, max_queue=64, compression=None) as ws:
        async for message in ws:
            frame = orjson.loads(message)
            kind = frame.get("type")
            if kind == "connected":
                connected.set()
            elif kind == "notification":
                on_event(kind, frame["notification"])


def _listener_main(kind: str, port: int, tokens: list[str], conn: Any, parallel: int) -> None:
    """The load generator (a separate process): open every connection, report, then record what
    arrives until told to hand it over."""
    import asyncio

    import uvloop

    raise_open_files()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        received: list[Received] = []
        failures: list[str] = []
        client = sse_client if kind == "sse" else ws_client

        def on_event(event: str, data: dict[str, Any]) -> None:
            if event == "notification":
                received.append(Received(time.time(), data.get("id", ""), (data.get("data") or {}).get("sent_at")))

        gate = asyncio.Semaphore(parallel)
        tasks = []

        async def one(token: str) -> None:
            ready = asyncio.Event()
            async with gate:
                task = asyncio.ensure_future(client(port, token, on_event, ready))
                waiter = asyncio.ensure_future(ready.wait())
                done, _ = await asyncio.wait({task, waiter}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
                if waiter not in done:
                    waiter.cancel()
                    failures.append(repr(task.exception()) if task.done() and task.exception() else "timeout")
                    task.cancel()
                    return
            tasks.append(task)

        start = time.monotonic()
        await asyncio.gather(*(one(t) for t in tokens))
        conn.send(("connected", len(tasks), time.monotonic() - start, failures[:5], len(failures)))
        while True:
            command = await loop.run_in_executor(None, conn.recv)
            if command[0] == "collect":
                expected, timeout = command[1], command[2]
                deadline = time.monotonic() + timeout
                while len(received) < expected and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
                conn.send(("received", [(r.at, r.notification_id, r.sent_at) for r in received]))
                received.clear()
            elif command[0] == "stop":
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                conn.send(("stopped",))
                return

    uvloop.run(main())


class Listeners:
    """Live clients in another process: ``kind`` is ``"sse"`` or ``"ws"``, one connection per token."""

    def __init__(self, kind: str, port: int, tokens: list[str], parallel: int = 200) -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.proc = context.Process(target=_listener_main, args=(kind, port, tokens, child, parallel), daemon=True)
        self.proc.start()

    def wait_connected(self, timeout: float = 300) -> tuple[int, float, list[str], int]:
        """(connections open, seconds it took, a few failure reasons, failure count)."""
        if not self.conn.poll(timeout):
            raise TimeoutError("clients did not finish connecting")
        _, count, seconds, reasons, failed = self.conn.recv()
        return count, seconds, reasons, failed

    def collect(self, expected: int, timeout: float) -> list[Received]:
        self.conn.send(("collect", expected, timeout))
        if not self.conn.poll(timeout + 30):
            raise TimeoutError("clients did not report")
        return [Received(*r) for r in self.conn.recv()[1]]

    def stop(self) -> None:
        try:
            self.conn.send(("stop",))
            self.conn.poll(30)
        except (OSError, EOFError):
            pass
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()


def user_tokens(user_ids: Sequence[str], ttl: int = 3600) -> list[str]:
    from notifier import tokens

    return [tokens.issue(u, ttl) for u in user_ids]
