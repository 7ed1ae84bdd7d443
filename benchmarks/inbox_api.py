"""Figure 12: the inbox API at 10,000 entries per user: list and unread count, p50/p99 per call.

Users' inboxes hold ``--entries`` notifications each (every other one read), and one client calls the
gateway's ``GET /v1/notifications`` (the first page, a page deep in the inbox by cursor, the first
page of unread ones) and ``GET /v1/notifications/unread-count`` one call at a time over a kept-alive
HTTP connection. Each API call alternates with its raw Redis counterpart from the same process in the
same run: XREVRANGE of the same page (COUNT = the page size), and SCARD of the unread set for the
count, so the ratio is what the gateway adds to the read it is built on.

    python -m benchmarks.inbox_api [--entries 10000] [--users 10] [--calls 1000] [--runs 3]
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson

from benchmarks.harness.database import bench_env, claim_and_flush, clear_data, client, users
from benchmarks.harness.meters import wait_quiet
from benchmarks.harness.processes import Gateway
from benchmarks.harness.report import Figure, arguments, latency_summary, report

PAGE = 20
APPEND_BATCH = 1000


def fill(user_ids: list[str], entries: int) -> dict[str, list[str]]:
    """``entries`` notifications in each user's inbox, every other one marked read; their entry ids."""
    from notifier.state.inbox import MAX_IDS, Inbox

    box = Inbox()
    ids: dict[str, list[str]] = {}
    for user in user_ids:
        nids = [f"{user}-n{i}" for i in range(entries)]
        appended = []
        for start in range(0, entries, APPEND_BATCH):
            payloads = [(user, nid, orjson.dumps({"id": nid, "type": "digest", "title": f"Weekly report {i}",
                                                  "body": "Your numbers for the week are in.",
                                                  "data": {"n": i}}).decode(), False)
                        for i, nid in enumerate(nids[start:start + APPEND_BATCH], start)]
            appended += box.append_many(payloads)
        read = nids[::2]
        for start in range(0, len(read), MAX_IDS):
            box.mark(user, read[start:start + MAX_IDS])
        ids[user] = [a.entry_id for a in appended]
    return ids


def timed(call: Callable[[], Any]) -> float:
    start = time.perf_counter()
    call()
    return (time.perf_counter() - start) * 1000


def one_run(http: httpx.Client, tokens: dict[str, dict[str, str]], ids: dict[str, list[str]],
            calls: int) -> dict[str, tuple[list[float], list[float]]]:
    """For each kind of call, the API's and the raw counterpart's latencies (ms), interleaved."""
    from notifier.redis import store

    r, keys = client(), store.get_keys()
    samples: dict[str, tuple[list[float], list[float]]] = {}
    rng = random.Random(7)
    user_ids = list(tokens)

    def checked(response: httpx.Response) -> httpx.Response:
        response.raise_for_status()
        return response

    kinds: dict[str, tuple[Callable[[str, str], Any], Callable[[str, str], Any]]] = {
        "list, first page": (
            lambda u, _: checked(http.get("/v1/notifications", params={"limit": PAGE}, headers=tokens[u])),
            lambda u, _: r.xrevrange(keys.inbox(u), count=PAGE)),
        "list, a page deep by cursor": (
            lambda u, c: checked(http.get("/v1/notifications", params={"limit": PAGE, "before": c},
                                          headers=tokens[u])),
            lambda u, c: r.xrevrange(keys.inbox(u), max=f"({c}", min="-", count=PAGE)),
        "list, unread only": (
            lambda u, _: checked(http.get("/v1/notifications", params={"limit": PAGE, "unread": "true"},
                                          headers=tokens[u])),
            lambda u, _: r.xrevrange(keys.inbox(u), count=PAGE)),
        "unread count": (
            lambda u, _: checked(http.get("/v1/notifications/unread-count", headers=tokens[u])),
            lambda u, _: r.scard(keys.unread(u))),
    }
    for name, (api, raw) in kinds.items():
        ours: list[float] = []
        base: list[float] = []
        for i in range(calls):
            user = user_ids[i % len(user_ids)]
            cursor = rng.choice(ids[user][PAGE:])
            ours.append(timed(lambda: api(user, cursor)))  # noqa: B023  called at once
            base.append(timed(lambda: raw(user, cursor)))  # noqa: B023
        samples[name] = (ours, base)
    return samples


def main() -> None:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--calls", type=int, default=1000, help="calls of each kind per run")
    args = parser.parse_args()
    env = bench_env(NOTIFIER_INBOX_MAX_LEN=str(args.entries), NOTIFIER_API_RATE_LIMIT="100000000/60")
    claim_and_flush()
    from notifier import tokens as user_tokens

    gateway = Gateway(env).wait_ready()
    figures: dict[tuple[str, str], Figure] = {}
    series = []
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{gateway.port}", timeout=10) as http:
            for run in range(args.runs):
                clear_data()
                user_ids = users(f"inbox{run}", args.users)
                ids = fill(user_ids, args.entries)
                tokens = {u: {"Authorization": f"Bearer {user_tokens.issue(u, 3600)}"} for u in user_ids}
                for user in user_ids[:2]:  # warm the connection and the gateway's first calls
                    http.get("/v1/notifications", headers=tokens[user]).raise_for_status()
                wait_quiet()
                samples = one_run(http, tokens, ids, args.calls)
                lines = []
                for name, (ours, base) in samples.items():
                    o, b = latency_summary(ours), latency_summary(base)
                    for q in ("p50", "p99"):
                        figure = figures.setdefault((name, q), Figure(
                            f"{name}, {q}", "ms", baseline_name=f"raw {'SCARD' if 'count' in name else 'XREVRANGE'}",
                            baseline_unit="ms", higher_is_better=False))
                        figure.add(o[q], b[q])
                    lines.append(f"{name}: p50 {o['p50']:.2f} ms, p99 {o['p99']:.2f} ms "
                                 f"(raw p50 {b['p50']:.3f}, p99 {b['p99']:.3f})")
                    series.append({"run": run, "call": name, "api_ms": o, "raw_ms": b})
                print(f"run {run + 1}:\n    " + "\n    ".join(lines))
    finally:
        gateway.stop()
    report("inbox_api", list(figures.values()), {"runs": series, "settings": {
        "entries": args.entries, "users": args.users, "calls": args.calls, "page": PAGE}})


if __name__ == "__main__":
    main()
