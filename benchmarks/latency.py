"""Figure 4: latency from ``send_notification.delay()`` to an SSE client through the gateway.

200 notifications/s for 30 s, round-robin over a few users, each with one SSE connection to a
``uvicorn notifier.gateway:app`` process (uvloop); the clients run in another process. Beside it, in
the same run: raw redis-py Pub/Sub latency at the same rate. Each latency is split at the inbox
write (its entry id carries Redis's clock, to the millisecond): ``.delay()`` -> inbox write is the
broker and the router task, inbox write -> client is Pub/Sub, the gateway and the client.
Targets: p50 <= 5 ms, p99 <= 10 ms (issue 15; p50 <= 10 ms and p99 <= 50 ms before).

    python -m benchmarks.latency [--rate 200] [--seconds 30] [--users 20] [--runs 3]
"""

from __future__ import annotations

import time

from benchmarks.harness.baselines import pace, raw_pubsub_latency
from benchmarks.harness.database import bench_env, claim_and_flush, clear_data, users
from benchmarks.harness.drain import inbox_write_times
from benchmarks.harness.load import Listeners, raise_open_files, user_tokens
from benchmarks.harness.meters import CpuMeter, wait_quiet
from benchmarks.harness.processes import Gateway, Worker, start_workers
from benchmarks.harness.report import Figure, arguments, latency_summary, report

QUEUES = ["router", "realtime"]


def one_run(run: int, gateway: Gateway, worker: Worker, rate: float, seconds: float,
            user_count: int) -> tuple[list[float], dict[str, list[float]], CpuMeter]:
    """Send-to-receive latencies in ms of every notification (checked to have all arrived), the same
    split at the inbox write, and where the CPU went meanwhile (a slow tail with much ``other work``
    is the shared machine, not notifier)."""
    from notifier import send_notification

    recipients = users(f"lat{run}", user_count)
    listeners = Listeners("sse", gateway.port, user_tokens(recipients))
    try:
        _, _, reasons, failed = listeners.wait_connected(60)
        if failed:
            raise RuntimeError(f"{failed} SSE connections failed: {reasons}")
        total = int(rate * seconds)
        meter = CpuMeter([worker, gateway], {"SSE clients": listeners.pid}).start()
        pace(total, rate, lambda i: send_notification.delay(recipients[i % user_count], {
            "type": "benchmark", "title": f"Latency {i}", "channels": ["realtime"],
            "data": {"sent_at": time.time()}}))
        received = listeners.collect(total, timeout=30)
        meter.stop()
    finally:
        listeners.stop()
    if len(received) != total:
        raise RuntimeError(f"sent {total}, the clients received {len(received)}")
    written = inbox_write_times(recipients)
    timed = [(r, r.sent_at) for r in received if r.sent_at is not None]
    split = {"send -> inbox write": [(written[r.notification_id] - sent) * 1000 for r, sent in timed],
             "inbox write -> client": [(r.at - written[r.notification_id]) * 1000 for r, _ in timed]}
    return [(r.at - sent) * 1000 for r, sent in timed], split, meter


def main() -> None:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--users", type=int, default=20)
    args = parser.parse_args()
    raise_open_files()
    env = bench_env()
    claim_and_flush()
    worker = start_workers(env, QUEUES)
    gateway = Gateway(env).wait_ready()
    figures = {q: Figure(f"send -> SSE client, {q}", "ms", baseline_name=f"raw Pub/Sub {q}", baseline_unit="ms",
                         target={"p50": "<= 5 ms", "p99": "<= 10 ms"}.get(q, ""), higher_is_better=False)
               for q in ("p50", "p90", "p99", "max")}
    series = []
    for run in range(args.runs):
        clear_data()
        wait_quiet()
        raw = latency_summary(raw_pubsub_latency(args.rate, min(args.seconds, 10)))
        samples, split, meter = one_run(run, gateway, worker, args.rate, args.seconds, args.users)
        ours = latency_summary(samples)
        for q, figure in figures.items():
            figure.add(ours[q], raw[q])
        parts = {name: latency_summary(values) for name, values in split.items()}
        series.append({"run": run, "latency_ms": ours, "raw_pubsub_ms": raw, "split_ms": parts, "cpu_s": meter.used})
        print(f"run {run + 1}: p50 {ours['p50']:.2f} ms, p90 {ours['p90']:.2f}, p99 {ours['p99']:.2f}, "
              f"max {ours['max']:.1f} (n={ours['n']}); raw Pub/Sub p50 {raw['p50']:.3f} ms, "
              f"p99 {raw['p99']:.3f} ms\n    {meter.line()}\n    "
              + "; ".join(f"{name}: p50 {q['p50']:.1f} ms, p99 {q['p99']:.1f} ms" for name, q in parts.items()))
    gateway.stop()
    worker.stop()
    report("latency", list(figures.values()), {"runs": series, "settings": {
        "rate": args.rate, "seconds": args.seconds, "users": args.users}})


if __name__ == "__main__":
    main()
