"""Figure 2: bulk sends, ``send_bulk`` of 10,000 notifications to 10,000 users, router -> realtime.

Measured from the ``send_bulk`` call (validation included) to the last inbox write, beside a no-op
Celery task through the same broker and worker settings, in the same run. Target: at least 10x the
no-op task rate. A sweep over ``NOTIFIER_BATCH_SIZE`` gives the throughput-vs-batch-size plot.

    python -m benchmarks.bulk_sends [--count 10000] [--runs 3] [--batch-sizes 50,100,250,500,1000,2000]
"""

from __future__ import annotations

import statistics
import time

from benchmarks.harness.baselines import noop_rate, start_noop_worker
from benchmarks.harness.database import bench_env, claim_and_flush, clear_data, users
from benchmarks.harness.drain import wait_inboxes
from benchmarks.harness.meters import CpuMeter, wait_quiet
from benchmarks.harness.processes import Worker, start_workers
from benchmarks.harness.profiling import profile
from benchmarks.harness.report import Figure, arguments, report

QUEUES = ["router", "realtime"]


def one_run(tag: str, count: int, workers: list[Worker]) -> float:
    """Notifications per second, from the ``send_bulk`` call to the last inbox write."""
    from notifier import send_bulk

    recipients = users(f"bulk{tag}", count)
    items = [(user, {"type": "benchmark", "title": f"Bulk send {i}", "body": "Something happened.",
                     "data": {"seq": i}, "channels": ["realtime"]}) for i, user in enumerate(recipients)]
    start = time.time()
    send_bulk(items)
    end = wait_inboxes(recipients, count, QUEUES, timeout=120, workers=workers)
    return count / (end - start)


def main() -> None:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--noop-count", type=int, default=3000)
    parser.add_argument("--batch-sizes", default="50,100,250,500,1000,2000",
                        help="NOTIFIER_BATCH_SIZE values for the sweep ('' to skip it)")
    parser.add_argument("--sweep-runs", type=int, default=2)
    args = parser.parse_args()
    env = bench_env()
    claim_and_flush()
    noop = start_noop_worker(env)
    worker = start_workers(env, QUEUES)
    figure = Figure("bulk sends", "notifications/s", baseline_name="no-op Celery task (prefork -c 2)",
                    baseline_unit="tasks/s", target=">= 10x the no-op task rate")
    stop_profile = profile(args.profile, "bulk_sends", {"workers": worker.pid})
    for run in range(args.runs):
        clear_data()
        wait_quiet()
        baseline = noop_rate(args.noop_count, noop)
        meter = CpuMeter([worker]).start()
        value = one_run(str(run), args.count, [worker])
        meter.stop()
        figure.add(value, baseline)
        print(f"run {run + 1}: {value:,.0f} notifications/s, no-op {baseline:,.0f} tasks/s, "
              f"ratio {value / baseline:.1f}\n    {meter.line()}")
    stop_profile()
    worker.stop()
    noop.stop()

    sweep: list[dict[str, float]] = []
    for size in [int(s) for s in args.batch_sizes.split(",") if s.strip()]:
        env = bench_env(NOTIFIER_BATCH_SIZE=str(size))
        worker = start_workers(env, QUEUES)
        rates = []
        for run in range(args.sweep_runs):
            clear_data()
            wait_quiet()
            rates.append(one_run(f"b{size}-{run}", args.count, [worker]))
        worker.stop()
        sweep.append({"batch_size": size, "median": statistics.median(rates), "min": min(rates),
                      "max": max(rates)})
        print(f"batch size {size}: median {statistics.median(rates):,.0f} notifications/s "
              f"(min {min(rates):,.0f}, max {max(rates):,.0f})")
    report("bulk_sends", [figure], {"batch_sweep": sweep, "settings": {"count": args.count}})


if __name__ == "__main__":
    main()
