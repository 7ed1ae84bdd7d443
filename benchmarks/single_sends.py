"""Figure 1: single sends, ``send_notification.delay()`` in a loop, router -> realtime -> inbox.

Measured from the first ``.delay()`` to the last inbox write, beside a no-op Celery task through the
same broker and worker settings, in the same run. Target: at least 1.0x the no-op task rate.
``--backlog`` sends everything while the workers are frozen (SIGSTOP) and measures from resuming them
to the last inbox write instead: how fast a backlog of single sends drains.

    python -m benchmarks.single_sends [--count 3000] [--users 1000] [--runs 3] [--backlog]
"""

from __future__ import annotations

import os
import signal
import time

from benchmarks.harness.baselines import noop_rate, start_noop_worker
from benchmarks.harness.database import bench_env, claim_and_flush, clear_data, users
from benchmarks.harness.drain import wait_inboxes
from benchmarks.harness.meters import CpuMeter, wait_quiet
from benchmarks.harness.processes import start_workers
from benchmarks.harness.profiling import profile
from benchmarks.harness.report import Figure, arguments, report

QUEUES = ["router", "realtime"]


def one_run(run: int, count: int, user_count: int, workers: list, backlog: bool = False) -> float:
    """Sends per second, from the first ``.delay()`` (or, with ``backlog``, from resuming the frozen
    workers) to the last inbox write."""
    from notifier import send_notification

    recipients = users(f"single{run}", user_count)
    if backlog:
        for worker in workers:
            os.killpg(worker.pid, signal.SIGSTOP)
    start = time.time()
    for i in range(count):
        send_notification.delay(recipients[i % user_count], {
            "type": "benchmark", "title": f"Single send {i}", "body": "Something happened.",
            "data": {"seq": i}, "channels": ["realtime"]})
    if backlog:
        start = time.time()
        for worker in workers:
            os.killpg(worker.pid, signal.SIGCONT)
    end = wait_inboxes(recipients, count, QUEUES, timeout=120, workers=workers)
    return count / (end - start)


def main() -> None:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--pool", default="prefork", help="worker pool of the notifier workers")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--prefetch", type=int, default=None, help="NOTIFIER_PREFETCH_MULTIPLIER")
    parser.add_argument("--backlog", action="store_true",
                        help="send while the workers are frozen, then time the drain from resuming them")
    args = parser.parse_args()
    env = bench_env(**({"NOTIFIER_PREFETCH_MULTIPLIER": str(args.prefetch)} if args.prefetch else {}))
    claim_and_flush()
    noop = start_noop_worker(env)
    worker = start_workers(env, QUEUES, pool=args.pool, concurrency=args.concurrency)
    figure = Figure("single sends", "sends/s", baseline_name="no-op Celery task (prefork -c 2)",
                    baseline_unit="tasks/s", target=">= 1.0x the no-op task rate")
    stop_profile = profile(args.profile, "single_sends", {"workers": worker.pid})
    for run in range(args.runs):
        clear_data()
        wait_quiet()
        baseline = noop_rate(args.count, noop)
        meter = CpuMeter([worker]).start()
        value = one_run(run, args.count, args.users, [worker], args.backlog)
        meter.stop()
        figure.add(value, baseline)
        print(f"run {run + 1}: {value:,.0f} sends/s, no-op {baseline:,.0f} tasks/s, ratio {value / baseline:.2f}"
              f"\n    {meter.line()}")
    stop_profile()
    worker.stop()
    noop.stop()
    settings = {"pool": args.pool, "concurrency": args.concurrency, "prefetch": args.prefetch, "count": args.count,
                "backlog": args.backlog}
    report("single_sends_backlog" if args.backlog else "single_sends", [figure], {"settings": settings})


if __name__ == "__main__":
    main()
