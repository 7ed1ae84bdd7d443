"""The hub: a gateway process's few Redis Pub/Sub connections, shared by every open client connection.

A user's live channel is subscribed when their first connection opens and unsubscribed when the last
closes; each connection is a :class:`Subscriber` with a bounded buffer, so a slow client is cut off
(it resumes later from its last id) instead of growing the process's memory.

Which Pub/Sub connection carries a channel is the :class:`Topology`'s answer, and the only thing that
differs between deployments: one server (or the master a Sentinel names) gets one connection for
every user, with SUBSCRIBE; a Redis Cluster gets one connection per primary that owns at least one
subscribed user's slot, with SSUBSCRIBE, so each shard carries only its own users' traffic.

Each connection (a :class:`_Link`) has a reader, a writer and a liveness task. Commands are queued in order,
each with the reply it expects; Redis answers in order, so the reader matches every confirmation to
its command and tells an opening connection exactly when its subscription is live — the moment after
which nothing published can be missed, and so the moment it may read the inbox to replay.

When a connection drops (Redis restarts, a network cut, a failover) it reconnects with backoff, first
asking the topology again where each channel lives, subscribes every channel again and, once each is
confirmed, puts :data:`RESYNC` in its subscribers' queues: they replay from their last id whatever
was published while the hub was away. A channel the server refuses (MOVED) or drops (its slot
migrated) is subscribed where it now lives, and replayed, the same way.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import random
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import MovedError, RedisError, ResponseError

from notifier.errors import HubUnavailable, TooManyConnections
from notifier.keys import Keys

log = logging.getLogger(__name__)

SUBSCRIBE_TIMEOUT = 5.0
"""Seconds an opening connection waits for Redis to confirm its subscription."""
PING_INTERVAL = 5.0
"""Seconds of silence after which the hub pings Redis; no answer within as long again means dead."""
BACKOFF_MIN, BACKOFF_MAX = 0.1, 5.0


class _Resync:
    def __repr__(self) -> str:
        return "RESYNC"


RESYNC = _Resync()
"""Queued after a reconnect or a move: messages may have been missed, replay from the inbox."""

Item = dict[str, Any] | _Resync


class Subscriber:
    """One client connection's place in the hub: a bounded buffer, and one waiter to wake.

    Not an ``asyncio.Queue``: a broadcast wakes every connection at once, so waking one costs one
    future and nothing else, and a connection's handler waits for "an item, a heartbeat or a
    hang-up" on the same future (:meth:`wake`) without a timer or a task per wait.
    """

    __slots__ = ("_waiter", "items", "limit", "overflowed", "user_id")

    def __init__(self, user_id: str, limit: int) -> None:
        self.user_id = user_id
        self.limit = limit
        self.items: list[Item] = []
        """Oldest first; a list, not a deque: it is nearly always empty, and an empty deque costs 0.7 KiB."""
        self.overflowed = False
        """The buffer filled up (or the hub cut the connection off): it must end and resume later."""
        self._waiter: asyncio.Future[None] | None = None

    def offer(self, item: Item) -> None:
        """Buffer ``item``, or mark the subscriber overflowed when its buffer is full."""
        if self.overflowed:
            return
        if len(self.items) >= self.limit:
            self.overflowed = True
        else:
            self.items.append(item)
        self.wake()

    def cut_off(self) -> None:
        """End this connection (the client resumes from its last id)."""
        self.overflowed = True
        self.wake()

    def wake(self) -> None:
        """Return the pending :meth:`wait` (an item arrived, or the handler has something to check)."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self) -> None:
        """Until an item is buffered or someone calls :meth:`wake`; at once if one is waiting."""
        if self.items or self.overflowed:
            return
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None


@dataclass(frozen=True)
class PubSubCommands:
    """A Pub/Sub dialect: classic (one server) or sharded (a cluster, where a channel lives in a slot)."""

    subscribe: str
    unsubscribe: str
    message: str
    """The first element of a published message's reply."""
    batch: bool
    """Whether one command may name many channels (sharded ones may not: they sit in different slots)."""


CLASSIC = PubSubCommands("SUBSCRIBE", "UNSUBSCRIBE", "message", batch=True)
SHARDED = PubSubCommands("SSUBSCRIBE", "SUNSUBSCRIBE", "smessage", batch=False)


class Topology(Protocol):
    """Where each channel's subscription lives and how to connect there (``notifier.gateway.topology``)."""

    commands: PubSubCommands
    always: tuple[str, ...]
    """Owners kept connected even with nothing subscribed (a single server); others connect on demand."""

    async def refresh(self) -> None:
        """Learn the layout again (a cluster's slot map); raises a RedisError when nobody answers."""

    async def moved(self, error: MovedError) -> None:
        """Record the owner a MOVED reply names for its slot."""

    def owner(self, channel: str) -> str:
        """Name of the connection that must carry ``channel``; raises HubUnavailable when unknown."""

    async def connect(self, owner: str) -> AbstractConnection:
        """A new, connected RESP2 connection to ``owner`` (asking a Sentinel first, if that is the way)."""

    async def aclose(self) -> None:
        """Close whatever the topology keeps open (a Sentinel or slot-map client)."""


class _Outcome(enum.Enum):
    LIVE = "live"
    MOVED = "moved"
    """Not (or no longer) subscribed on that connection: ask the hub where the channel lives now."""
    LOST = "lost"
    """The connection went away."""


@dataclass(eq=False)
class _Pending:
    """A command sent on a link, waiting for its reply; a subscription's waiters watch ``outcome``."""

    reply: str
    """The reply kind it expects: ``subscribe``, ``sunsubscribe``, ``pong``..."""
    channel: str | None = None
    outcome: asyncio.Future[_Outcome] | None = None
    state: _Outcome | None = None

    def settle(self, state: _Outcome) -> None:
        if self.state is None:
            self.state = state
            if self.outcome is not None and not self.outcome.done():
                self.outcome.set_result(state)

    async def wait(self) -> _Outcome:
        """The subscription's outcome; shielded, since other connections may be waiting for it too."""
        assert self.outcome is not None, "only subscriptions are awaited"
        return await asyncio.shield(self.outcome)


@dataclass
class _Channel:
    user_id: str
    subscribers: set[Subscriber] = field(default_factory=set)
    link: _Link | None = None
    """The connection this channel is placed on (subscribed, or about to be)."""


class _Link:
    """One Pub/Sub connection, the channels it carries, and its reconnect loop."""

    def __init__(self, hub: Hub, owner: str, keep: bool) -> None:
        self.hub = hub
        self.owner = owner
        self.keep = keep
        """Stay connected with no channel (a single server); an on-demand link closes when empty."""
        self.channels: set[str] = set()
        """What this connection must carry."""
        self.live: dict[str, _Pending] = {}
        """Channel -> the subscription that makes (or made) it live on the current connection."""
        self.resync: set[str] = set()
        """Channels whose subscribers replay once their current subscription is confirmed."""
        self.conn: AbstractConnection | None = None
        self.down = keep
        """Failing (waiting to reconnect): attaches fail fast. An on-demand link starts out connecting."""
        self._commands = hub.topology.commands
        self._expected: deque[_Pending] = deque()
        self._outbox: list[tuple[str, ...]] = []
        self._wake = asyncio.Event()
        self._writing = False
        self._heard = 0
        """Replies read so far: the liveness check's only input."""
        self._connected_once = False
        self.closed = False
        self.task: asyncio.Task[None] | None = None

    # Commands (synchronous, so their order is the program's order) ------------------------------
    def _send(self, commands: list[tuple[str, ...]], expected: list[_Pending]) -> None:
        self._expected.extend(expected)
        self._outbox.extend(commands)
        self._wake.set()

    def _subscribe_now(self, channels: list[str]) -> None:
        pendings = []
        for channel in channels:
            pending = self.live.get(channel)
            if pending is None or pending.state is not None:
                pending = self.live[channel] = self._new_subscription(channel)
            pendings.append(pending)
        if self._commands.batch:
            self._send([(self._commands.subscribe, *channels)], pendings)
        else:
            self._send([(self._commands.subscribe, c) for c in channels], pendings)

    def _new_subscription(self, channel: str) -> _Pending:
        return _Pending(self._commands.subscribe.lower(), channel, asyncio.get_running_loop().create_future())

    def subscribe(self, channel: str) -> _Pending:
        """The subscription that makes ``channel`` live here: the current one, or a new one."""
        pending = self.live.get(channel)
        if pending is not None and pending.state is not _Outcome.MOVED:
            return pending
        if self.conn is None:
            pending = self.live[channel] = self._new_subscription(channel)
            return pending
        self._subscribe_now([channel])
        return self.live[channel]

    def forget(self, channel: str) -> None:
        """Stop carrying ``channel``; whoever waits for its subscription asks the hub again."""
        self.channels.discard(channel)
        self.resync.discard(channel)
        pending = self.live.pop(channel, None)
        if pending is None:
            return
        refused = pending.state is _Outcome.MOVED
        pending.settle(_Outcome.MOVED)
        if self.conn is not None and not refused:
            self._send([(self._commands.unsubscribe, channel)], [_Pending(self._commands.unsubscribe.lower(), channel)])

    def replay_when_live(self, channel: str) -> None:
        """Have ``channel``'s subscribers replay as soon as its subscription here is confirmed."""
        pending = self.live.get(channel)
        if pending is not None and pending.state is _Outcome.LIVE:
            self.hub._resync(channel)
        else:
            self.resync.add(channel)

    # The connection -------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop for good. The flag backs up the cancel, which Python 3.11's ``wait_for`` (inside
        redis-py's writes) can swallow when it lands just as a write completes."""
        self.closed = True
        if self.task is not None:
            self.task.cancel()

    async def run(self) -> None:
        delay, retry = BACKOFF_MIN, False
        try:
            while not self.closed:
                try:
                    if retry:
                        await self.hub._rediscover(self)
                    conn = await self.hub.topology.connect(self.owner)
                    self._on_connect(conn)
                    if self.closed:
                        break
                    delay = BACKOFF_MIN
                    await self._serve(conn)
                except asyncio.CancelledError:
                    raise
                except (RedisError, OSError, HubUnavailable) as exc:
                    log.warning("hub: Redis Pub/Sub connection to %s lost (%s); reconnecting in %.1fs",
                                self.owner, exc, delay)
                except Exception:
                    log.exception("hub: unexpected error on %s; reconnecting in %.1fs", self.owner, delay)
                retry = True
                await _close(self._drop())
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, BACKOFF_MAX)
        finally:
            await _close(self._drop())

    def _on_connect(self, conn: AbstractConnection) -> None:
        self.conn, self.down = conn, False
        channels = sorted(self.channels)
        if self._connected_once:
            self.resync |= self.channels
            log.info("hub: reconnected to Redis; resubscribed %d channel(s) on %s", len(channels), self.owner)
        else:
            log.debug("hub: connected to Redis (%s)", self.owner)
        self._connected_once = True
        if channels:
            self._subscribe_now(channels)

    def _drop(self) -> AbstractConnection | None:
        conn, self.conn = self.conn, None
        self.down = True
        for pending in [*self.live.values(), *self._expected]:
            pending.settle(_Outcome.LOST)
        self.live.clear()
        self._expected.clear()
        self._outbox.clear()
        return conn

    async def _serve(self, conn: AbstractConnection) -> None:
        self._writing = True
        tasks = (asyncio.create_task(self._read(conn)), asyncio.create_task(self._write(conn)),
                 asyncio.create_task(self._watch()))
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._writing = False
            self._wake.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            task.result()

    async def _write(self, conn: AbstractConnection) -> None:
        while self._writing:
            await self._wake.wait()
            self._wake.clear()
            if not self._writing:
                return
            commands, self._outbox = self._outbox, []
            if commands:
                await conn.send_packed_command(conn.pack_commands(commands), check_health=False)

    async def _read(self, conn: AbstractConnection) -> None:
        """Every reply, with no timeout per read: a broadcast brings one message per user, and a timer
        each would cost more than the message (:meth:`_watch` tells a dead connection instead)."""
        while True:
            try:
                reply = await conn.read_response(timeout=math.inf, disconnect_on_error=False)
            except ResponseError as exc:
                self._heard += 1
                await self._refused(exc)
                continue
            self._heard += 1
            self._receive(reply)

    async def _watch(self) -> None:
        """PING after ``ping_interval`` seconds without a reply; none within as long again means dead."""
        interval = self.hub.ping_interval
        while True:
            heard = self._heard
            await asyncio.sleep(interval)
            if self._heard != heard:
                continue
            self._send([("PING",)], [_Pending("pong")])
            await asyncio.sleep(interval)
            if self._heard == heard:
                raise HubUnavailable("Redis did not answer PING")

    def _pop(self, reply: str, channel: str | None) -> _Pending:
        head = self._expected[0] if self._expected else None
        if head is None or head.reply != reply or head.channel != channel:
            raise HubUnavailable(f"unexpected {reply} reply from Redis; starting over")
        return self._expected.popleft()

    def _receive(self, reply: Any) -> None:
        if reply == "PONG" or (isinstance(reply, list) and reply and reply[0] == "pong"):
            self._pop("pong", None)
            return
        if not isinstance(reply, list) or len(reply) < 3:
            return
        kind, channel = str(reply[0]), str(reply[1])
        if kind == self._commands.message:
            if channel in self.channels:
                self.hub._deliver(channel, reply[2])
        elif kind == self._commands.subscribe.lower():
            pending = self._pop(kind, channel)
            pending.settle(_Outcome.LIVE)
            if self.live.get(channel) is pending and channel in self.resync:
                self.resync.discard(channel)
                self.hub._resync(channel)
        elif kind == self._commands.unsubscribe.lower():
            head = self._expected[0] if self._expected else None
            if head is not None and head.reply == kind and head.channel == channel:
                self._expected.popleft()
            elif channel in self.live:
                self.hub._dropped(self, channel, refresh=True)

    async def _refused(self, exc: ResponseError) -> None:
        """An error reply: a MOVED subscription is placed again; anything else starts over."""
        if not self._expected:
            raise exc
        head = self._expected.popleft()
        if head.reply == self._commands.unsubscribe.lower():
            return
        if head.channel is None or not isinstance(exc, MovedError):
            raise exc
        head.settle(_Outcome.MOVED)
        if self.live.get(head.channel) is not head:
            return
        await self.hub.topology.moved(exc)
        if self.hub.topology.owner(head.channel) == self.owner:
            raise exc
        self.hub._dropped(self, head.channel, refresh=False)


async def _close(conn: AbstractConnection | None) -> None:
    if conn is not None:
        try:
            await conn.disconnect(nowait=True)
        except Exception as exc:  # noqa: BLE001 - closing a dead link is best effort; any failure only logs
            log.debug("hub: error while closing a connection: %s", exc)


class Hub:
    """Multiplexes every connected user over the topology's Pub/Sub connections (see the module docstring)."""

    def __init__(self, topology: Topology, keys: Keys, buffer: int, max_per_user: int,
                 ping_interval: float = PING_INTERVAL) -> None:
        self.topology = topology
        self.ping_interval = ping_interval
        self._keys = keys
        self._buffer = buffer
        self._max_per_user = max_per_user
        self._channels: dict[str, _Channel] = {}
        self._links: dict[str, _Link] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._mapped = False
        self._started = False

    # Lifecycle --------------------------------------------------------------------------------
    def start(self) -> None:
        if self._started:
            return
        self._started = True
        self._spawn(self._map(), "notifier-hub-map")
        for owner in self.topology.always:
            self._open(owner, keep=True)

    async def stop(self) -> None:
        for link in self._links.values():
            link.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._links.clear()
        self._started = self._mapped = False
        await self.topology.aclose()

    @property
    def connected(self) -> bool:
        """The layout is known and no Pub/Sub connection is failing."""
        return self._mapped and not any(link.down for link in self._links.values())

    @property
    def connection_count(self) -> int:
        return sum(len(c.subscribers) for c in self._channels.values())

    @property
    def pubsub_connections(self) -> int:
        """Open Pub/Sub connections: one for a single server, one per shard in use on a cluster."""
        return sum(1 for link in self._links.values() if link.conn is not None)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _map(self) -> None:
        delay = BACKOFF_MIN
        while True:
            try:
                await self.topology.refresh()
                self._mapped = True
                return
            except (RedisError, OSError) as exc:
                log.warning("hub: cannot read the Redis layout (%s); retrying in %.1fs", exc, delay)
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, BACKOFF_MAX)

    # Subscribers ------------------------------------------------------------------------------
    async def attach(self, user_id: str) -> Subscriber:
        """Register a connection for ``user_id``; returns once its live channel is subscribed."""
        channel = self._keys.live(user_id)
        entry = self._channels.get(channel)
        if entry is not None and len(entry.subscribers) >= self._max_per_user:
            raise TooManyConnections(
                f"user already has {self._max_per_user} open connections; close one and retry")
        if not self._mapped:
            raise HubUnavailable("the gateway is not connected to Redis; retry shortly")
        if entry is None:
            entry = self._channels[channel] = _Channel(user_id)
        sub = Subscriber(user_id, self._buffer)
        entry.subscribers.add(sub)
        try:
            async with asyncio.timeout(SUBSCRIBE_TIMEOUT):
                await self._subscribed(channel)
        except BaseException as exc:
            self.detach(sub)
            if isinstance(exc, (TimeoutError, RedisError, OSError)):
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
            if entry.link is not None:
                self._unplace(entry.link, channel)

    async def _subscribed(self, channel: str) -> None:
        while True:
            link = self._place(channel)
            if link.down:
                raise HubUnavailable("the gateway is not connected to Redis; retry shortly")
            outcome = await link.subscribe(channel).wait()
            if outcome is _Outcome.LIVE:
                return
            if outcome is _Outcome.LOST:
                raise HubUnavailable("the gateway lost its Redis connection; retry shortly")

    # Placement: which link carries a channel --------------------------------------------------
    def _open(self, owner: str, keep: bool) -> _Link:
        link = self._links[owner] = _Link(self, owner, keep)
        link.task = self._spawn(link.run(), f"notifier-hub {owner}")
        return link

    def _place(self, channel: str, resync: bool = False) -> _Link:
        """The link that must carry ``channel`` now, moving it there if its owner changed."""
        entry = self._channels[channel]
        owner = self.topology.owner(channel)
        if entry.link is not None and entry.link.owner != owner:
            self._unplace(entry.link, channel)
            entry.link, resync = None, True
        if entry.link is None:
            entry.link = self._links.get(owner) or self._open(owner, keep=False)
            entry.link.channels.add(channel)
        if resync:
            entry.link.replay_when_live(channel)
        return entry.link

    def _unplace(self, link: _Link, channel: str) -> None:
        link.forget(channel)
        if not link.channels and not link.keep:
            if self._links.get(link.owner) is link:
                del self._links[link.owner]
            link.close()

    def _move(self, channel: str) -> None:
        """Subscribe ``channel`` where the topology now says it lives; its subscribers then replay."""
        entry = self._channels.get(channel)
        if entry is None:
            return
        try:
            link = self._place(channel, resync=True)
        except HubUnavailable as exc:
            log.warning("hub: %s; cutting off %d connection(s) so they resume", exc, len(entry.subscribers))
            if entry.link is not None:
                self._unplace(entry.link, channel)
                entry.link = None
            for sub in entry.subscribers:
                sub.cut_off()
            return
        if not link.down:
            link.subscribe(channel)

    def _dropped(self, link: _Link, channel: str, refresh: bool) -> None:
        """Redis stopped (or refused) delivering ``channel`` on ``link``: place it again."""
        log.info("hub: %s %s on %s; subscribing it where it lives now", channel,
                 "was unsubscribed by the server" if refresh else "got MOVED", link.owner)
        link.live.pop(channel, None)
        if refresh:
            self._spawn(self._rehome(channel), "notifier-hub-rehome")
        else:
            self._move(channel)

    async def _rehome(self, channel: str) -> None:
        try:
            await self.topology.refresh()
        except (RedisError, OSError) as exc:
            log.info("hub: could not refresh the Redis layout (%s); using the one known", exc)
        self._move(channel)

    async def _rediscover(self, link: _Link) -> None:
        """Before ``link`` reconnects: move its channels whose owner changed (a failover, resharding)."""
        await self.topology.refresh()
        for channel in list(link.channels):
            try:
                owner = self.topology.owner(channel)
            except HubUnavailable:
                continue
            if owner != link.owner:
                self._move(channel)

    # Delivery ---------------------------------------------------------------------------------
    def _deliver(self, channel: str, data: Any) -> None:
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

    def _resync(self, channel: str) -> None:
        entry = self._channels.get(channel)
        for sub in list(entry.subscribers if entry else ()):
            sub.offer(RESYNC)
