"""Digest throughput: events joined to workflow digests per second (``Digests.join_many``, issue 16).

100,000 events over 1,000 users x 10 digest keys (10 events per digest, consecutive events in
different digests, as a broadcast's are), joined in batches of ``--batch`` items (one round trip
each, ``ITEMS_PER_CALL`` items per script call), beside raw redis-py pipelined RPUSH of the same
events to one list per digest in the same run (one pipeline of ``--batch`` commands per round trip).
No workers: this process against Redis, so the CPU split says which of the two bounds the figure.
Each run also prints Redis's time per event by command and Redis's memory per event held, and
then closes every digest with ``close_many`` (``--batch`` digests a round trip) beside pipelined
LRANGE+DEL of the raw lists (each event decoded, as a close does).

    python -m benchmarks.digest_join [--events 100000] [--users 1000] [--keys 10] [--batch 1000] [--runs 3]
        [--per-call 100]   # items per script call (notifier.state.digests.ITEMS_PER_CALL)
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from benchmarks.harness.database import bench_env, claim_and_flush, clear_data, client, users
from benchmarks.harness.meters import CpuMeter, RedisCommands, wait_quiet
from benchmarks.harness.report import Figure, arguments, report

WORKFLOW = "comment"
WINDOW_SECONDS = 3600.0
"""Long enough that no digest comes due during a run."""


def event(i: int) -> dict[str, Any]:
    """A notification as the engine would pass it (the size of the other benchmarks' sample)."""
    return {"id": f"{i:032x}", "type": "comment", "title": "New comment on your post", "body": "Nice work!",
            "data": {"post_id": f"p{i % 10}", "comment_id": str(i)}, "priority": "normal",
            "timestamp": "2026-01-01T00:00:00Z"}


def used_memory() -> int:
    return int(client().info("memory")["used_memory"])


def raw_rpush(events: list[tuple[str, dict[str, Any]]], batch: int) -> tuple[float, CpuMeter, float]:
    """Seconds to RPUSH each event's JSON to its digest's list, pipelined; the CPU meter; bytes held per event."""
    r = client()
    before = used_memory()
    meter = CpuMeter().start()
    start = time.perf_counter()
    for base in range(0, len(events), batch):
        pipe = r.pipeline(transaction=False)
        for list_key, payload in events[base:base + batch]:
            pipe.rpush(list_key, orjson.dumps(payload))
        pipe.execute()
    seconds = time.perf_counter() - start
    meter.stop()
    return seconds, meter, (used_memory() - before) / len(events)


def raw_take(list_keys: list[str], batch: int, expected: int) -> tuple[float, CpuMeter]:
    """Seconds to LRANGE and DEL every list, ``batch`` lists per pipeline, decoding each event."""
    r = client()
    meter = CpuMeter().start()
    start = time.perf_counter()
    taken = 0
    for base in range(0, len(list_keys), batch):
        pipe = r.pipeline(transaction=False)
        for list_key in list_keys[base:base + batch]:
            pipe.lrange(list_key, 0, -1)
            pipe.delete(list_key)
        taken += sum(len([orjson.loads(e) for e in events]) for events in pipe.execute()[::2])
    seconds = time.perf_counter() - start
    meter.stop()
    if taken != expected:
        raise RuntimeError(f"expected {expected} events from the raw lists, got {taken}")
    return seconds, meter


def joins(items: list[Any], batch: int) -> tuple[float, CpuMeter, RedisCommands, float]:
    """Seconds to join every item in batches; the CPU meter; Redis's commands; bytes held per event."""
    from notifier.state.digests import Digests

    digests = Digests()
    before = used_memory()
    meter, commands = CpuMeter().start(), RedisCommands().start()
    start = time.perf_counter()
    for base in range(0, len(items), batch):
        digests.join_many(items[base:base + batch])
    seconds = time.perf_counter() - start
    meter.stop()
    commands.stop()
    return seconds, meter, commands, (used_memory() - before) / len(items)


def closes(owners: list[tuple[str, str, str, str]], batch: int, expected: int) -> tuple[float, CpuMeter]:
    """Seconds to close every digest with ``close_many`` of ``batch`` digests; checks every event came back."""
    from notifier.state.digests import Digests

    digests = Digests()
    meter = CpuMeter().start()
    start = time.perf_counter()
    taken = 0
    for base in range(0, len(owners), batch):
        taken += sum(c.count for c in digests.close_many(owners[base:base + batch]) if c)
    seconds = time.perf_counter() - start
    meter.stop()
    if taken != expected:
        raise RuntimeError(f"expected {expected} events from the closes, got {taken}")
    return seconds, meter


def check(recipients: list[str], keys: int, expected: int) -> None:
    """Every event is in its digest (the counts of the open digests add up)."""
    from notifier.redis import store
    from notifier.redis.keys import Keys

    k = store.get_keys()
    pipe = client().pipeline(transaction=False)
    for user in recipients:
        for key in range(keys):
            pipe.llen(Keys.digest_part(k.digest(user, WORKFLOW, f"p{key}"), "events"))
    total = sum(pipe.execute())
    if total != expected:
        raise RuntimeError(f"expected {expected} events in the digests, found {total}")


def main() -> None:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--keys", type=int, default=10, help="digest keys per user")
    parser.add_argument("--batch", type=int, default=1000, help="items per join_many call (and per raw pipeline)")
    parser.add_argument("--per-call", type=int, default=None, help="items per script call (default ITEMS_PER_CALL)")
    args = parser.parse_args()
    bench_env()
    claim_and_flush()
    from notifier.state import digests

    if args.per_call:
        digests.ITEMS_PER_CALL = args.per_call
    n = args.events
    figure = Figure("digest joins (join_many)", "events/s", baseline_name="raw pipelined RPUSH of the same events",
                    baseline_unit="events/s", target="issue 16: against raw Redis")
    raw_figure = Figure("raw pipelined RPUSH", "events/s")
    close_figure = Figure("digest closes (close_many)", "events/s", baseline_name="raw pipelined LRANGE+DEL",
                          baseline_unit="events/s")
    for run in range(args.runs):
        clear_data()
        recipients = users(f"dg{run}", args.users)
        # event i goes to user i % users and key (i // users) % keys: consecutive events in different digests
        spread = [(recipients[i % args.users], f"p{(i // args.users) % args.keys}", event(i)) for i in range(n)]
        raw_events = [(f"rawbench:{{{u}}}:digest:{key}", e) for u, key, e in spread]
        items = [digests.JoinItem(u, WORKFLOW, key, e["id"], e, WINDOW_SECONDS, None) for u, key, e in spread]
        wait_quiet()
        raw_s, raw_meter, raw_held = raw_rpush(raw_events, args.batch)
        raw_take_s, raw_take_meter = raw_take(list(dict.fromkeys(k for k, _ in raw_events)), args.batch, n)
        wait_quiet()
        join_s, meter, commands, held = joins(items, args.batch)
        check(recipients, args.keys, n)
        first: dict[tuple[str, str], str] = {}
        for u, key, e in spread:
            first.setdefault((u, key), e["id"])
        close_s, close_meter = closes([(u, WORKFLOW, key, owner) for (u, key), owner in first.items()], args.batch, n)
        figure.add(n / join_s, n / raw_s)
        raw_figure.add(n / raw_s)
        close_figure.add(n / close_s, n / raw_take_s)
        print(f"run {run + 1}: joined {n:,} events in {join_s:.2f} s ({n / join_s:,.0f}/s, "
              f"{held:,.0f} B held per event); raw RPUSH {raw_s:.2f} s ({n / raw_s:,.0f}/s, {raw_held:,.0f} B)")
        print("    joins", meter.line())
        print("    raw  ", raw_meter.line())
        print("    Redis's time by command (joins):\n     " + "\n     ".join(commands.lines(n, "event")))
        print(f"    closed {len(first):,} digests in {close_s:.2f} s ({n / close_s:,.0f} events/s); raw LRANGE+DEL "
              f"{raw_take_s:.2f} s ({n / raw_take_s:,.0f} events/s)")
        print("    closes", close_meter.line())
        print("    raw   ", raw_take_meter.line())
    report("digest_join", [figure, raw_figure, close_figure],
           {"settings": {"events": n, "users": args.users, "keys": args.keys, "batch": args.batch,
                         "per_call": digests.ITEMS_PER_CALL}})


if __name__ == "__main__":
    main()
