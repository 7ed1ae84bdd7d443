"""One SSE connection as a bare asyncio protocol: httptools parses the HTTP, this splits the events.

The load generator opens 10,000 of these in one process that shares the cores with the gateway it
measures, so a connection must cost little: httpx or aiohttp would keep a client, a response and a
stream reader per connection. This keeps an httptools response parser (the C parser the gateway
runs here with uvicorn's ``--http httptools``; installed with ``uvicorn[standard]``) for the HTTP head
and the chunked framing, and splits the events itself: blank-line separated ``event:`` and ``data:``
lines are all the gateway sends. It replaced a hand-written chunked decoder; on the same bytes it
costs 2.5-2.9 µs of CPU per event against 3.1-3.4, and 0.9 KB per connection against 0.15 (in the
load generator, not in the gateway whose memory is measured); figure 5's numbers at 2,000 SSE
connections stayed within run-to-run noise (``benchmarks/RESULTS.md``, "Reproducing").
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

import httptools
import orjson

OnEvent = Callable[[str, dict[str, Any]], None]
"""Called with each event's kind and decoded data."""


class _SSEProtocol(asyncio.Protocol):
    def __init__(self, request: bytes, on_event: OnEvent, connected: asyncio.Event,
                 done: asyncio.Future[None]) -> None:
        self.request, self.on_event, self.connected, self.done = request, on_event, connected, done
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.events = b""
        """Body bytes after the last complete event (or, when the answer is not 200, its start)."""

    def connection_made(self, transport: Any) -> None:
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._finish(exc)

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        if self.status != 200:
            self.events = (self.events + body)[:500]
            return
        *complete, self.events = (self.events + body).split(b"\n\n")
        for raw in complete:
            kind, payload = "message", b""
            for line in raw.split(b"\n"):
                if line.startswith(b"event: "):
                    kind = line[7:].decode()
                elif line.startswith(b"data: "):
                    payload += line[6:]
            if kind == "connected":
                self.connected.set()
            elif payload:
                self.on_event(kind, orjson.loads(payload))

    def on_message_complete(self) -> None:
        if self.status == 200:
            self._finish(None)
        else:
            self._finish(RuntimeError(f"SSE answered {self.status}: {self.events.decode(errors='replace')}"))

    def eof_received(self) -> None:
        self._finish(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish(exc)

    def _finish(self, exc: BaseException | None) -> None:
        if self.done.done():
            return
        if exc is None:
            self.done.set_result(None)
        else:
            self.done.set_exception(exc)


async def connected_socket(port: int, source: str | None) -> socket.socket:
    """A TCP socket connected to ``127.0.0.1:port`` from ``source`` (this host's address; the default if None).

    Bound with ``IP_BIND_ADDRESS_NO_PORT``, so the kernel picks the source port at connect time, for
    this destination, as it does for an unbound socket: bound without it (``local_addr=``), each bind
    searched the address's ports in use, and one generator opened 19,000 connections at 1,056-1,094/s
    against 1,564-1,684/s unbound.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        if source is not None:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind((source, 0))
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    except BaseException:
        sock.close()
        raise
    return sock


async def sse_client(port: int, token: str, on_event: OnEvent, connected: asyncio.Event,
                     source: str | None = None) -> None:
    """One SSE connection to ``/v1/stream`` (from ``source``, an address of this host, if given): calls
    ``on_event(kind, data)`` per event and sets ``connected`` at the ``connected`` event; returns when
    the server ends the stream."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    request = (f"GET /v1/stream?token={token} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               "Accept: text/event-stream\r\n\r\n").encode()
    transport, _ = await loop.create_connection(lambda: _SSEProtocol(request, on_event, connected, done),
                                                sock=await connected_socket(port, source))
    try:
        await done
    finally:
        transport.close()
