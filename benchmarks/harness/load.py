"""Live clients by the thousand: SSE or WebSocket connections, one per user, in a process of their own.

The load generator runs apart from the benchmark (``multiprocessing``, spawned) so its event loop
does not compete with this process's; it opens every connection, reports, then records what arrives
until asked to hand it over. SSE clients are ``sse.py``'s, WebSocket clients the websockets library's
(also for Socket.IO, the python-socketio peer's protocol).

One generator process holds at most its open-file limit of sockets, and one source address reaches
one server port from at most the ephemeral port range (``net.ipv4.ip_local_port_range``, about 28,000
ports by default). So :class:`Listeners` can split the tokens over several generators, each
connecting from a loopback address of its own (127.0.0.2, 127.0.0.3, ...; Linux routes all of
127.0.0.0/8 to the loopback interface), which is how 50,000 connections reach one gateway.
(A process elsewhere than on the gateway's host would need addresses of its own the same way.)
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import os
import resource
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import orjson

from benchmarks.harness.processes import Spawned
from benchmarks.harness.sse import OnEvent, connected_socket, sse_client


@dataclass
class Received:
    """A live notification as a client saw it: when, its id, and the producer's send time if it has one."""

    at: float
    notification_id: str
    sent_at: float | None


SOURCE_BASE = "127.0.0."
"""Generators connect from ``127.0.0.2`` to ``127.0.0.254``, a fresh address each, round the range."""
_sources = itertools.count(os.getpid())
"""Addresses handed out (from one that differs per benchmark process): each generator gets the next, so a
run does not connect from the address of the run just before it, whose closed connections (TIME_WAIT for
60 s, ~19,000 of them after a large run) made the next large run from 127.0.0.1 fail with EADDRNOTAVAIL."""
PORTS_PER_SOURCE = 28_000
"""Connections one source address can open to one port: Linux's default ephemeral range, 32768-60999."""


def raise_open_files() -> int:
    """Raise this process's open-file limit to its hard limit (children inherit it); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def user_tokens(user_ids: Sequence[str], ttl: int = 3600) -> list[str]:
    from notifier import tokens

    return [tokens.issue(u, ttl) for u in user_ids]


def generators_needed(count: int, open_files: int) -> int:
    """How many generator processes ``count`` connections need: each holds fewer sockets than its
    open-file limit (a few hundred spare) and fewer than one source address can open to one port."""
    per_process = min(open_files - 500, PORTS_PER_SOURCE)
    return max(1, -(-count // per_process))


async def ws_client(port: int, token: str, on_event: OnEvent, connected: asyncio.Event,
                    source: str | None = None) -> None:
    """One WebSocket connection to ``/v1/ws`` (from ``source``, an address of this host, if given);
    frames are JSON with a ``type``."""
    import websockets

    async with websockets.connect(f"ws://127.0.0.1:{port}/v1/ws?token={token}", open_timeout=60,
                                  ping_interval=None, max_queue=64, compression=None,
                                  sock=await connected_socket(port, source)) as ws:
        async for message in ws:
            frame = orjson.loads(message)
            kind = frame.get("type")
            if kind == "connected":
                connected.set()
            elif kind == "notification":
                on_event(kind, frame["notification"])


async def sio_client(port: int, token: str, on_event: OnEvent, connected: asyncio.Event,
                     source: str | None = None) -> None:
    """One Socket.IO connection (Engine.IO v4 over WebSocket only) to the python-socketio peer:
    answers the open (``0{...}``) by connecting the default namespace (``40``), is connected at the
    server's ``40{...}``, counts ``42["notification", {...}]`` events and answers each ping (``2``)."""
    import websockets

    async with websockets.connect(f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket&token={token}",
                                  open_timeout=60, ping_interval=None, max_queue=64, compression=None,
                                  sock=await connected_socket(port, source)) as ws:
        async for message in ws:
            if not isinstance(message, str):
                continue
            if message.startswith("42"):
                event = orjson.loads(message[2:])
                on_event(event[0], event[1])
            elif message.startswith("40"):
                connected.set()
            elif message.startswith("0"):
                await ws.send("40")
            elif message == "2":
                await ws.send("3")


CLIENTS = {"sse": sse_client, "ws": ws_client, "sio": sio_client}
"""The load generator's client kinds."""


def _listener_main(kind: str, port: int, tokens: list[str], parallel: int, source: str | None,
                   conn: Connection) -> None:
    """One load generator (a separate process): open every connection (from ``source``, if given),
    report, then record what arrives until told to hand it over.

    Once every connection is open, what they hold is frozen out of the collector's sight: 10,000
    WebSocket clients are enough objects that each full collection took 300-390 ms and freed nothing,
    and one landing in a broadcast delayed the clients' receipts by as much (10,000 WebSocket
    connections, events published straight to the live channels: without it (4 and 3 runs), p99
    287-621 ms against the floor server and 449-928 ms against the gateway, clients' CPU 0.24-0.72 s;
    with it (2 runs each), 296-308 and 456-481 ms, 0.25-0.34 s, no full collection in the broadcast)."""
    import uvloop

    raise_open_files()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        received: list[Received] = []
        failures: list[str] = []
        client = CLIENTS[kind]

        def on_event(event: str, data: dict[str, Any]) -> None:
            if event == "notification":
                received.append(Received(time.time(), data.get("id", ""), (data.get("data") or {}).get("sent_at")))

        gate = asyncio.Semaphore(parallel)
        tasks = []

        async def one(token: str) -> None:
            ready = asyncio.Event()
            async with gate:
                task = asyncio.ensure_future(client(port, token, on_event, ready, source))
                waiter = asyncio.ensure_future(ready.wait())
                done, _ = await asyncio.wait({task, waiter}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
                if waiter not in done:
                    waiter.cancel()
                    failures.append(repr(task.exception()) if task.done() and task.exception() else "timeout")
                    task.cancel()
                    return
            tasks.append(task)

        start = time.monotonic()
        await asyncio.gather(*(one(t) for t in tokens))
        gc.freeze()  # see _listener_main's docstring
        conn.send(("connected", len(tasks), time.monotonic() - start, failures[:5], len(failures)))
        while True:
            command = await loop.run_in_executor(None, conn.recv)
            if command[0] == "collect":
                expected, timeout = command[1], command[2]
                deadline = time.monotonic() + timeout
                while len(received) < expected and time.monotonic() < deadline:  # noqa: ASYNC110 - polls a list
                    await asyncio.sleep(0.01)
                conn.send(("received", [(r.at, r.notification_id, r.sent_at) for r in received]))
                received.clear()
            elif command[0] == "stop":
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                conn.send(("stopped",))
                return

    uvloop.run(main())


class Listeners:
    """Live clients in ``generators`` other processes: ``kind`` is one of :data:`CLIENTS`, one connection per
    token, the tokens dealt out evenly; each generator connects from a loopback address of its own."""

    def __init__(self, kind: str, port: int, tokens: list[str], parallel: int = 200, generators: int = 1) -> None:
        self.shares = [tokens[i::generators] for i in range(generators)]
        self.generators = [
            Spawned(_listener_main, kind, port, share, max(1, parallel // generators),
                    f"{SOURCE_BASE}{next(_sources) % 253 + 2}")
            for share in self.shares]

    @property
    def pid(self) -> int:
        return self.generators[0].pid

    @property
    def pids(self) -> list[int]:
        return [g.pid for g in self.generators]

    def wait_connected(self, timeout: float = 300) -> tuple[int, float, list[str], int]:
        """(connections open, seconds until the last generator had them all, a few failure reasons,
        failure count)."""
        count, seconds, failed = 0, 0.0, 0
        reasons: list[str] = []
        deadline = time.monotonic() + timeout
        for generator in self.generators:
            if not generator.conn.poll(max(0.0, deadline - time.monotonic())):
                raise TimeoutError("clients did not finish connecting")
            _, opened, took, why, lost = generator.conn.recv()
            count, seconds, reasons, failed = count + opened, max(seconds, took), reasons + why, failed + lost
        return count, seconds, reasons[:5], failed

    def collect(self, expected: int, timeout: float) -> list[Received]:
        """What every generator received; each waits for its share of ``expected`` (the tokens' users
        each get the same number of notifications)."""
        total = sum(len(share) for share in self.shares) or 1
        for generator, share in zip(self.generators, self.shares, strict=True):
            generator.conn.send(("collect", -(-expected * len(share) // total), timeout))
        received: list[Received] = []
        for generator in self.generators:
            if not generator.conn.poll(timeout + 30):
                raise TimeoutError("clients did not report")
            received += [Received(*r) for r in generator.conn.recv()[1]]
        return sorted(received, key=lambda r: r.at)

    def stop(self) -> None:
        for generator in self.generators:
            generator.stop(("stop",))
