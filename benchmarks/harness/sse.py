"""One SSE connection as a bare asyncio protocol: the HTTP head, chunked framing and the events.

Hand-written because it is a load generator: it opens 10,000 connections in one process that shares
the cores with the gateway it measures, so every byte it spends per event is taken from the figure.
httpx or aiohttp keep a client, a response object and a stream reader per connection; this keeps
three byte strings.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson

OnEvent = Callable[[str, dict[str, Any]], None]
"""Called with each event's kind and decoded data."""


class _SSEProtocol(asyncio.Protocol):
    def __init__(self, request: bytes, on_event: OnEvent, connected: asyncio.Event,
                 done: asyncio.Future[None]) -> None:
        self.request, self.on_event, self.connected, self.done = request, on_event, connected, done
        self.raw = b""
        self.events = b""
        self.head = True

    def connection_made(self, transport: Any) -> None:
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.raw += data
        if self.head:
            end = self.raw.find(b"\r\n\r\n")
            if end < 0:
                return
            head, self.raw = self.raw[:end], self.raw[end + 4:]
            status = int(head.split(b" ", 2)[1])
            if status != 200 or b"transfer-encoding: chunked" not in head.lower():
                self._finish(RuntimeError(f"SSE answered {status}: {self.raw[:500].decode(errors='replace')}"))
                return
            self.head = False
        while True:
            line_end = self.raw.find(b"\r\n")
            if line_end < 0:
                break
            size = int(self.raw[:line_end], 16)
            if size == 0:
                self._finish(None)
                return
            if len(self.raw) < line_end + 2 + size + 2:
                break
            self.events += self.raw[line_end + 2:line_end + 2 + size]
            self.raw = self.raw[line_end + 2 + size + 2:]
        *complete, self.events = self.events.split(b"\n\n")
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


async def sse_client(port: int, token: str, on_event: OnEvent, connected: asyncio.Event) -> None:
    """One SSE connection to ``/v1/stream``: calls ``on_event(kind, data)`` per event and sets
    ``connected`` at the ``connected`` event; returns when the server ends the stream."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    request = (f"GET /v1/stream?token={token} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               "Accept: text/event-stream\r\n\r\n").encode()
    transport, _ = await loop.create_connection(lambda: _SSEProtocol(request, on_event, connected, done),
                                                "127.0.0.1", port)
    try:
        await done
    finally:
        transport.close()
