"""One Pub/Sub connection of the hub: its state machine, the replies it waits for and its reconnect loop.

Each connection (a :class:`Link`) has a reader, a writer and a liveness task. Commands are queued in order,
each with the reply it expects (a :class:`Pending`); Redis answers in order, so the reader matches every
confirmation to its command and tells an opening connection exactly when its subscription is live — the
moment after which nothing published can be missed, and so the moment it may read the inbox to replay.

When a connection drops (Redis restarts, a network cut, a failover) it reconnects with backoff, first
asking the hub to place its channels again, subscribes every channel again and, once each is confirmed,
has the hub put :data:`~notifier.gateway.hub.subscriber.RESYNC` in its subscribers' queues. Which link
carries which channel is decided in :mod:`notifier.gateway.hub.placement`, not here.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import random
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from redis.asyncio.connection import AbstractConnection
from redis.exceptions import MovedError, RedisError, ResponseError

from notifier.errors import HubUnavailable

if TYPE_CHECKING:
    from notifier.gateway.hub.placement import Hub

log = logging.getLogger(__name__)

PING_INTERVAL = 5.0
"""Seconds of silence after which the hub pings Redis; no answer within as long again means dead."""
BACKOFF_MIN, BACKOFF_MAX = 0.1, 5.0


class SubscriptionOutcome(enum.Enum):
    LIVE = "live"
    MOVED = "moved"
    """Not (or no longer) subscribed on that connection: ask the hub where the channel lives now."""
    LOST = "lost"
    """The connection went away."""


@dataclass(eq=False, slots=True)
class Pending:
    """A command sent on a link, waiting for its reply; a subscription's waiters watch ``outcome``.

    A link keeps the subscription of every live channel, one per connected user, so the future exists
    only while someone waits for the outcome (0.3 KiB per user less once it is known).
    """

    reply: str
    """The reply kind it expects: ``subscribe``, ``sunsubscribe``, ``pong``..."""
    channel: str | None = None
    outcome: asyncio.Future[SubscriptionOutcome] | None = None
    state: SubscriptionOutcome | None = None

    def settle(self, state: SubscriptionOutcome) -> None:
        if self.state is None:
            self.state = state
            outcome, self.outcome = self.outcome, None
            if outcome is not None and not outcome.done():
                outcome.set_result(state)

    async def wait(self) -> SubscriptionOutcome:
        """The subscription's outcome; shielded, since other connections may be waiting for it too."""
        if self.state is not None:
            return self.state
        if self.outcome is None:
            self.outcome = asyncio.get_running_loop().create_future()
        return await asyncio.shield(self.outcome)


class Link:
    """One Pub/Sub connection, the channels it carries, and its reconnect loop."""

    def __init__(self, hub: Hub, owner: str, keep: bool) -> None:
        self.hub = hub
        self.owner = owner
        self.keep = keep
        """Stay connected with no channel (a single server); an on-demand link closes when empty."""
        self.channels: set[str] = set()
        """What this connection must carry."""
        self.live: dict[str, Pending] = {}
        """Channel -> the subscription that makes (or made) it live on the current connection."""
        self.resync: set[str] = set()
        """Channels whose subscribers replay once their current subscription is confirmed."""
        self.conn: AbstractConnection | None = None
        self.down = keep
        """Failing (waiting to reconnect): attaches fail fast. An on-demand link starts out connecting."""
        self._commands = hub.topology.commands
        self._expected: deque[Pending] = deque()
        self._outbox: list[tuple[str, ...]] = []
        self._wake = asyncio.Event()
        self._writing = False
        self._heard = 0
        """Replies read so far: the liveness check's only input."""
        self._connected_once = False
        self.closed = False
        self.task: asyncio.Task[None] | None = None

    # Commands (synchronous, so their order is the program's order) ------------------------------
    def _send(self, commands: list[tuple[str, ...]], expected: list[Pending]) -> None:
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

    def _new_subscription(self, channel: str) -> Pending:
        return Pending(self._commands.subscribe.lower(), channel)

    def subscribe(self, channel: str) -> Pending:
        """The subscription that makes ``channel`` live here: the current one, or a new one."""
        pending = self.live.get(channel)
        if pending is not None and pending.state is not SubscriptionOutcome.MOVED:
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
        refused = pending.state is SubscriptionOutcome.MOVED
        pending.settle(SubscriptionOutcome.MOVED)
        if self.conn is not None and not refused:
            self._send([(self._commands.unsubscribe, channel)], [Pending(self._commands.unsubscribe.lower(), channel)])

    def replay_when_live(self, channel: str) -> None:
        """Have ``channel``'s subscribers replay as soon as its subscription here is confirmed."""
        pending = self.live.get(channel)
        if pending is not None and pending.state is SubscriptionOutcome.LIVE:
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
            pending.settle(SubscriptionOutcome.LOST)
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
            self._send([("PING",)], [Pending("pong")])
            await asyncio.sleep(interval)
            if self._heard == heard:
                raise HubUnavailable("Redis did not answer PING")

    def _pop(self, reply: str, channel: str | None) -> Pending:
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
            pending.settle(SubscriptionOutcome.LIVE)
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
        head.settle(SubscriptionOutcome.MOVED)
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
