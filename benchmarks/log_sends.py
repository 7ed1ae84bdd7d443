"""Figure 2 with the delivery log (issue 18): bulk sends (``benchmarks.bulk_sends``: ``send_bulk`` of
10,000 notifications to 10,000 users, router -> realtime) with ``NOTIFIER_DELIVERY_LOG`` on against
off, interleaved in the same run (A B, then B A, ...), each run on a freshly started worker of that
mode. With the log on, every send records three events (accepted, queued, sent), one stream entry per
router batch, and the same worker's pool drains them into the log's database (a SQLite file, the
embedded default) while the sends go on. Target: at least 0.85x the rate with the log off. Also shown: the worker's CPU per
delivery in both modes, and the stream entries and events one run left.

    python -m benchmarks.log_sends [--count 10000] [--runs 4]
"""

from __future__ import annotations

from benchmarks.bulk_sends import QUEUES, one_run
from benchmarks.harness.database import bench_env, claim_and_flush, clear_data
from benchmarks.harness.meters import CpuMeter, wait_quiet
from benchmarks.harness.processes import start_workers
from benchmarks.harness.profiling import profile
from benchmarks.harness.report import Figure, arguments, report


def logged() -> tuple[int, int]:
    """Stream entries still in the delivery log's buffer, and events written to its database."""
    from sqlalchemy import func, select

    from notifier.deliverylog.schema import events
    from notifier.deliverylog.store import get_engine
    from notifier.deliverylog.upgrades import ensure_current
    from notifier.redis.store import get_keys, get_redis

    ensure_current()
    with get_engine().connect() as conn:
        written = int(conn.execute(select(func.count()).select_from(events)).scalar() or 0)
    return int(get_redis().xlen(get_keys().events())), written


def main() -> None:
    parser = arguments(__doc__.splitlines()[0], runs=4)
    parser.add_argument("--count", type=int, default=10_000)
    args = parser.parse_args()
    bench_env()
    claim_and_flush()
    figure = Figure("bulk sends with the delivery log", "notifications/s", baseline_name="the same, log off",
                    baseline_unit="notifications/s", target=">= 0.85x the rate with the log off")
    cpu = Figure("worker CPU per delivery, log on", "µs", baseline_name="log off", baseline_unit="µs",
                 higher_is_better=False)
    written: list[tuple[int, int]] = []
    for run in range(args.runs):
        rates, costs = {}, {}
        for on in ((False, True) if run % 2 == 0 else (True, False)):
            env = bench_env(NOTIFIER_DELIVERY_LOG="true" if on else "false")
            worker = start_workers(env, [*QUEUES, "log"] if on else QUEUES)  # the drain runs alongside
            stop_profile = profile(args.profile, f"log_sends_{'on' if on else 'off'}_{run}", {"workers": worker.pid})
            clear_data()
            wait_quiet()
            meter = CpuMeter([worker]).start()
            rates[on] = one_run(f"{run}{'n' if on else 'f'}", args.count, [worker])
            costs[on] = meter.stop()[worker.name] / args.count * 1e6
            stop_profile()
            worker.stop()
            entries, events = logged()
            if on:
                written.append((entries, events))
            print(f"run {run + 1} log {'on ' if on else 'off'}: {rates[on]:,.0f} notifications/s, "
                  f"{entries} stream entries waiting, {events} events in the database\n    {meter.line()}")
        figure.add(rates[True], rates[False])
        cpu.add(costs[True], costs[False])
        print(f"run {run + 1}: ratio {rates[True] / rates[False]:.2f}; worker CPU per delivery "
              f"{costs[True]:.0f} µs against {costs[False]:.0f} µs")
    report("log_sends", [figure, cpu], {"settings": {"count": args.count},
                                         "logged": [{"entries": e, "events": n} for e, n in written]})


if __name__ == "__main__":
    main()
