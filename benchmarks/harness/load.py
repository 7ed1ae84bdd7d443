"""Live clients by the thousand: SSE or WebSocket connections, one per user, in a process of their own.

The load generator runs apart from the benchmark (``multiprocessing``, spawned) so its event loop
does not compete with this process's; it opens every connection, reports, then records what arrives
until asked to hand it over. SSE clients are ``sse.py``'s, WebSocket clients the websockets library's
(also for Socket.IO, the python-socketio peer's protocol).
"""

from __future__ import annotations

import asyncio
import gc
import resource
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import orjson

from benchmarks.harness.processes import Spawned
from benchmarks.harness.sse import OnEvent, sse_client


@dataclass
class Received:
    """A live notification as a client saw it: when, its id, and the producer's send time if it has one."""

    at: float
    notification_id: str
    sent_at: float | None


def raise_open_files() -> int:
    """Raise this process's open-file limit to its hard limit (children inherit it); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def user_tokens(user_ids: Sequence[str], ttl: int = 3600) -> list[str]:
    from notifier import tokens

    return [tokens.issue(u, ttl) for u in user_ids]


async def ws_client(port: int, token: str, on_event: OnEvent, connected: asyncio.Event) -> None:
    """One WebSocket connection to ``/v1/ws``; frames are JSON with a ``type``."""
    import websockets

    async with websockets.connect(f"ws://127.0.0.1:{port}/v1/ws?token={token}", open_timeout=60,
                                  ping_interval=None, max_queue=64, compression=None) as ws:
        async for message in ws:
            frame = orjson.loads(message)
            kind = frame.get("type")
            if kind == "connected":
                connected.set()
            elif kind == "notification":
                on_event(kind, frame["notification"])


async def sio_client(port: int, token: str, on_event: OnEvent, connected: asyncio.Event) -> None:
    """One Socket.IO connection (Engine.IO v4 over WebSocket only) to the python-socketio peer:
    answers the open (``0{...}``) by connecting the default namespace (``40``), is connected at the
    server's ``40{...}``, counts ``42["notification", {...}]`` events and answers each ping (``2``)."""
    import websockets

    async with websockets.connect(f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket&token={token}",
                                  open_timeout=60, ping_interval=None, max_queue=64, compression=None) as ws:
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


def _listener_main(kind: str, port: int, tokens: list[str], parallel: int, conn: Connection) -> None:
    """The load generator (a separate process): open every connection, report, then record what
    arrives until told to hand it over.

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
                task = asyncio.ensure_future(client(port, token, on_event, ready))
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


class Listeners(Spawned):
    """Live clients in another process: ``kind`` is one of :data:`CLIENTS`, one connection per token."""

    def __init__(self, kind: str, port: int, tokens: list[str], parallel: int = 200) -> None:
        super().__init__(_listener_main, kind, port, tokens, parallel)

    def wait_connected(self, timeout: float = 300) -> tuple[int, float, list[str], int]:
        """(connections open, seconds it took, a few failure reasons, failure count)."""
        if not self.conn.poll(timeout):
            raise TimeoutError("clients did not finish connecting")
        _, count, seconds, reasons, failed = self.conn.recv()
        return count, seconds, reasons, failed

    def collect(self, expected: int, timeout: float) -> list[Received]:
        self.conn.send(("collect", expected, timeout))
        if not self.conn.poll(timeout + 30):
            raise TimeoutError("clients did not report")
        return [Received(*r) for r in self.conn.recv()[1]]

    def stop(self, command: object = ("stop",)) -> None:
        super().stop(command)
