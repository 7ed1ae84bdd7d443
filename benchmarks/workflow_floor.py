"""What a broadcast through a digest workflow must cost Redis at least, beside what the plain one costs.

Issue 16 keeps a run's state in a hash in the user's own slot, lists the user's runs (``notifier runs
list USER``) and gives each user their own digest. For a broadcast through realtime and digest steps,
each recipient therefore needs, besides the plain broadcast's Redis work (the inbox append and the
rate-limit check, measured here as the baseline): a run hash with its expiry, an entry in the user's
runs index with its expiry, and the lookup and opening of their digest with its expiry. This measures,
in the same run, against new users each time:

- ``plain``: ``Inbox.append_many`` and ``RateLimiter.allow_many`` as the plain broadcast calls them;
- ``floor``: one Lua script doing exactly the workflow's extra commands, nothing else, 100 users a call;
- ``notifier``: what notifier's workflow adds today (``Runs.record_many`` and ``Digests.join_many``).

Redis's CPU per recipient is read from ``INFO cpu``. Since the plain broadcast is bound by the CPU of
Redis and the workers together, the floor over the plain Redis work bounds how close to the plain
broadcast's time (issue 16's target: at most 1.5x) any implementation of that state can come.

    python -m benchmarks.workflow_floor [--users 30000] [--runs 3]
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import orjson

from benchmarks.harness.database import bench_env, claim_and_flush, clear_data, client
from benchmarks.harness.meters import redis_cpu, wait_quiet
from benchmarks.harness.report import Figure, arguments, report

FLOOR = """
for i = 1, #KEYS, 3 do
  local run, runs, open = KEYS[i], KEYS[i + 1], KEYS[i + 2]
  if redis.call('EXISTS', run) == 0 then
    redis.call('HSET', run, 'workflow', ARGV[1], 'step', '1', 'status', 'waiting', 'created', ARGV[2],
               'until', ARGV[2], 's0', ARGV[3], 's1', ARGV[3])
    redis.call('EXPIRE', run, 1209600)
    redis.call('ZADD', runs, ARGV[2], ARGV[4])
    redis.call('EXPIRE', runs, 1209600)
    if not redis.call('HMGET', open, 'id', 'due')[1] then
      redis.call('HSET', open, 'id', ARGV[4], 'due', ARGV[2])
      redis.call('PEXPIRE', open, 3600000)
    end
  end
end
return 1
"""
BATCH = 500
"""Recipients per round trip, as a broadcast's route_users batch."""


def per_recipient(users: list[str], work: Callable[[list[str]], object]) -> float:
    """Redis CPU microseconds per recipient for ``work`` over ``users`` in batches."""
    before = redis_cpu()
    for start in range(0, len(users), BATCH):
        work(users[start:start + BATCH])
    return 1e6 * (redis_cpu() - before) / len(users)


def main() -> None:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=30_000)
    args = parser.parse_args()
    bench_env()
    claim_and_flush()
    from notifier.config import get_settings
    from notifier.state.digests import Digests, JoinItem
    from notifier.state.inbox import Inbox
    from notifier.state.ratelimit import RateLimiter
    from notifier.workflows.runs import WAITING, Move, Runs

    n = {"id": uuid.uuid4().hex, "type": "wf-broadcast", "title": "Hello there", "body": "A broadcast body " * 6,
         "timestamp": "2026-12-02T10:00:00+00:00"}
    text = orjson.dumps(n).decode()
    entry = orjson.dumps({"outcome": "sent", "detail": "realtime", "at": time.time()})
    r = client()
    floor_sha = r.script_load(FLOOR)
    limits = RateLimiter(limits=get_settings().limits)

    def plain(users: list[str]) -> None:
        Inbox().append_many([(u, n["id"], text, True) for u in users])
        limits.allow_many([(u, n["id"], ["realtime"]) for u in users])

    def floor(users: list[str]) -> None:
        pipe = r.pipeline(transaction=False)
        for start in range(0, len(users), 100):
            keys = [k for u in users[start:start + 100]
                    for k in (f"floor:{{{u}}}:run", f"floor:{{{u}}}:runs", f"floor:{{{u}}}:digest")]
            pipe.evalsha(floor_sha, len(keys), *keys, n["type"], repr(time.time()), entry, n["id"])
        pipe.execute()

    def current(users: list[str]) -> None:
        now = time.time()
        Digests().join_many([JoinItem(u, "wf-broadcast.1", "", n["id"], n, 3600, None) for u in users], now)
        log = {0: {"outcome": "sent", "detail": "realtime", "at": now},
               1: {"outcome": "opened", "detail": "digest of all", "at": now}}
        Runs().record_many([("wf-broadcast", n, Move(u, n["id"], 0, 1, WAITING, now + 3600, log)) for u in users])

    base = Figure("plain broadcast's Redis work (inbox append, rate limit)", "µs/recipient", higher_is_better=False)
    least = Figure("floor: run hash, runs index, digest open (their commands only)", "µs/recipient",
                   baseline_name="plain", baseline_unit="µs/recipient", higher_is_better=False)
    ours = Figure("notifier's run record and digest join today", "µs/recipient", baseline_name="plain",
                  baseline_unit="µs/recipient", higher_is_better=False)
    for run in range(args.runs):
        clear_data()
        wait_quiet()
        users = [f"wf{run}-{i:06d}" for i in range(args.users)]
        plain_us = per_recipient(users, plain)
        floor_us = per_recipient(users, floor)
        ours_us = per_recipient(users, current)
        base.add(plain_us)
        least.add(floor_us, plain_us)
        ours.add(ours_us, plain_us)
        print(f"run {run + 1}: plain {plain_us:.1f}, floor +{floor_us:.1f} ({1 + floor_us / plain_us:.2f}x the "
              f"plain Redis work in all), notifier +{ours_us:.1f} ({1 + ours_us / plain_us:.2f}x) µs/recipient",
              flush=True)
    report("workflow_floor", [base, least, ours], {"settings": {"users": args.users}})


if __name__ == "__main__":
    main()
