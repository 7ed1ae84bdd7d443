"""uvicorn's WebSocket protocol with less state per connection, for a gateway holding thousands of them.

uvicorn's ``websockets-sansio`` protocol keeps, for every open WebSocket, an ``asyncio.Queue`` (four
deques), an ``asyncio.Event`` (one more), and the parsed handshake request and response with their
headers, all for as long as the connection lives. That is about 7 of the 25 KiB a notifier WebSocket
costs. This subclass swaps the queue and the event for list-backed equivalents and lets the handshake
go (headers included) once it is answered. It also joins the frames one event-loop turn sends into
one write (:class:`JoinedWrites`): a broadcast sends each connection two frames. The wire protocol,
keepalive pings and flow control stay uvicorn's own. And it answers an upgrade that websockets
refuses before it is parsed (a line over 8 KiB: 414 or 431), which uvicorn leaves unsent on an open
connection; and it waits ``NOTIFIER_HANDSHAKE_TIMEOUT_SECONDS``, not uvicorn's 10 s, for the reply
to its Close frame.

Select it with ``uvicorn notifier.gateway:app --ws notifier.gateway.ws_protocol:LeanWebSocketProtocol``
(``notifier gateway`` does). It touches uvicorn's attributes ``queue``, ``writable``, ``request`` and
``response``, so the ``uvicorn`` requirement in pyproject.toml names the version range it was read
against, and the gateway's WebSocket tests run through it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from notifier.config import get_settings

IMPORT_PATH = "notifier.gateway.ws_protocol:LeanWebSocketProtocol"
"""What to pass as uvicorn's ``--ws`` option."""


class _Waiters:
    """Futures to wake, created only while somebody waits (an idle connection holds none)."""

    __slots__ = ("_futures",)

    def __init__(self) -> None:
        self._futures: list[asyncio.Future[None]] | None = None

    async def wait(self) -> None:
        future = asyncio.get_running_loop().create_future()
        futures = self._futures
        if futures is None:
            futures = self._futures = []
        futures.append(future)
        try:
            await future
        finally:
            futures.remove(future)
            if not futures and self._futures is futures:
                self._futures = None

    def wake_all(self) -> None:
        for future in self._futures or ():
            if not future.done():
                future.set_result(None)


class Mailbox(_Waiters):
    """The part of ``asyncio.Queue`` uvicorn uses for received ASGI events: ``put_nowait``, ``get``, ``empty``."""

    __slots__ = ("_items",)

    def __init__(self) -> None:
        super().__init__()
        self._items: list[Any] = []

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        self.wake_all()

    async def get(self) -> Any:
        while not self._items:
            await self.wait()
        return self._items.pop(0)

    def empty(self) -> bool:
        return not self._items


class Flag(_Waiters):
    """The part of ``asyncio.Event`` uvicorn uses for "the transport may be written": set, clear, wait."""

    __slots__ = ("_value",)

    def __init__(self, value: bool) -> None:
        super().__init__()
        self._value = value

    def set(self) -> None:
        self._value = True
        self.wake_all()

    def clear(self) -> None:
        self._value = False

    def is_set(self) -> bool:
        return self._value

    async def wait(self) -> None:
        while not self._value:
            await super().wait()


class JoinedWrites:
    """A transport that joins what one event-loop turn writes into one write: a notification and the
    unread count that follows it are two frames, sent back to back, and each write is a system call."""

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] | None = None

    def write(self, data: bytes) -> None:
        if self._pending is None:
            self._pending = [data]
            self._loop.call_soon(self.flush)
        else:
            self._pending.append(data)

    def flush(self) -> None:
        pending, self._pending = self._pending, None
        if pending and not self._transport.is_closing():
            self._transport.write(b"".join(pending))

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class LeanWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol, minus what an open connection no longer needs."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = Mailbox()  # type: ignore[assignment]
        self.writable = Flag(True)  # type: ignore[assignment]
        # uvicorn waits 10 s for the reply to a Close (e.g. 4401 to a bad token), holding the socket.
        self.close_timeout = get_settings().handshake_timeout_seconds

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.transport = JoinedWrites(self.transport, self.loop)  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        """Send websockets' own refusal of a malformed upgrade (414, 431, or nothing for a request
        that is not HTTP) and close: uvicorn only writes answers to a request that parsed."""
        super().data_received(data)
        if not self.handshake_initiated and self.conn.handshake_exc is not None and not self.transport.is_closing():
            self.transport.write(b"".join(self.conn.data_to_send()))
            self.handshake_complete = self.close_sent = True
            self.transport.close()

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] == "websocket.accept" and self.handshake_complete and self.request is not None:
            # Answered: uvicorn reads the handshake request and response only before this point. The
            # request's headers are emptied too, since the websockets parser's frame still holds it.
            self.request.headers.clear()
            self.request = self.response = None  # type: ignore[assignment]  # uvicorn types them as always set
