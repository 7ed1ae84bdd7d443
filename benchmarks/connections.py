"""Figure 5: one gateway process holds 10,000 live connections and a broadcast reaches them all.

One ``uvicorn notifier.gateway:app`` process (uvloop); a load generator in another process opens
10,000 SSE connections (then, separately, 10,000 WebSocket connections at ``/v1/ws``), one user each.
Then one ``broadcast`` to those users goes through the workers and out to every connection. Reported:
connect rate, gateway RSS per connection, gateway CPU, and the broadcast's delivery latency to every
client. Targets: p99 <= 1 s, RSS <= 20 KiB per connection. The open-file limit is raised here, for
this process and its children only.

    python -m benchmarks.connections [--connections 10000] [--kinds sse,ws] [--runs 3]
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from benchmarks.harness.database import bench_env, claim_and_flush, clear_data, users
from benchmarks.harness.load import Listeners, raise_open_files, user_tokens
from benchmarks.harness.meters import CpuMeter, process_cpu, wait_quiet
from benchmarks.harness.processes import Gateway, Worker, start_workers
from benchmarks.harness.profiling import profile
from benchmarks.harness.report import Figure, arguments, latency_summary, report

QUEUES = ["router", "realtime"]


def one_run(kind: str, run: int, env: dict[str, str], worker: Worker, count: int, profiled: bool = False,
            gc_threshold: str | None = None) -> dict[str, Any]:
    from notifier import broadcast

    recipients = users(f"conn-{kind}{run}", count)
    tokens = user_tokens(recipients)
    gateway = Gateway(env, gc_threshold=gc_threshold).wait_ready()
    listeners = None
    try:
        time.sleep(1)
        rss_idle, cpu0 = gateway.rss(), process_cpu(gateway.pid)
        stop_profile = profile(profiled, f"connections-{kind}-connect", {"gateway": gateway.pid}, subprocesses=False)
        listeners = Listeners(kind, gateway.port, tokens)
        opened, seconds, reasons, failed = listeners.wait_connected(300)
        stop_profile()
        if failed:
            raise RuntimeError(f"{failed} {kind} connections failed, e.g. {reasons}")
        time.sleep(2)
        rss_held, cpu1 = gateway.rss(), process_cpu(gateway.pid)
        stop_profile = profile(profiled, f"connections-{kind}-broadcast", {"gateway": gateway.pid},
                               subprocesses=False)
        meter = CpuMeter([worker, gateway], {"clients": listeners.pid}).start()
        sent_at = time.time()
        broadcast({"type": "benchmark", "title": "To everyone connected", "channels": ["realtime"],
                   "data": {"sent_at": sent_at}}, user_ids=recipients)
        received = listeners.collect(count, timeout=60)
        cpu2 = process_cpu(gateway.pid)
        meter.stop()
        stop_profile()
    finally:
        if listeners is not None:
            listeners.stop()
        gateway.stop()
    if len(received) != count:
        raise RuntimeError(f"broadcast reached {len(received)} of {count} {kind} connections")
    latency = latency_summary([r.at - sent_at for r in received])
    return {"connections": opened, "connect_s": seconds, "connect_rate": opened / seconds,
            "rss_idle_mib": rss_idle / 2**20, "rss_held_mib": rss_held / 2**20,
            "rss_per_connection_kib": (rss_held - rss_idle) / opened / 1024,
            "connect_cpu_s": cpu1 - cpu0, "broadcast_cpu_s": cpu2 - cpu1,
            "broadcast_p50_s": latency["p50"], "broadcast_p99_s": latency["p99"], "broadcast_max_s": latency["max"],
            "broadcast_cpu": meter.line()}


def main() -> None:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--kinds", default="sse,ws")
    parser.add_argument("--counts", default="1000,2500,5000",
                        help="extra SSE connection counts, one run each, for the plot ('' to skip)")
    parser.add_argument("--gc-threshold", default=None,
                        help="run the gateway with NOTIFIER_GATEWAY_GC_THRESHOLDS=YOUNG,MIDDLE,OLD "
                             "(700,10,10 is CPython's default)")
    args = parser.parse_args()
    limit = raise_open_files()
    if limit < args.connections + 1000:
        raise SystemExit(f"the open-file limit is {limit}; {args.connections} connections need more")
    env = bench_env(NOTIFIER_HEARTBEAT_SECONDS="30")
    claim_and_flush()
    worker = start_workers(env, QUEUES)
    figures: list[Figure] = []
    series = {}
    for kind in args.kinds.split(","):
        label = {"sse": "SSE", "ws": "WebSocket"}[kind]
        rows = []
        for run in range(args.runs):
            clear_data()
            wait_quiet()
            row = one_run(kind, run, env, worker, args.connections, args.profile and run == 0, args.gc_threshold)
            rows.append(row)
            print(f"{label} run {run + 1}: {row['connections']} open in {row['connect_s']:.1f} s "
                  f"({row['connect_rate']:,.0f}/s, gateway CPU {row['connect_cpu_s']:.1f} s); RSS "
                  f"{row['rss_idle_mib']:.0f} -> {row['rss_held_mib']:.0f} MiB = "
                  f"{row['rss_per_connection_kib']:.1f} KiB/connection; broadcast p50 "
                  f"{row['broadcast_p50_s'] * 1000:.0f} ms, p99 {row['broadcast_p99_s'] * 1000:.0f} ms, max "
                  f"{row['broadcast_max_s'] * 1000:.0f} ms (gateway CPU {row['broadcast_cpu_s']:.1f} s)\n"
                  f"  broadcast {row['broadcast_cpu']}")
        series[kind] = rows
        for key, name, unit, target in [
                ("broadcast_p99_s", "broadcast reaches all, p99", "s", "<= 1 s"),
                ("broadcast_p50_s", "broadcast reaches all, p50", "s", ""),
                ("rss_per_connection_kib", "gateway RSS per connection", "KiB", "<= 20 KiB"),
                ("connect_rate", "connect rate", "connections/s", ""),
                ("connect_cpu_s", "gateway CPU to accept them", "s", ""),
                ("broadcast_cpu_s", "gateway CPU for the broadcast", "s", "")]:
            figures.append(Figure(f"{label} x{args.connections}: {name}", unit, [r[key] for r in rows],
                                  target=target, higher_is_better=key == "connect_rate"))
    sweep = []
    for i, n in enumerate(int(c) for c in args.counts.split(",") if c.strip()):
        clear_data()
        wait_quiet()
        sweep.append(one_run("sse", 100 + i, env, worker, n, gc_threshold=args.gc_threshold))
    if "sse" in series:
        sweep.append(min(series["sse"], key=lambda r: abs(r["broadcast_p99_s"] - statistics.median(
            x["broadcast_p99_s"] for x in series["sse"]))))
    for row in sweep:
        print(f"SSE x{row['connections']}: broadcast p50 {row['broadcast_p50_s'] * 1000:.0f} ms, p99 "
              f"{row['broadcast_p99_s'] * 1000:.0f} ms; {row['rss_per_connection_kib']:.1f} KiB/connection")
    worker.stop()
    report("connections", figures, {"runs": series, "count_sweep": sweep, "settings": {
        "connections": args.connections, "gc_threshold": args.gc_threshold}})


if __name__ == "__main__":
    main()
