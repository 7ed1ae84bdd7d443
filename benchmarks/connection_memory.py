"""Where a live connection's memory goes: tracemalloc in the gateway, per open connection.

Not a figure but the probe behind figure 5's memory work: the gateway (uvicorn, uvloop, the same
options as ``notifier gateway``) runs in this process with tracemalloc on; a load generator in another
process opens the connections; the allocations still held once they are all open are divided by
their number and grouped by who made them, then the largest allocation sites are listed.

    python -m benchmarks.connection_memory [--kind sse|ws] [--connections 1000] [--ws PROTOCOL]
                                           [--http PROTOCOL] [--only PATH_PART] [--depth 6] [--top 25]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import tracemalloc
from collections import Counter

import uvloop

from benchmarks.harness.database import bench_env, claim_and_flush, clear_data, users
from benchmarks.harness.load import Listeners, raise_open_files, user_tokens
from notifier.gateway.tuning import HTTP_PROTOCOL, WS_PROTOCOL
from tests.support.processes import free_port


def owner(trace: tracemalloc.Traceback) -> str:
    """Who holds an allocation: notifier when any frame is ours, else the allocating file."""
    files = [frame.filename for frame in trace]
    if any("/notifier/" in f for f in files):
        return "notifier (and what it calls)"
    last = files[-1]
    for part, name in (("websockets_sansio", "uvicorn WebSocket protocol"), ("/uvicorn/", "uvicorn"),
                       ("/websockets/", "websockets"), ("/asyncio/", "asyncio")):
        if part in last:
            return name
    return last.rsplit("/", 1)[-1]


async def probe(args: argparse.Namespace) -> None:
    import uvicorn

    from notifier.gateway import app

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, loop="uvloop", http=args.http,
                                           ws=args.ws, log_level="warning", access_log=False, backlog=4096))
    tokens = user_tokens(users("memory", args.connections))
    serving = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers a flag, not an event
        await asyncio.sleep(0.05)
    loop = asyncio.get_running_loop()
    gc.collect()
    tracemalloc.start(args.depth)
    before = tracemalloc.take_snapshot()
    listeners = Listeners(args.kind, port, tokens)
    try:
        opened, _, reasons, failed = await loop.run_in_executor(None, listeners.wait_connected, 300)
        if failed:
            raise RuntimeError(f"{failed} connections failed, e.g. {reasons}")
        await asyncio.sleep(1)
        gc.collect()
        stats = tracemalloc.take_snapshot().compare_to(before, "traceback")
    finally:
        tracemalloc.stop()
        await loop.run_in_executor(None, listeners.stop)
        server.should_exit = True
        await serving
    groups: Counter[str] = Counter()
    for stat in stats:
        groups[owner(stat.traceback)] += stat.size_diff
    print(f"{args.kind} x{opened}: {sum(groups.values()) / opened / 1024:.2f} KiB traced per connection")
    for name, size in groups.most_common(12):
        print(f"  {size / opened:8.0f} B  {name}")
    shown = [s for s in stats if args.only is None or any(args.only in f.filename for f in s.traceback)]
    for stat in shown[:args.top]:
        print(f"{stat.size_diff / opened:8.0f} B {stat.count_diff / opened:6.2f} objects")
        for frame in stat.traceback:
            print(f"      {frame.filename}:{frame.lineno}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=["sse", "ws"], default="ws")
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--http", default=HTTP_PROTOCOL, help="uvicorn's --http (e.g. httptools, uvicorn's own)")
    parser.add_argument("--ws", default=WS_PROTOCOL, help="uvicorn's --ws (e.g. websockets-sansio, uvicorn's own)")
    parser.add_argument("--only", default=None, help="list only allocation sites with a frame whose file has this")
    parser.add_argument("--depth", type=int, default=6, help="frames kept per allocation")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    raise_open_files()
    bench_env(NOTIFIER_HEARTBEAT_SECONDS="30")
    claim_and_flush()
    clear_data()
    uvloop.run(probe(args))


if __name__ == "__main__":
    main()
