"""Inbox reads at 10,000 entries per user: list pages, the counts and the state filters (issue 20).

Per-call p50 and p99 of ``Inbox.list`` (a page of 20: default, ``unseen_only``, ``archived``),
``Inbox.counts`` and ``Inbox.unread_count``, beside a raw ``XREVRANGE COUNT 20`` of the same stream
in the same run. Library calls from this process, no gateway: what each HTTP handler runs. The
states are set the way users do: none seen, then "mark all seen" and one newer entry, then 1,000
archived.

    python -m benchmarks.inbox_reads [--entries 10000] [--calls 300] [--runs 3]
"""

from __future__ import annotations

import time
from collections.abc import Callable

import orjson

from benchmarks.harness.database import bench_env, claim_and_flush, clear_data, client
from benchmarks.harness.report import Figure, arguments, percentile, report

USER = "reader"


def per_call_ms(fn: Callable[[], object], calls: int) -> tuple[float, float]:
    """p50 and p99 milliseconds of ``calls`` calls of ``fn``."""
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return percentile(samples, 50), percentile(samples, 99)


def main() -> None:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    bench_env(NOTIFIER_INBOX_MAX_LEN=str(args.entries))
    claim_and_flush()
    from notifier.state.inbox import Inbox

    figures: dict[str, tuple[Figure, Figure]] = {}

    def measure(name: str, fn: Callable[[], object], raw: tuple[float, float]) -> None:
        p50, p99 = per_call_ms(fn, args.calls)
        pair = figures.setdefault(name, (
            Figure(f"{name}, p50", "ms", baseline_name="raw XREVRANGE COUNT 20, p50", baseline_unit="ms",
                   higher_is_better=False),
            Figure(f"{name}, p99", "ms", baseline_name="raw XREVRANGE COUNT 20, p99", baseline_unit="ms",
                   higher_is_better=False)))
        pair[0].add(p50, raw[0])
        pair[1].add(p99, raw[1])

    box, r = Inbox(), client()
    for _ in range(args.runs):
        clear_data()
        for start in range(0, args.entries, 500):
            box.append_many([(USER, f"n{i}", orjson.dumps({
                "id": f"n{i}", "type": "comment", "title": "New comment on your post", "body": "Nice work!",
                "data": {"post_id": f"p{i % 10}"}, "timestamp": "2026-01-01T00:00:00Z"}).decode(), False)
                for i in range(start, min(start + 500, args.entries))])
        raw = per_call_ms(lambda: r.xrevrange(box.keys.inbox(USER), count=20), args.calls)
        measure("list, 20", lambda: box.list(USER), raw)
        measure("unread_count", lambda: box.unread_count(USER), raw)
        measure("counts, none seen", lambda: box.counts(USER), raw)
        box.mark_seen(USER)
        box.append(USER, {"id": "newer", "type": "comment", "title": "x"}, publish=False)
        measure("list unseen_only, 1 unseen", lambda: box.list(USER, unseen_only=True), raw)
        box.archive(USER, [f"n{i}" for i in range(1000)])
        measure("counts, 1,000 archived", lambda: box.counts(USER), raw)
        measure("list archived, 1,000 archived", lambda: box.list(USER, archived=True), raw)
    report("inbox_reads", [f for pair in figures.values() for f in pair],
           {"settings": {"entries": args.entries, "calls": args.calls}})


if __name__ == "__main__":
    main()
