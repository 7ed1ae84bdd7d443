"""Figure 3: broadcast of one notification to 100,000 users, into inboxes and Pub/Sub.

Two ways: ``broadcast(n, user_ids=[...])`` and ``broadcast(n)`` to every known user. Measured from the
call to the last inbox write, beside raw redis-py pipelined XADD+PUBLISH (one pair per user) in the
same run. Targets: at most 5 s end to end, at least 0.5x the raw pipelined rate (issue 15; 0.3x
before). Each run also prints Redis's time per recipient by command (``INFO commandstats``; a
script's time includes the commands it runs), which is what bounds the figure.

    python -m benchmarks.broadcast [--users 100000] [--runs 3]
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial

from benchmarks.harness.baselines import raw_write_rates
from benchmarks.harness.database import bench_env, claim_and_flush, clear_data, client, users
from benchmarks.harness.drain import inbox_writes, wait_drained
from benchmarks.harness.meters import CpuMeter, RedisCommands, wait_quiet
from benchmarks.harness.processes import Worker, start_workers
from benchmarks.harness.profiling import profile
from benchmarks.harness.report import Figure, arguments, report

QUEUES = ["router", "realtime"]
NOTIFICATION = {"type": "maintenance", "title": "Down at 02:00 UTC", "body": "For about ten minutes.",
                "priority": "high", "channels": ["realtime"]}


def known_users(user_ids: list[str]) -> None:
    """Make exactly these users the known ones (as if each had been sent to or configured before)."""
    from notifier.redis import store

    r = client()
    key = store.get_keys().users()
    r.delete(key)
    for start in range(0, len(user_ids), 10_000):
        r.sadd(key, *user_ids[start:start + 10_000])


def timed(send: Callable[[], object], recipients: list[str], expected: int, workers: list[Worker]) -> float:
    """Seconds from the call to the last inbox write; prints where the CPU went meanwhile."""
    meter, commands = CpuMeter(workers).start(), RedisCommands().start()
    start = time.time()
    send()
    wait_drained(QUEUES, timeout=120, workers=workers)
    meter.stop()
    commands.stop()
    count, end = inbox_writes(recipients)
    if count != expected:
        raise RuntimeError(f"expected {expected} inbox entries, found {count}")
    print("   ", meter.line())
    print("    Redis's time by command:\n     " + "\n     ".join(commands.lines(len(recipients), "recipient")))
    return end - start


def main() -> None:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    args = parser.parse_args()
    env = bench_env()
    claim_and_flush()
    worker = start_workers(env, QUEUES)
    from notifier import broadcast

    n = args.users
    listed = Figure("broadcast to a user list", "recipients/s", baseline_name="raw pipelined XADD+PUBLISH pairs",
                    baseline_unit="pairs/s", target=">= 0.5x raw XADD+PUBLISH")
    everyone = Figure("broadcast to all known users", "recipients/s", baseline_name=listed.baseline_name,
                      baseline_unit="pairs/s", target=">= 0.5x raw XADD+PUBLISH")
    listed_s = Figure("broadcast to a user list, end to end", "s", target="<= 5 s", higher_is_better=False)
    everyone_s = Figure("broadcast to all known users, end to end", "s", target="<= 5 s", higher_is_better=False)
    raw_xadd, raw_publish = [], []
    stop_profile = profile(args.profile, "broadcast", {"workers": worker.pid})
    for run in range(args.runs):
        clear_data()
        recipients = users(f"bc{run}", n)
        known_users(recipients)
        wait_quiet()
        raw = raw_write_rates(n)
        raw_xadd.append(raw["xadd"])
        raw_publish.append(raw["publish"])
        seconds = timed(partial(broadcast, NOTIFICATION, user_ids=recipients), recipients, n, [worker])
        listed.add(n / seconds, raw["pair"])
        listed_s.add(seconds)
        wait_quiet()
        seconds_all = timed(partial(broadcast, NOTIFICATION), recipients, 2 * n, [worker])
        everyone.add(n / seconds_all, raw["pair"])
        everyone_s.add(seconds_all)
        print(f"run {run + 1}: user list {seconds:.2f} s ({n / seconds:,.0f}/s), all users {seconds_all:.2f} s "
              f"({n / seconds_all:,.0f}/s); raw XADD {raw['xadd']:,.0f}/s, PUBLISH {raw['publish']:,.0f}/s, "
              f"pairs {raw['pair']:,.0f}/s (Redis CPU {raw['pair_redis_us']:.1f} µs per pair)")
    stop_profile()
    worker.stop()
    raw_figures = [Figure("raw pipelined XADD", "ops/s", raw_xadd),
                   Figure("raw pipelined PUBLISH", "ops/s", raw_publish)]
    report("broadcast", [listed, listed_s, everyone, everyone_s, *raw_figures], {"settings": {"users": n}})


if __name__ == "__main__":
    main()
