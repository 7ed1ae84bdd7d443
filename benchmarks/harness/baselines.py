"""The same-run baselines every figure is divided by: what Celery and redis-py cost with notifier left out.

A no-op Celery task through the same broker and worker settings (``benchmarks/noop.py``), raw
pipelined XADD and PUBLISH, and raw redis-py Pub/Sub latency, each measured in the same run as the
figure it stands beside, so a slow machine slows both.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from benchmarks.harness.database import client
from benchmarks.harness.drain import wait_drained
from benchmarks.harness.meters import redis_cpu
from benchmarks.harness.processes import Worker


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
    """redis-py pipelined ops/s: XADD alone, PUBLISH alone, and XADD+PUBLISH pairs (one per user);
    ``pair_redis_us`` is Redis's CPU per pair, which shows that this baseline is bound by its one
    Python client, not by Redis."""
    r = client()
    rates: dict[str, float] = {}
    for kind in ("xadd", "publish", "pair"):
        r.delete(*[f"rawbench:{{u{i}}}:s" for i in range(pipeline)])
        start, redis_start = time.perf_counter(), redis_cpu()
        for base in range(0, count, pipeline):
            pipe = r.pipeline(transaction=False)
            for i in range(pipeline):
                if kind in ("xadd", "pair"):
                    pipe.xadd(f"rawbench:{{u{i}}}:s", {"nid": str(base + i), "n": SAMPLE_PAYLOAD})
                if kind in ("publish", "pair"):
                    pipe.publish(f"rawbench:{{u{i}}}:live", SAMPLE_PAYLOAD)
            pipe.execute()
        rates[kind] = count / (time.perf_counter() - start)
        rates[f"{kind}_redis_us"] = (redis_cpu() - redis_start) / count * 1e6
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
