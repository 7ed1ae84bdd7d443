"""The hub: one Redis Pub/Sub connection per gateway process, shared by every open client connection.

A user's live channel is subscribed when their first connection opens and unsubscribed when the last
closes; each connection is a :class:`Subscriber` with a bounded queue, so a slow client is cut off
(it resumes later from its last id) instead of growing the process's memory.

Only the reader task reads from the connection; other tasks only write SUBSCRIBE/UNSUBSCRIBE (under
a lock). Redis answers commands in order, so counting SUBSCRIBE confirmations per channel tells an
opening connection exactly when its subscription is live — the moment after which nothing published
can be missed, and so the moment it may read the inbox to replay.

When the connection drops (Redis restarts, a network cut), the reader reconnects with backoff,
subscribes every wanted channel again and, once each is confirmed, puts :data:`RESYNC` in its
subscribers' queues: they replay from their last id whatever was published while the hub was away.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import RedisError

from notifier.errors import NotifierError
from notifier.keys import Keys

log = logging.getLogger(__name__)

SUBSCRIBE_TIMEOUT = 5.0
"""Seconds an opening connection waits for Redis to confirm its subscription."""
PING_INTERVAL = 5.0
"""Seconds of silence after which the hub pings Redis; no answer within as long again means dead."""
BACKOFF_MIN, BACKOFF_MAX = 0.1, 5.0


class HubUnavailable(NotifierError):
    """The hub has no Redis connection right now; the client should retry shortly."""


class TooManyConnections(NotifierError):
    """The user already has ``NOTIFIER_MAX_CONNECTIONS_PER_USER`` open connections."""


class _Resync:
    def __repr__(self) -> str:
        return "RESYNC"


RESYNC = _Resync()
"""Queued after a reconnect: messages may have been missed, replay from the inbox."""

Item = dict[str, Any] | _Resync


@dataclass(eq=False)
class Subscriber:
    """One client connection's place in the hub: its queue, and whether it fell too far behind."""

    user_id: str
    queue: asyncio.Queue[Item]
    overflowed: bool = False

    def offer(self, item: Item) -> None:
        """Queue ``item``, or mark the subscriber overflowed when its buffer is full."""
        if self.overflowed:
            return
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.overflowed = True


@dataclass
class _Channel:
    user_id: str
    subscribers: set[Subscriber] = field(default_factory=set)


class Hub:
    """Multiplexes every connected user over one Pub/Sub connection (see the module docstring)."""

    def __init__(self, connect: Callable[[], AbstractConnection], keys: Keys, buffer: int,
                 max_per_user: int, ping_interval: float = PING_INTERVAL) -> None:
        self._connect = connect
        self._keys = keys
        self._buffer = buffer
        self._max_per_user = max_per_user
        self._ping_interval = ping_interval
        self._channels: dict[str, _Channel] = {}
        self._conn: AbstractConnection | None = None
        self._write_lock = asyncio.Lock()
        self._on_server: dict[str, int] = {}
        """Channel -> ticket of the SUBSCRIBE that made it live on the current connection."""
        self._sent: dict[str, int] = {}
        self._acked: dict[str, int] = {}
        self._waiters: dict[str, list[tuple[int, asyncio.Future[None]]]] = {}
        self._resync: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._connected_once = False

    # Lifecycle --------------------------------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="notifier-hub")

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._background) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = None
        await self._drop_connection()

    @property
    def connected(self) -> bool:
        return self._conn is not None

    @property
    def connection_count(self) -> int:
        return sum(len(c.subscribers) for c in self._channels.values())

    # Subscribers ------------------------------------------------------------------------------
    async def attach(self, user_id: str) -> Subscriber:
        """Register a connection for ``user_id``; returns once its live channel is subscribed."""
        channel = self._keys.live(user_id)
        entry = self._channels.get(channel)
        if entry is not None and len(entry.subscribers) >= self._max_per_user:
            raise TooManyConnections(
                f"user already has {self._max_per_user} open connections; close one and retry")
        if self._conn is None:
            raise HubUnavailable("the gateway is not connected to Redis; retry shortly")
        if entry is None:
            entry = self._channels[channel] = _Channel(user_id)
        sub = Subscriber(user_id, asyncio.Queue(self._buffer))
        entry.subscribers.add(sub)
        try:
            await asyncio.wait_for(self._subscribed(channel), SUBSCRIBE_TIMEOUT)
        except BaseException as exc:
            self.detach(sub)
            if isinstance(exc, (asyncio.TimeoutError, RedisError, OSError)):
                raise HubUnavailable("Redis did not confirm the subscription; retry shortly") from None
            raise
        return sub

    def detach(self, sub: Subscriber) -> None:
        """Forget a closed connection; the user's channel is unsubscribed if it was the last."""
        channel = self._keys.live(sub.user_id)
        entry = self._channels.get(channel)
        if entry is None or sub not in entry.subscribers:
            return
        entry.subscribers.discard(sub)
        if not entry.subscribers:
            del self._channels[channel]
            task = asyncio.get_running_loop().create_task(self._unsubscribe(channel))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _subscribed(self, channel: str) -> None:
        async with self._write_lock:
            conn = self._conn
            if conn is None:
                raise HubUnavailable("the gateway lost its Redis connection; retry shortly")
            if channel not in self._on_server:
                ticket = self._sent[channel] = self._sent.get(channel, 0) + 1
                self._on_server[channel] = ticket
                await conn.send_command("SUBSCRIBE", channel, check_health=False)
            ticket = self._on_server[channel]
        if self._acked.get(channel, 0) >= ticket:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(channel, []).append((ticket, future))
        await future

    async def _unsubscribe(self, channel: str) -> None:
        async with self._write_lock:
            conn = self._conn
            if conn is None or channel in self._channels or channel not in self._on_server:
                return
            del self._on_server[channel]
            try:
                await conn.send_command("UNSUBSCRIBE", channel, check_health=False)
            except (RedisError, OSError) as exc:
                log.info("hub: unsubscribe failed (%s); the reader will reconnect", exc)

    # The reader -------------------------------------------------------------------------------
    async def _run(self) -> None:
        delay = BACKOFF_MIN
        while True:
            try:
                conn = self._connect()
                await conn.connect()
                await self._on_connect(conn)
                delay = BACKOFF_MIN
                await self._read(conn)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, HubUnavailable) as exc:
                log.warning("hub: Redis Pub/Sub connection lost (%s); reconnecting in %.1fs", exc, delay)
            except Exception:
                log.exception("hub: unexpected error; reconnecting in %.1fs", delay)
            await self._drop_connection()
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, BACKOFF_MAX)

    async def _on_connect(self, conn: AbstractConnection) -> None:
        async with self._write_lock:
            self._conn = conn
            self._sent.clear()
            self._acked.clear()
            self._on_server.clear()
            channels = list(self._channels)
            if channels:
                for channel in channels:
                    self._sent[channel] = self._on_server[channel] = 1
                await conn.send_command("SUBSCRIBE", *channels, check_health=False)
            self._resync = set(channels) if self._connected_once else set()
            if self._connected_once:
                log.info("hub: reconnected to Redis; resubscribed %d channel(s)", len(channels))
            self._connected_once = True

    async def _read(self, conn: AbstractConnection) -> None:
        awaiting_pong = False
        while True:
            reply = await conn.read_response(timeout=self._ping_interval, disconnect_on_error=False)
            if reply is None:
                if awaiting_pong:
                    raise HubUnavailable("Redis did not answer PING")
                async with self._write_lock:
                    await conn.send_command("PING", check_health=False)
                awaiting_pong = True
                continue
            awaiting_pong = False
            if isinstance(reply, list) and len(reply) >= 3:
                self._dispatch(str(reply[0]), str(reply[1]), reply[2])

    def _dispatch(self, kind: str, channel: str, data: Any) -> None:
        if kind == "message":
            entry = self._channels.get(channel)
            if entry is None:
                return
            try:
                message = orjson.loads(data)
            except orjson.JSONDecodeError:
                log.warning("hub: ignoring a malformed message on %s", channel)
                return
            if not isinstance(message, dict):
                return
            for sub in list(entry.subscribers):
                sub.offer(message)
        elif kind == "subscribe":
            acked = self._acked[channel] = self._acked.get(channel, 0) + 1
            waiters = self._waiters.pop(channel, [])
            pending = [(t, f) for t, f in waiters if t > acked]
            for ticket, future in waiters:
                if ticket <= acked and not future.done():
                    future.set_result(None)
            if pending:
                self._waiters[channel] = pending
            entry = self._channels.get(channel)
            if channel in self._resync:
                self._resync.discard(channel)
                for sub in list(entry.subscribers if entry else ()):
                    sub.offer(RESYNC)

    async def _drop_connection(self) -> None:
        async with self._write_lock:
            conn, self._conn = self._conn, None
            self._on_server.clear()
        for waiters in self._waiters.values():
            for _, future in waiters:
                if not future.done():
                    future.set_exception(HubUnavailable("the gateway lost its Redis connection"))
        self._waiters.clear()
        if conn is not None:
            try:
                await conn.disconnect(nowait=True)
            except Exception as exc:
                log.debug("hub: error while closing the connection: %s", exc)
