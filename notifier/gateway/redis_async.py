"""The gateway's asyncio Redis connections, made with the same options as ``notifier.store.connect``.

The gateway's request handlers use the library's synchronous classes (``Inbox``, ``PreferenceStore``)
in the thread pool, so every rule stays in one place; only the event loop's own work — the hub's
Pub/Sub connections, the health check, and the two reads that start a live connection (thousands of
clients reconnecting at once would queue those behind the thread pool) — uses asyncio connections,
made here. The URL kinds are the store's: one server, ``redis+sentinel://`` (the master a Sentinel
names) and ``redis+cluster://``.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

from notifier.errors import ConfigError
from notifier.store import CLUSTER_SCHEME, SENTINEL_SCHEME, parse_hosts

SUPPORTED = ("redis://", "rediss://", "unix://", CLUSTER_SCHEME, SENTINEL_SCHEME)
CONNECT_TIMEOUT = 5.0
"""Seconds to wait for Redis to accept a connection before calling it unreachable."""
HUB_CLIENT_NAME = "notifier-gateway-hub"
"""Shown by ``CLIENT LIST``: per gateway process, one such connection per server (per shard on a cluster)."""


def cluster_nodes(url: str) -> list[tuple[str, int]]:
    """The startup nodes of a ``redis+cluster://h1:p1,h2:p2`` URL."""
    return parse_hosts(url[len(CLUSTER_SCHEME):].split("/", 1)[0], 6379)


def sentinel_parts(url: str) -> tuple[list[tuple[str, int]], str, int]:
    """``(sentinels, master name, db)`` of a ``redis+sentinel://s1:26379,s2:26379/mymaster/0`` URL."""
    hosts, _, path = url[len(SENTINEL_SCHEME):].partition("/")
    service, _, db = path.partition("/")
    if not service:
        raise ConfigError(f"{url!r}: name the master, e.g. redis+sentinel://host:26379/mymaster/0")
    if db and not db.isdigit():
        raise ConfigError(f"{url!r}: the database after the master name must be a number")
    return parse_hosts(hosts, 26379), service, int(db or 0)


def check_url(url: str) -> str:
    """Refuse, with the expected forms, a URL the gateway cannot connect to."""
    if not url.startswith(SUPPORTED):
        raise ConfigError(f"the gateway needs NOTIFIER_REDIS_URL to be a {', '.join(SUPPORTED)} URL; "
                          f"got {url.split('://')[0]}://")
    if url.startswith(CLUSTER_SCHEME):
        cluster_nodes(url)
    elif url.startswith(SENTINEL_SCHEME):
        sentinel_parts(url)
    return url


def connect(url: str, **options: Any) -> aredis.Redis | RedisCluster:
    """A pooled asyncio client for ``url`` (the options mirror ``notifier.store.connect``)."""
    options.setdefault("health_check_interval", 30)
    options.setdefault("socket_keepalive", True)
    options.setdefault("retry_on_timeout", True)
    options.setdefault("socket_connect_timeout", CONNECT_TIMEOUT)
    if url.startswith(CLUSTER_SCHEME):
        options.pop("retry_on_timeout")
        return RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in cluster_nodes(url)],
                            decode_responses=True, **options)
    if url.startswith(SENTINEL_SCHEME):
        _, service, db = sentinel_parts(url)
        return sentinel(url).master_for(service, db=db, decode_responses=True, **options)
    return aredis.Redis.from_url(url, decode_responses=True, **options)


def sentinel(url: str) -> Sentinel:
    """A client of the Sentinels a ``redis+sentinel://`` URL names, to ask them for the master."""
    sentinels, _, _ = sentinel_parts(url)
    return Sentinel(sentinels, socket_timeout=CONNECT_TIMEOUT, socket_connect_timeout=CONNECT_TIMEOUT)


def cluster_map(url: str) -> RedisCluster:
    """A cluster client used only for its slot map: which primary owns which slot."""
    return RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in cluster_nodes(url)], decode_responses=True,
                        socket_connect_timeout=CONNECT_TIMEOUT, socket_timeout=CONNECT_TIMEOUT)


def _pubsub_options() -> dict[str, Any]:
    """RESP2, where Pub/Sub messages are plain replies (RESP3 routes them to a push handler instead).
    No built-in retries (a silent reconnect would hide the gap the hub must fill for its clients),
    no health-check reads (only the hub's reader task may read), and a connect timeout.
    """
    return dict(decode_responses=True, socket_keepalive=True, socket_connect_timeout=CONNECT_TIMEOUT,
                socket_timeout=CONNECT_TIMEOUT * 2, health_check_interval=0, retry=Retry(NoBackoff(), 0),
                protocol=2, client_name=HUB_CLIENT_NAME)


def pubsub_connection(url: str) -> AbstractConnection:
    """A single raw connection for the hub, which owns reconnecting and liveness itself."""
    return aredis.ConnectionPool.from_url(url, **_pubsub_options()).make_connection()


def pubsub_connection_to(host: str, port: int, db: int = 0) -> AbstractConnection:
    """The same raw connection, to an address learned at run time (a cluster node, a Sentinel's master)."""
    return aredis.Connection(host=host, port=port, db=db, **_pubsub_options())
