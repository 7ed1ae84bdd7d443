"""The gateway's asyncio Redis connections, made with the same options as ``notifier.store.connect``.

The gateway's request handlers use the library's synchronous classes (``Inbox``, ``PreferenceStore``)
in the thread pool, so every rule stays in one place; only the event loop's own work — the hub's one
Pub/Sub connection and the health check — needs asyncio connections, made here.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aredis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from notifier.errors import ConfigError

SUPPORTED = ("redis://", "rediss://", "unix://")
CONNECT_TIMEOUT = 5.0
HUB_CLIENT_NAME = "notifier-gateway-hub"
"""Shown by ``CLIENT LIST``: one such connection per gateway process, whatever the number of clients."""
"""Seconds to wait for Redis to accept a connection before calling it unreachable."""


def check_url(url: str) -> str:
    """The hub subscribes on one server; Cluster (sharded Pub/Sub) and Sentinel URLs are refused clearly."""
    if not url.startswith(SUPPORTED):
        raise ConfigError(f"the gateway needs NOTIFIER_REDIS_URL to be a {', '.join(SUPPORTED)} URL; "
                          f"{url.split('://')[0]}:// (Cluster/Sentinel) is not supported by the gateway yet")
    return url


def connect(url: str, **options: Any) -> aredis.Redis:
    """A pooled asyncio client for ``url`` (the options mirror ``notifier.store.connect``)."""
    options.setdefault("health_check_interval", 30)
    options.setdefault("socket_keepalive", True)
    options.setdefault("retry_on_timeout", True)
    options.setdefault("socket_connect_timeout", CONNECT_TIMEOUT)
    return aredis.Redis.from_url(url, decode_responses=True, **options)


def pubsub_connection(url: str) -> AbstractConnection:
    """A single raw connection for the hub, which owns reconnecting and liveness itself.

    RESP2, where Pub/Sub messages are plain replies (RESP3 routes them to a push handler instead).
    No built-in retries (a silent reconnect would hide the gap the hub must fill for its clients),
    no health-check reads (only the hub's reader task may read), and a connect timeout.
    """
    pool = aredis.ConnectionPool.from_url(
        url, decode_responses=True, socket_keepalive=True, socket_connect_timeout=CONNECT_TIMEOUT,
        socket_timeout=CONNECT_TIMEOUT * 2,
        health_check_interval=0, retry=Retry(NoBackoff(), 0), protocol=2, client_name=HUB_CLIENT_NAME)
    return pool.make_connection()
