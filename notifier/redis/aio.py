"""The gateway's asyncio Redis connections, made with the same options as ``notifier.redis.store.connect``.

The gateway's request handlers use the library's synchronous classes (``Inbox``, ``PreferenceStore``)
in the thread pool, so every rule stays in one place; only the event loop's own work — the hub's
Pub/Sub connections, the health check, and the two reads that start a live connection (thousands of
clients reconnecting at once would queue those behind the thread pool) — uses asyncio connections,
made here. The URL kinds, and their credentials, are the store's (``notifier.redis.urls``).
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

from notifier.redis.store import CONNECT_TIMEOUT, POOL_OPTIONS
from notifier.redis.urls import RedisURL, parse

HUB_CLIENT_NAME = "notifier-gateway-hub"
"""Shown by ``CLIENT LIST``: per gateway process, one such connection per server (per shard on a cluster)."""


def check_url(url: str) -> str:
    """Refuse, with the expected forms, a URL the gateway cannot connect to."""
    parse(url)
    return url


def connect(url: str, **options: Any) -> aredis.Redis | RedisCluster:
    """A pooled asyncio client for ``url`` (with the store's ``POOL_OPTIONS``)."""
    options = {**POOL_OPTIONS, "retry_on_timeout": True, **options}
    target = parse(url)
    if target.kind == "cluster":
        options.pop("retry_on_timeout")
        return RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in target.hosts],
                            decode_responses=True, **target.credentials, **options)
    if target.kind == "sentinel":
        return sentinel(target).master_for(target.service, db=target.db, decode_responses=True,
                                           **target.credentials, **options)
    return aredis.Redis.from_url(url, decode_responses=True, **options)


def sentinel(target: RedisURL) -> Sentinel:
    """A client of the Sentinels a ``redis+sentinel://`` URL names, to ask them for the master."""
    return Sentinel(list(target.hosts), socket_timeout=CONNECT_TIMEOUT, socket_connect_timeout=CONNECT_TIMEOUT,
                    sentinel_kwargs={"socket_timeout": CONNECT_TIMEOUT, "socket_connect_timeout": CONNECT_TIMEOUT,
                                     **target.sentinel_credentials})


def cluster_map(target: RedisURL) -> RedisCluster:
    """A cluster client used only for its slot map: which primary owns which slot."""
    return RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in target.hosts], decode_responses=True,
                        socket_connect_timeout=CONNECT_TIMEOUT, socket_timeout=CONNECT_TIMEOUT,
                        **target.credentials)


def _pubsub_options() -> dict[str, Any]:
    """RESP2, where Pub/Sub messages are plain replies (RESP3 routes them to a push handler instead).
    No built-in retries (a silent reconnect would hide the gap the hub must fill for its clients),
    no health-check reads (only the hub's reader task may read), and a connect timeout.
    """
    return {"decode_responses": True, "socket_keepalive": True, "socket_connect_timeout": CONNECT_TIMEOUT,
            "socket_timeout": CONNECT_TIMEOUT * 2, "health_check_interval": 0, "retry": Retry(NoBackoff(), 0),
            "protocol": 2, "client_name": HUB_CLIENT_NAME}


def pubsub_connection(url: str) -> AbstractConnection:
    """A single raw connection for the hub, which owns reconnecting and liveness itself."""
    return aredis.ConnectionPool.from_url(url, **_pubsub_options()).make_connection()


def pubsub_connection_to(target: RedisURL, host: str, port: int) -> AbstractConnection:
    """The same raw connection, to an address learned at run time (a cluster node, a Sentinel's master)."""
    return aredis.Connection(host=host, port=port, db=target.db, **target.credentials, **_pubsub_options())
