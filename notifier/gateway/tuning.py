"""The gateway's performance tuning, in one place, with what each piece was measured to be worth.

Figure 5 (``benchmarks/RESULTS.md``, section 5, "Session 5"): one gateway process holds 10,000
connections and one broadcast reaches them all. On 2026-12-01 each piece was priced by running the
gateway without it, interleaved with runs of the product (base, without, base, without, ...), on 2
cores that other engineers' tests were using too; for example::

    python -m benchmarks.connections --runs 4 --counts '' --variant stock-ws=ws:websockets-sansio \
        --variant cpython-gc=gc:700,10,10 --variant no-freeze=nofreeze \
        --variant unjoined=ws:benchmarks._tuned_gateway:UnjoinedWebSocketProtocol

p99 moves by a few hundred ms from run to run on that machine, so each figure is a median over
pairs, with how many of the pairs went the same way; the gateway's CPU is the steadier measure.

- **Freeze, then one full collection every** :data:`FULL_PASS_SECONDS` (:class:`Collector`). Kept:
  without it (at CPython's thresholds, 7 pairs) the gateway spent about twice the CPU on a broadcast
  (SSE 0.55 against 0.29 s, WebSocket 0.79 against 0.38 s, 7 of 7 pairs), 0.5 s (SSE) and 1.3 s
  (WebSocket) more to accept 10,000 connections (7 of 7), and the broadcast's p99 was 828 against
  717 ms (SSE, 5 of 7) and 1,228 against 658 ms (WebSocket, 7 of 7). With the young-generation
  threshold below instead, the freeze added nothing measurable (4 pairs): either keeps collections
  off the connections' objects during a broadcast, but only the freeze does so whatever the
  allocation pattern, and runs the one unavoidable full pass at a known time.
- **The lean WebSocket protocol's state** (:class:`Mailbox`, :class:`Flag`, the handshake dropped once
  answered). Kept: an open WebSocket holds 17.4 KiB of gateway RSS against 25.5 KiB under uvicorn's
  own ``websockets-sansio`` (10 of 10 pairs); the 20 KiB target is met only with it. Broadcast CPU and
  p99 the same within the noise (0.38 against 0.40 s; 756 against 840 ms, 6 of 10).
- **Joined writes** (:class:`JoinedWrites`, part of :class:`LeanWebSocketProtocol`). Kept: the
  broadcast's WebSocket p99 625 against 1,077 ms without them (7 of 7 pairs), gateway CPU 0.39
  against 0.42 s (6 of 7).
- **The live endpoints in front of FastAPI** (``notifier/gateway/app.py``, ``Gateway``): routing, not
  a switch, so not re-measured; in session 2 it took an SSE connection from 38.4 to 14.4 KiB and the
  broadcast's p99 from 5.37 to 1.82 s.
- **Less state per open connection** (session 6, issue 15's <= 12 KiB): uvicorn's per-connection
  attributes in slots (:class:`LeanHttpProtocol`, :class:`LeanWebSocketProtocol`; past 30 attributes
  CPython gives each instance a 1.6 KB dict), the HTTP protocol's deque and two events as a list and
  :class:`Flag`, one loop timer for every heartbeat and keepalive ping (:mod:`notifier.gateway.timers`),
  and fewer suspended frames and objects in the handlers. Gateway RSS per connection at 10,000 (one
  run each, A/B against main 386a447): SSE 14.6 -> 10.7 KiB, WebSocket 17.4-17.6 -> 11.7 KiB, with the
  same connect and broadcast CPU; tracemalloc per step in ``benchmarks/RESULTS.md`` (section 5).
- **Young collections every 50,000 allocations** (:data:`GC_THRESHOLDS`, the setting
  ``NOTIFIER_GATEWAY_GC_THRESHOLDS`` until session 5). Kept, as a constant: with the freeze in place
  (17 pairs per transport) SSE accepted 10,000 connections with 2.99 against 3.11 s of gateway CPU
  (16 of 17), spent 0.28 against 0.30 s on the broadcast (15 of 17) and its p99 was 463 against
  609 ms (13 of 17); WebSocket the same within the noise (CPU 0.37 against 0.38 s, 9 of 17; p99 751
  against 658 ms, lower in 7 of 17). RSS per connection is the same since each freeze follows a
  young collection (session 3).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from typing import Any

from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from notifier.gateway.http_protocol import GuardedHttpProtocol
from notifier.gateway.timers import timers
from notifier.gateway.ws_protocol import GuardedWebSocketProtocol

log = logging.getLogger(__name__)

FULL_PASS_SECONDS = 600.0
"""Seconds between full collections: the reference cycles closed connections left behind wait at most this long."""
GC_THRESHOLDS = (50_000, 20, 100)
"""``gc.set_threshold`` while the gateway runs (CPython's is 700, 10, 10): a broadcast holds one message per
connection for a moment, and at 700 allocations per young collection those are walked, and promoted, before
reference counting frees them. Worth a few percent of SSE's gateway CPU (module docstring)."""
FREEZE_SECONDS = 1.0
"""How often what survived is frozen: short enough that a burst of connections is frozen soon after."""
WS_PROTOCOL = "notifier.gateway.tuning:LeanWebSocketProtocol"
"""What the gateway passes as uvicorn's ``--ws`` option (``notifier gateway`` does)."""
HTTP_PROTOCOL = "notifier.gateway.tuning:LeanHttpProtocol"
"""What the gateway passes as uvicorn's ``--http`` option (``notifier gateway`` does)."""


# Garbage collection ---------------------------------------------------------------------------
class Collector:
    """Keeps the cyclic collector off the objects of open connections, while the gateway runs.

    CPython's full collection walks every tracked object. 10,000 connections are about 750,000 of
    them, and one full pass stalls the event loop for most of a second; CPython runs one whenever the
    long-lived objects grew by a quarter — while clients connect, or in the middle of a broadcast,
    which then reaches its last clients late. So every :data:`FREEZE_SECONDS` this collects the two
    young generations (so that short-lived cycles, a handshake's, are freed rather than frozen) and
    freezes the survivors (``gc.freeze``, constant time): automatic collections then look only at
    recent objects. Every :data:`FULL_PASS_SECONDS` one full pass (unfreeze, collect, freeze), logged
    with its duration, frees the cycles closed connections left, at a known rhythm. Young collections
    run every :data:`GC_THRESHOLDS` allocations meanwhile.
    """

    def __init__(self, full_every: float = FULL_PASS_SECONDS, thresholds: tuple[int, int, int] = GC_THRESHOLDS,
                 freeze_every: float = FREEZE_SECONDS) -> None:
        self.full_every = full_every
        self.thresholds = thresholds
        self.freeze_every = freeze_every
        self.full_passes = 0
        self._task: asyncio.Task[None] | None = None
        self._default_thresholds = gc.get_threshold()

    def start(self) -> None:
        gc.collect()
        gc.freeze()
        gc.set_threshold(*self.thresholds)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="notifier-gc")

    async def stop(self) -> None:
        """Stop, and hand everything back to the normal collector (tests start many gateways in one process)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        gc.unfreeze()
        gc.set_threshold(*self._default_thresholds)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        last_full = loop.time()
        while True:
            await asyncio.sleep(self.freeze_every)
            if loop.time() - last_full >= self.full_every:
                self.full_pass()
                last_full = loop.time()
            gc.collect(1)
            gc.freeze()

    def full_pass(self) -> int:
        """One full collection over everything, frozen or not; returns the objects it freed."""
        gc.unfreeze()
        started = time.perf_counter()
        freed = gc.collect()
        elapsed = time.perf_counter() - started
        gc.freeze()
        self.full_passes += 1
        log.info("gc: full collection freed %d objects in %.0f ms; %d objects frozen until the next one",
                 freed, elapsed * 1000, gc.get_freeze_count())
        return freed


# The lean WebSocket protocol ------------------------------------------------------------------
class _Waiters:
    """Futures to wake, created only while somebody waits (an idle connection holds none).

    A waiter awaits :meth:`waiter`'s future in its own frame and calls :meth:`done` after, rather
    than awaiting a ``wait`` coroutine here: every open connection has a receive waiting, and the
    extra suspended frame was 0.2 KiB of each.
    """

    __slots__ = ("_futures",)

    def __init__(self) -> None:
        self._futures: list[asyncio.Future[None]] | None = None

    def waiter(self) -> asyncio.Future[None]:
        """A future the next :meth:`wake_all` finishes; pass it to :meth:`done` once it is (or the wait ends)."""
        future = asyncio.get_running_loop().create_future()
        if self._futures is None:
            self._futures = []
        self._futures.append(future)
        return future

    def done(self, future: asyncio.Future[None]) -> None:
        futures = self._futures
        if futures is not None:
            futures.remove(future)
            if not futures:
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

    def get_nowait(self) -> Any:
        """The oldest item (IndexError when there is none)."""
        return self._items.pop(0)

    async def get(self) -> Any:
        while not self._items:
            future = self.waiter()
            try:
                await future
            finally:
                self.done(future)
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
            future = self.waiter()
            try:
                await future
            finally:
                self.done(future)


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


_UVICORN_WS_STATE = (
    "app", "app_state", "asgi_version", "client", "close_sent", "close_timeout", "close_timer", "config", "conn",
    "connections", "curr_msg_data_type", "default_headers", "disconnected", "frames", "handshake_complete",
    "handshake_initiated", "initial_response", "last_ping_rtt", "logger", "loop", "pending_ping_payload",
    "ping_interval", "ping_sent_at", "ping_timeout", "ping_timer", "pong_timer", "queue", "read_paused", "request",
    "response", "root_path", "scheme", "scope", "server", "tasks", "transport", "writable")
"""What uvicorn's ``WebSocketsSansIOProtocol`` keeps on each connection (read against the uvicorn range in
pyproject.toml; an attribute missing here only lands in the instance dict again)."""

_UVICORN_HTTP_STATE = (
    "access_log", "access_logger", "app", "app_state", "asgi_version", "client", "config", "connections", "cycle",
    "expect_100_continue", "flow", "headers", "limit_concurrency", "logger", "loop", "parser", "pipeline",
    "root_path", "scheme", "scope", "server", "server_state", "tasks", "timeout_keep_alive",
    "timeout_keep_alive_task", "transport", "url", "ws_protocol_class",
    # GuardedHttpProtocol's own
    "_head_bytes", "_head_timeout", "_head_timer", "_linger", "_max_pending", "_refusal")
"""What uvicorn's ``HttpToolsProtocol`` and notifier's guard keep on each connection (as above)."""


class LeanWebSocketProtocol(GuardedWebSocketProtocol):
    """uvicorn's sans-I/O WebSocket protocol (with notifier's guards), minus what an open connection no
    longer needs.

    uvicorn keeps, for every open WebSocket, an ``asyncio.Queue`` (four deques), an ``asyncio.Event``
    (one more), and the parsed handshake request and response with their headers, all for as long as
    the connection lives. This swaps the queue and the event for list-backed equivalents, lets the
    handshake go (headers included) once it is answered, and joins the frames one event-loop turn sends
    into one write (:class:`JoinedWrites`). The wire protocol, keepalive pings and flow control stay
    uvicorn's own; ``test_a_websocket_client_that_stops_reading_...`` (tests/gateway) holds the flow
    control to account. It replaces uvicorn's attributes ``queue``, ``writable``, ``transport``,
    ``request`` and ``response`` and its methods ``receive`` (the same, one frame shallower) and
    ``schedule_ping`` (the keepalive ping on shared timers),
    hence the ``uvicorn`` range in pyproject.toml.

    Its state is in slots (:data:`_UVICORN_WS_STATE`): uvicorn sets 37 attributes per connection, and
    CPython (3.11) keeps an instance's attributes as 8-byte values beside keys shared by the class only
    up to 30 of them; past that each instance gets a dict of its own, 1.6 KB at this size.
    """

    __slots__ = _UVICORN_WS_STATE

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = Mailbox()  # type: ignore[assignment]  # uvicorn types it as asyncio.Queue; the part it uses
        self.writable = Flag(True)  # type: ignore[assignment]  # likewise asyncio.Event

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.transport = JoinedWrites(self.transport, self.loop)  # type: ignore[assignment]  # a Transport's write/close/is_closing

    def schedule_ping(self) -> None:
        """uvicorn's, on the process's shared timers (:mod:`notifier.gateway.timers`): the next keepalive
        ping is due for the connection's whole life, and a loop timer each was 0.54 KiB of it."""
        assert self.ping_interval is not None
        delay = max(0.0, self.ping_interval - self.last_ping_rtt)
        self.ping_timer = timers().call_later(delay, self.send_keepalive_ping)  # type: ignore[assignment]  # cancel() is all uvicorn calls

    async def receive(self) -> Any:
        """uvicorn's, waiting on the mailbox in this frame rather than in its ``get`` below: every open
        connection's listener waits here for its whole life, and that frame was 0.2 KiB of it."""
        mailbox: Mailbox = self.queue  # type: ignore[assignment]  # set in __init__
        while mailbox.empty():
            future = mailbox.waiter()
            try:
                await future
            finally:
                mailbox.done(future)
        message = mailbox.get_nowait()
        if self.read_paused and mailbox.empty():
            self.read_paused = False
            self.transport.resume_reading()
        return message

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] == "websocket.accept" and self.handshake_complete and self.request is not None:
            # Answered: uvicorn reads the handshake request and response only before this point. The
            # request's headers and path (with the token) are emptied too, since the websockets
            # parser's frame still holds it.
            self.request.headers.clear()
            self.request.path = ""
            self.request = self.response = None  # type: ignore[assignment]  # uvicorn types them as always set


class _Pipeline(list[tuple[RequestResponseCycle, Any]]):
    """uvicorn's queue of pipelined requests (a ``deque``, 0.7 KiB empty) as a list: it is nearly always empty."""

    __slots__ = ()

    def appendleft(self, item: tuple[RequestResponseCycle, Any]) -> None:
        self.insert(0, item)


class LeanHttpProtocol(GuardedHttpProtocol):
    """uvicorn's httptools protocol (with notifier's limits on the request head), minus what an open SSE
    stream does not need.

    An SSE response stays open for hours, and uvicorn keeps, per connection, a ``deque`` for pipelined
    requests, an ``asyncio.Event`` (a ``deque`` inside) for "the transport may be written" and another
    for "the request has more body or the client left": 0.7 KiB each, empty. This swaps them for a list
    and :class:`Flag` (which holds a future only while someone waits), and keeps its state in slots (as
    :class:`LeanWebSocketProtocol` does, and for the same reason: 34 attributes). It replaces uvicorn's
    attributes ``pipeline``, ``flow._is_writable_event`` and ``cycle.message_event``, read against the
    uvicorn range in pyproject.toml.
    """

    __slots__ = _UVICORN_HTTP_STATE

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pipeline = _Pipeline()  # type: ignore[assignment]  # uvicorn types it as a deque; the part it uses

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.flow._is_writable_event = Flag(True)  # type: ignore[assignment]  # likewise asyncio.Event

    def on_headers_complete(self) -> None:
        previous = self.cycle
        super().on_headers_complete()
        if self.cycle is not previous:  # a new request (not an upgrade, which makes no cycle)
            self.cycle.message_event = Flag(False)  # type: ignore[assignment]  # likewise asyncio.Event
