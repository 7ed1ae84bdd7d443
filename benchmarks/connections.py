"""Figure 5: one gateway process holds 10,000 live connections and a broadcast reaches them all.

One ``uvicorn notifier.gateway:app`` process (uvloop); a load generator in another process opens
10,000 SSE connections (then, separately, 10,000 WebSocket connections at ``/v1/ws``), one user each.
Then one ``broadcast`` to those users goes through the workers and out to every connection. Reported:
connect rate, gateway RSS per connection, gateway CPU, and the broadcast's delivery latency to every
client. Targets at 10,000: p99 <= 1 s, RSS <= 20 KiB per connection; issue 15: <= 12 KiB, and p99 <= 4 s
at 50,000. The open-file limit is raised here, for this process and its children only, to its hard
limit; a count the limit cannot hold is refused at the start with the largest one it can.

    python -m benchmarks.connections [--connections 10000] [--kinds sse,ws] [--runs 3] [--generators N]

``--counts`` adds a count sweep (SSE and WebSocket, one run each) for the plot. Past what one load
generator can hold (its open-file limit, or about 28,000 sockets from one source address to one
port), the clients are split over several generator processes, each connecting from its own loopback
address (``benchmarks/harness/load.py``); ``--generators`` sets how many. The gateway is one process
whatever the count, so the count is bounded by its open-file limit: 50,000 needs a hard limit of at
least 51,000 (``ulimit -Hn``; raising it needs root or CAP_SYS_RESOURCE, e.g. ``prlimit`` or
``LimitNOFILE=`` in a systemd unit).

Each run of the gateway is followed by one of each peer (``--peers``), on the same clients, workers
and Redis, so only the server differs:

- ``floor`` (the default): ``benchmarks/floor_server.py``, the least a Python server must do per
  live event; the broadcast goes through the workers as for the gateway. Reported: the gateway's
  broadcast p99 over the floor's (target <= 2.5x) and the floor's RSS per connection.
- ``socketio`` (``pip install -e '.[peers]'``): python-socketio with ``AsyncRedisManager``, one room
  per user, WebSocket only (``benchmarks/peers/socketio_server.py``); the broadcast is emitted to
  each user's room through its own write-only manager. Reported: the gateway's WebSocket broadcast
  rate (connections over the time until all received) over python-socketio's (target >= 3x).

    python -m benchmarks.connections [--connections 10000] [--kinds sse,ws] [--runs 3] [--peers floor,socketio]

To price a piece of the gateway's tuning, ``--variant NAME=OPTION[+OPTION...]`` (repeatable) adds a
gateway configuration, run interleaved with the product's (``base``): base, A, B, base, A, B, ... for
``--runs`` rounds. Options: ``ws:PROTOCOL`` (uvicorn's ``--ws``: ``websockets-sansio``, uvicorn's own, or
``benchmarks._tuned_gateway:UnjoinedWebSocketProtocol``, the lean one without joined writes; such a
variant is skipped for SSE), ``http:PROTOCOL`` (uvicorn's ``--http``: ``httptools``, uvicorn's own, or
``notifier.gateway.http_protocol:GuardedHttpProtocol``, the limits without the lean state),
``gc:YOUNG,MIDDLE,OLD`` (``gc.set_threshold``; 700,10,10 is CPython's default), ``nofreeze`` (no
``gc.freeze`` and no periodic full pass). The ``gc`` and ``nofreeze`` options are switches of
``benchmarks._tuned_gateway``, not settings of the product. Saved as ``results/connections_tuning.json``.

    python -m benchmarks.connections --counts '' --runs 3 --variant stock-ws=ws:websockets-sansio \
        --variant cpython-gc=gc:700,10,10 --variant no-freeze=nofreeze \
        --variant unjoined=ws:benchmarks._tuned_gateway:UnjoinedWebSocketProtocol
"""

from __future__ import annotations

import asyncio
import importlib.util
import shlex
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from benchmarks.harness.database import bench_env, claim_and_flush, clear_data, users
from benchmarks.harness.load import Listeners, generators_needed, raise_open_files, user_tokens
from benchmarks.harness.meters import CpuMeter, process_cpu, wait_quiet
from benchmarks.harness.processes import FloorServer, Gateway, Server, SocketIOServer, Worker, start_workers
from benchmarks.harness.profiling import profile
from benchmarks.harness.report import Figure, arguments, latency_summary, report

QUEUES = ["router", "realtime"]


@dataclass
class Variant:
    """A gateway configuration to compare: uvicorn's ``--ws`` and ``benchmarks._tuned_gateway``'s options."""

    name: str
    ws: str | None = None
    http: str | None = None
    tuning: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, spec: str) -> Variant:
        name, _, options = spec.partition("=")
        variant = cls(name)
        for option in filter(None, options.split("+")):
            key, _, value = option.partition(":")
            if key == "ws":
                variant.ws = value
            elif key == "http":
                variant.http = value
            elif key == "gc":
                variant.tuning += ["--gc-threshold", value]
            elif key == "nofreeze":
                variant.tuning.append("--no-freeze")
            else:
                raise SystemExit(f"unknown variant option {option!r} (ws:PROTOCOL, http:PROTOCOL, gc:N,N,N, nofreeze)")
        return variant

    def applies_to(self, kind: str) -> bool:
        """A variant that only changes the WebSocket protocol has nothing to say about SSE."""
        return kind == "ws" or bool(self.tuning) or self.ws is None or self.http is not None


GATEWAY_SPARE_FILES = 500
"""Descriptors the gateway needs besides its clients' sockets: Redis connections, its listening socket,
modules, logs (a few dozen in fact; the rest is margin)."""


def through_workers(recipients: Sequence[str], sent_at: float) -> None:
    """notifier's ``broadcast`` to the users: the workers route it and publish one live event each."""
    from notifier import broadcast

    broadcast({"type": "benchmark", "title": "To everyone connected", "channels": ["realtime"],
               "data": {"sent_at": sent_at}}, user_ids=recipients)


def through_socketio(recipients: Sequence[str], sent_at: float) -> None:
    """python-socketio's way: a write-only ``AsyncRedisManager`` emits to each user's room."""
    from benchmarks.peers.socketio_server import emit_to_each

    asyncio.run(emit_to_each(recipients, {"id": str(uuid.uuid4()), "type": "benchmark",
                                          "title": "To everyone connected", "data": {"sent_at": sent_at}}))


@dataclass(frozen=True)
class Peer:
    """A server the gateway is measured against in the same run: same clients, Redis and machine."""

    name: str
    start: Callable[[dict[str, str]], Server]
    clients: dict[str, str]
    """The benchmark's kinds it serves -> the load generator's client kind for each."""
    send: Callable[[Sequence[str], float], None] = through_workers
    module: str = ""
    """A package it needs that the product does not (checked before the first run)."""


PEERS = {"floor": Peer("floor", FloorServer, {"sse": "sse", "ws": "ws"}),
         "socketio": Peer("socketio", SocketIOServer, {"ws": "sio"}, through_socketio, module="socketio")}


def one_run(kind: str, run: int, env: dict[str, str], worker: Worker, count: int, profiled: bool = False,
            variant: Variant | None = None, peer: Peer | None = None, generators: int = 1) -> dict[str, Any]:
    """One server (the gateway as ``variant`` has it, or ``peer``) holding ``count`` connections of
    ``kind`` and a broadcast to all of them."""
    variant = variant or Variant("base")
    recipients = users(f"conn-{kind}{run}", count)
    tokens = user_tokens(recipients)
    server = peer.start(env) if peer else Gateway(env, ws=variant.ws, tuning=variant.tuning, http=variant.http)
    server.wait_ready()
    listeners = None
    try:
        time.sleep(1)
        rss_idle, cpu0 = server.rss(), process_cpu(server.pid)
        stop_profile = profile(profiled, f"connections-{kind}-connect", {server.name: server.pid}, subprocesses=False)
        listeners = Listeners(peer.clients[kind] if peer else kind, server.port, tokens, generators=generators)
        opened, seconds, reasons, failed = listeners.wait_connected(300)
        stop_profile()
        if failed:
            raise RuntimeError(f"{failed} {kind} connections to {server.name} failed, e.g. {reasons}")
        time.sleep(2)
        rss_held, cpu1 = server.rss(), process_cpu(server.pid)
        stop_profile = profile(profiled, f"connections-{kind}-broadcast", {server.name: server.pid},
                               subprocesses=False)
        meter = CpuMeter([worker, server], {"clients": listeners.pids}).start()
        sent_at = time.time()
        (peer.send if peer else through_workers)(recipients, sent_at)
        sent_s = time.time() - sent_at
        received = listeners.collect(count, timeout=60)
        cpu2 = process_cpu(server.pid)
        meter.stop()
        stop_profile()
    finally:
        if listeners is not None:
            listeners.stop()
        server.stop()
    if len(received) != count:
        raise RuntimeError(f"broadcast reached {len(received)} of {count} {kind} connections to {server.name}")
    latency = latency_summary([r.at - sent_at for r in received])
    return {"connections": opened, "generators": generators, "connect_s": seconds, "connect_rate": opened / seconds,
            "rss_idle_mib": rss_idle / 2**20, "rss_held_mib": rss_held / 2**20,
            "rss_per_connection_kib": (rss_held - rss_idle) / opened / 1024,
            "connect_cpu_s": cpu1 - cpu0, "broadcast_cpu_s": cpu2 - cpu1,
            "broadcast_p50_s": latency["p50"], "broadcast_p99_s": latency["p99"], "broadcast_max_s": latency["max"],
            "broadcast_rate": count / latency["max"], "send_s": sent_s, "broadcast_cpu": meter.line()}


def print_row(named: str, run: int, row: dict[str, Any]) -> None:
    print(f"{named} run {run + 1}: {row['connections']} open ({row['generators']} load generator(s)) "
          f"in {row['connect_s']:.1f} s "
          f"({row['connect_rate']:,.0f}/s, server CPU {row['connect_cpu_s']:.1f} s); RSS "
          f"{row['rss_idle_mib']:.0f} -> {row['rss_held_mib']:.0f} MiB = "
          f"{row['rss_per_connection_kib']:.1f} KiB/connection; broadcast p50 "
          f"{row['broadcast_p50_s'] * 1000:.0f} ms, p99 {row['broadcast_p99_s'] * 1000:.0f} ms, max "
          f"{row['broadcast_max_s'] * 1000:.0f} ms (server CPU {row['broadcast_cpu_s']:.2f} s; sent in "
          f"{row['send_s'] * 1000:.0f} ms)\n  broadcast {row['broadcast_cpu']}", flush=True)


def peer_figures(label: str, count: int, peer: Peer, gateway: list[dict[str, Any]],
                 rows: list[dict[str, Any]]) -> list[Figure]:
    """The gateway's runs against the peer's, pair by pair (run i of each ran next to each other)."""
    named = f"{label} x{count}"
    if peer.name == "floor":
        figures = [Figure(f"{named}: gateway broadcast p99 over the floor server's", "s",
                          [r["broadcast_p99_s"] for r in gateway], baseline_name="floor server broadcast p99",
                          baseline_unit="s", baselines=[r["broadcast_p99_s"] for r in rows],
                          target="<= 2.5x the floor", higher_is_better=False)]
    else:
        figures = [Figure(f"{named}: gateway broadcast rate (connections / time until all received)",
                          "connections/s", [r["broadcast_rate"] for r in gateway],
                          baseline_name=f"{peer.name} broadcast rate", baseline_unit="connections/s",
                          baselines=[r["broadcast_rate"] for r in rows], target=f">= 3x {peer.name}")]
    for key, name, unit in [("broadcast_p99_s", "broadcast reaches all, p99", "s"),
                            ("rss_per_connection_kib", "RSS per connection", "KiB"),
                            ("broadcast_cpu_s", "server CPU for the broadcast", "s")]:
        figures.append(Figure(f"{named} {peer.name}: {name}", unit, [r[key] for r in rows], higher_is_better=False))
    return figures


def check_open_files(count: int, limit: int) -> None:
    """Refuse, at the start and in one sentence, a count the open-file limit cannot hold (the gateway
    is one process, so its limit bounds the count; the load generators can be several)."""
    if count + GATEWAY_SPARE_FILES <= limit:
        return
    raise SystemExit(
        f"{count:,} connections need an open-file limit of at least {count + GATEWAY_SPARE_FILES:,} in the "
        f"gateway process, and the hard limit here is {limit:,} (ulimit -Hn), so one gateway holds at most "
        f"{limit - GATEWAY_SPARE_FILES:,}: run with --connections {limit - GATEWAY_SPARE_FILES} (and --counts at "
        "most that), or raise the hard limit (root with CAP_SYS_RESOURCE: prlimit, ulimit -Hn, LimitNOFILE=)")


def print_sweep_row(kind: str, row: dict[str, Any]) -> None:
    print(f"{kind} x{row['connections']} ({row['generators']} load generator(s)): connect "
          f"{row['connect_rate']:,.0f}/s, {row['rss_per_connection_kib']:.1f} KiB/connection, broadcast p50 "
          f"{row['broadcast_p50_s'] * 1000:.0f} ms, p99 {row['broadcast_p99_s'] * 1000:.0f} ms\n  broadcast "
          f"{row['broadcast_cpu']}", flush=True)


def main() -> None:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--kinds", default="sse,ws")
    parser.add_argument("--counts", default="1000,2500,5000",
                        help="extra connection counts for the plot, one run each per kind ('' to skip)")
    parser.add_argument("--generators", type=int, default=0,
                        help="load-generator processes (0: as many as the count needs, see the docstring)")
    parser.add_argument("--gc-threshold", default=None,
                        help="run every gateway with gc.set_threshold(YOUNG,MIDDLE,OLD) (700,10,10 is CPython's)")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=OPTION[+OPTION]",
                        help="a gateway configuration run interleaved with the product's (see the docstring)")
    parser.add_argument("--peers", default="floor",
                        help=f"servers run after each gateway run, comma-separated: {', '.join(PEERS)} ('' for none)")
    args = parser.parse_args()
    base = Variant.parse(f"base=gc:{args.gc_threshold}" if args.gc_threshold else "base")
    variants = [base, *(Variant.parse(spec) for spec in args.variant)]
    counts = [int(c) for c in args.counts.split(",") if c.strip()]
    unknown = [name for name in args.peers.split(",") if name and name not in PEERS]
    if unknown:
        raise SystemExit(f"unknown peer {unknown[0]!r} (peers: {', '.join(PEERS)})")
    peers = [PEERS[name] for name in args.peers.split(",") if name]
    for peer in peers:
        if peer.module and importlib.util.find_spec(peer.module) is None:
            raise SystemExit(f"the {peer.name} peer needs {peer.module}: pip install -e '.[peers]'")
    limit = raise_open_files()
    check_open_files(max([args.connections, *counts]), limit)
    kinds = args.kinds.split(",")

    def generators(count: int) -> int:
        return args.generators or generators_needed(count, limit)

    env = bench_env(NOTIFIER_HEARTBEAT_SECONDS="30")
    claim_and_flush()
    worker = start_workers(env, QUEUES)
    figures: list[Figure] = []
    series: dict[str, Any] = {}
    for kind in kinds:
        label = {"sse": "SSE", "ws": "WebSocket"}[kind]
        rows: dict[str, list[dict[str, float]]] = {v.name: [] for v in variants if v.applies_to(kind)}
        kind_peers = [p for p in peers if kind in p.clients]
        peer_rows: dict[str, list[dict[str, Any]]] = {p.name: [] for p in kind_peers}
        for run in range(args.runs):
            for variant in (v for v in variants if v.applies_to(kind)):
                clear_data()
                wait_quiet()
                row = one_run(kind, run, env, worker, args.connections, args.profile and run == 0, variant,
                              generators=generators(args.connections))
                rows[variant.name].append(row)
                print_row(f"{label} {variant.name}" if len(variants) > 1 else label, run, row)
            for peer in kind_peers:
                clear_data()
                wait_quiet()
                row = one_run(kind, run, env, worker, args.connections, peer=peer,
                              generators=generators(args.connections))
                peer_rows[peer.name].append(row)
                print_row(f"{label} {peer.name}", run, row)
        series[kind] = rows[base.name]
        for peer in kind_peers:
            series[f"{kind}_{peer.name}"] = peer_rows[peer.name]
            figures += peer_figures(label, args.connections, peer, rows[base.name], peer_rows[peer.name])
        for name_of_variant, variant_rows in rows.items():
            if not variant_rows:
                continue
            named = f"{label} {name_of_variant}" if len(variants) > 1 else label
            for key, name, unit, target in [
                    ("broadcast_p99_s", "broadcast reaches all, p99", "s", "<= 1 s"),
                    ("broadcast_p50_s", "broadcast reaches all, p50", "s", ""),
                    ("rss_per_connection_kib", "gateway RSS per connection", "KiB", "<= 12 KiB"),
                    ("connect_rate", "connect rate", "connections/s", ""),
                    ("connect_cpu_s", "gateway CPU to accept them", "s", ""),
                    ("broadcast_cpu_s", "gateway CPU for the broadcast", "s", "")]:
                figures.append(Figure(f"{named} x{args.connections}: {name}", unit,
                                      [r[key] for r in variant_rows], target=target,
                                      higher_is_better=key == "connect_rate"))
        if len(variants) > 1:
            series[f"{kind}_variants"] = rows
    sweep = []
    for kind in kinds:
        for i, n in enumerate(counts):
            clear_data()
            wait_quiet()
            row = one_run(kind, 100 + i, env, worker, n, variant=base, generators=generators(n))
            print_sweep_row(kind, row)
            sweep.append({"kind": kind, **row})
        if series.get(kind) and args.connections not in counts:
            median = statistics.median(r["broadcast_p99_s"] for r in series[kind])
            sweep.append({"kind": kind, **min(series[kind], key=lambda r: abs(r["broadcast_p99_s"] - median))})
    for row in sorted(sweep, key=lambda r: (r["kind"], r["connections"])):
        print_sweep_row(row["kind"], row)
    worker.stop()
    report("connections_tuning" if len(variants) > 1 else "connections", figures, {
        "runs": series, "count_sweep": sweep, "settings": {
            "connections": args.connections, "gc_threshold": args.gc_threshold, "peers": [p.name for p in peers],
            "open_file_limit": limit,
            "variants": {v.name: {"ws": v.ws, "http": v.http, "tuning": v.tuning} for v in variants}}},
        command=shlex.join(["python", "-m", "benchmarks.connections", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
