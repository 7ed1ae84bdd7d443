"""Where the hub's Pub/Sub connections go, for each kind of ``NOTIFIER_REDIS_URL``.

- one server: one connection, kept open, classic SUBSCRIBE;
- ``redis+sentinel://``: the same, to the master the Sentinels name — asked again on every reconnect,
  so the hub follows a failover;
- ``redis+cluster://``: sharded SSUBSCRIBE on the primary owning each channel's slot, from a slot map
  read with CLUSTER SLOTS, corrected by MOVED replies and read again before every reconnect.

Each is a :class:`Topology`; the hub's logic (:mod:`notifier.gateway.hub.placement`) is the same for all three.
"""

from __future__ import annotations

from typing import Protocol
from urllib.parse import urlsplit

from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MovedError, RedisClusterException

from notifier.errors import HubUnavailable
from notifier.gateway.hub.dialect import CLASSIC, SHARDED, PubSubCommands
from notifier.redis.aio import cluster_map, pubsub_connection, pubsub_connection_to, sentinel
from notifier.redis.urls import RedisURL, parse


class Topology(Protocol):
    """Where each channel's subscription lives and how to connect there."""

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


class _OneConnection:
    """Every channel on one connection, kept open; nothing to map, nothing ever moves."""

    commands: PubSubCommands = CLASSIC
    always: tuple[str, ...]

    async def refresh(self) -> None:
        """Nothing to learn: there is one server."""

    async def moved(self, error: MovedError) -> None:
        """A single server does not redirect; the hub reconnects if it ever does."""

    def owner(self, channel: str) -> str:
        return self.always[0]

    async def aclose(self) -> None:
        """Nothing kept open."""


class ServerTopology(_OneConnection):
    """One Redis server."""

    def __init__(self, url: str) -> None:
        self._url = url
        parts = urlsplit(url)
        self.always = (parts.path if parts.scheme == "unix" else f"{parts.hostname}:{parts.port or 6379}",)

    async def connect(self, owner: str) -> AbstractConnection:
        conn = pubsub_connection(self._url)
        await conn.connect()
        return conn


class SentinelTopology(_OneConnection):
    """The master a Sentinel names, wherever it is at connect time."""

    def __init__(self, target: RedisURL) -> None:
        self._target = target
        self._sentinel = sentinel(target)
        self.always = (f"master {target.service!r} (via Sentinel)",)

    async def connect(self, owner: str) -> AbstractConnection:
        host, port = await self._sentinel.discover_master(self._target.service)
        conn = pubsub_connection_to(self._target, host, port)
        await conn.connect()
        return conn

    async def aclose(self) -> None:
        for client in self._sentinel.sentinels:
            await client.aclose()


class ClusterTopology:
    """A Redis Cluster: each channel on the primary that owns its slot, with sharded Pub/Sub."""

    commands: PubSubCommands = SHARDED
    always: tuple[str, ...] = ()

    def __init__(self, target: RedisURL) -> None:
        self._target = target
        self._cluster = cluster_map(target)

    async def refresh(self) -> None:
        try:
            await self._cluster.nodes_manager.initialize()
        except RedisClusterException as exc:
            raise RedisConnectionError(f"no cluster node answered CLUSTER SLOTS: {exc}") from exc

    async def moved(self, error: MovedError) -> None:
        try:
            await self._cluster.nodes_manager.move_slot(error)
        except KeyError:
            await self.refresh()

    def owner(self, channel: str) -> str:
        """``host:port`` of the primary owning ``channel``'s slot (the hash tag puts it in its user's)."""
        try:
            node = self._cluster.get_node_from_key(channel)
        except RedisClusterException as exc:
            raise HubUnavailable(f"the cluster has no node for {channel!r} right now ({exc})") from None
        if node is None:
            raise HubUnavailable(f"the cluster has no node for {channel!r} right now (its slot map has none)")
        return str(node.name)

    async def connect(self, owner: str) -> AbstractConnection:
        host, _, port = owner.rpartition(":")
        conn = pubsub_connection_to(self._target, host, int(port))
        await conn.connect()
        return conn

    async def aclose(self) -> None:
        """Close the slot-map connections (the client's own ``aclose`` skips a client never used for commands)."""
        await self._cluster.nodes_manager.aclose()
        await self._cluster.nodes_manager.aclose("startup_nodes")


def topology(url: str) -> Topology:
    """The topology for a ``NOTIFIER_REDIS_URL`` (already checked by ``redis_async.check_url``)."""
    target = parse(url)
    if target.kind == "cluster":
        return ClusterTopology(target)
    if target.kind == "sentinel":
        return SentinelTopology(target)
    return ServerTopology(url)
