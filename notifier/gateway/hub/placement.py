"""The hub itself: which Pub/Sub link carries each user's live channel, and who hears what arrives on it.

A user's live channel is subscribed when their first connection opens and unsubscribed when the last
closes. Which connection carries a channel is the topology's answer
(:mod:`notifier.gateway.hub.topology`), and the only thing that differs between deployments: one
server (or the master a Sentinel names) gets one link for every user; a Redis Cluster gets one link per
primary that owns at least one subscribed user's slot, so each shard carries only its own users'
traffic. A channel the server refuses (MOVED) or drops (its slot migrated) is placed where it now
lives, and its subscribers replay, the same way as after a reconnect.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import RedisError

from notifier.errors import HubUnavailable, TooManyConnections
from notifier.gateway.hub.link import BACKOFF_MAX, BACKOFF_MIN, PING_INTERVAL, Link, SubscriptionOutcome
from notifier.gateway.hub.subscriber import RESYNC, Subscriber
from notifier.gateway.hub.topology import Topology
from notifier.state.inbox import parse_event

log = logging.getLogger(__name__)

SUBSCRIBE_TIMEOUT = 5.0
"""Seconds an opening connection waits for Redis to confirm its subscription."""


@dataclass(slots=True)
class _Channel:
    user_id: str
    subscribers: list[Subscriber] = field(default_factory=list)
    """A list, not a set: a user has one or two connections (an empty set is 0.2 KiB, a list 56 bytes)."""
    link: Link | None = None
    """The connection this channel is placed on (subscribed, or about to be)."""


class Hub:
    """Multiplexes every connected user over the topology's Pub/Sub connections (see the module docstring)."""

    def __init__(self, topology: Topology, channel_of: Callable[[str], str], buffer: int, max_per_user: int,
                 ping_interval: float = PING_INTERVAL) -> None:
        """``channel_of`` names a user's live channel (:meth:`notifier.state.inbox.Inbox.live_channel`)."""
        self.topology = topology
        self.ping_interval = ping_interval
        self._channel_of = channel_of
        self._buffer = buffer
        self._max_per_user = max_per_user
        self._channels: dict[str, _Channel] = {}
        self._links: dict[str, Link] = {}
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
        channel = self._channel_of(user_id)
        entry = self._channels.get(channel)
        if entry is not None and len(entry.subscribers) >= self._max_per_user:
            raise TooManyConnections(
                f"user already has {self._max_per_user} open connections; close one and retry")
        if not self._mapped:
            raise HubUnavailable("the gateway is not connected to Redis; retry shortly")
        if entry is None:
            entry = self._channels[channel] = _Channel(user_id)
        sub = Subscriber(user_id, self._buffer)
        entry.subscribers.append(sub)
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
        channel = self._channel_of(sub.user_id)
        entry = self._channels.get(channel)
        if entry is None or sub not in entry.subscribers:
            return
        entry.subscribers.remove(sub)
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
            if outcome is SubscriptionOutcome.LIVE:
                return
            if outcome is SubscriptionOutcome.LOST:
                raise HubUnavailable("the gateway lost its Redis connection; retry shortly")

    # Placement: which link carries a channel --------------------------------------------------
    def _open(self, owner: str, keep: bool) -> Link:
        link = self._links[owner] = Link(self, owner, keep)
        link.task = self._spawn(link.run(), f"notifier-hub {owner}")
        return link

    def _place(self, channel: str, resync: bool = False) -> Link:
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

    def _unplace(self, link: Link, channel: str) -> None:
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

    def _dropped(self, link: Link, channel: str, refresh: bool) -> None:
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

    async def _rediscover(self, link: Link) -> None:
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
        """Parse a message once for all of the user's connections; ignore what is no live event."""
        entry = self._channels.get(channel)
        if entry is None:
            return
        try:
            event = parse_event(data)
        except ValueError:
            log.warning("hub: ignoring a malformed message on %s", channel)
            return
        if event is None:
            return
        for sub in entry.subscribers:  # offer() wakes, it never detaches: the list cannot change meanwhile
            sub.offer(event)

    def _resync(self, channel: str) -> None:
        entry = self._channels.get(channel)
        for sub in list(entry.subscribers if entry else ()):
            sub.offer(RESYNC)
