"""The Redis connection of this process (the Lua scripts that run in it are ``notifier.redis.scripts``).

One connection pool per process (workers, gateway, CLI), created on first use from the settings: a
single server, a Sentinel-managed master or a Redis Cluster.

The server must be Redis >= 7.0 (or Valkey >= 7.2, which reports itself as Redis 7.2): idempotency
keys and receipts use ``SET ... NX GET`` and a cluster uses sharded Pub/Sub, both new in Redis 7.0.
:func:`check_server_version` refuses an older one when a process starts using the store, so it is
one line at start, never dead letters later.
"""

from __future__ import annotations

import re
from typing import Any

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

from notifier.config import get_settings
from notifier.errors import ConfigError
from notifier.per_process import PerProcess
from notifier.redis import urls
from notifier.redis.keys import Keys

StreamEntry = tuple[str, dict[str, str]]
"""One XRANGE entry as this process's clients return it. They all decode responses, so replies are text,
never bytes; redis-py's hints cover both modes (``bytes | str``), so readers ``cast`` replies to text types."""

MIN_REDIS_VERSION = (7, 0)
"""``SET ... NX GET`` (idempotency, receipts) and ``SPUBLISH`` (cluster Pub/Sub) came in Redis 7.0."""
MIN_VALKEY_VERSION = (7, 2)

CONNECT_TIMEOUT = 5.0
"""Seconds Redis may take to accept a connection before it is called unreachable."""
COMMAND_TIMEOUT = 5.0
"""Seconds one command may wait for its reply before it fails (a hung Redis must not hang a CLI command,
a producer or a worker). Safe because nothing on these clients blocks on purpose: no BLPOP, BRPOP or
XREAD BLOCK is sent through them (the gateway's Pub/Sub has its own connections, in
``notifier.redis.aio``), so a reply this late means Redis is hung or overloaded."""
UNAVAILABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
"""What a command raises when Redis is not there to answer: the connection dropped, or no reply within
``COMMAND_TIMEOUT`` (a stalled server, a partition). Either way the work waits and runs again; it is
not a bug. (redis-py's ``TimeoutError`` is not a ``ConnectionError``.)"""
CONNECT_RETRIES = 2
"""Reconnects after a dropped connection (a restart, a failover). A command that timed out is not sent
again: a write might then apply twice, and the caller would wait twice as long."""

POOL_OPTIONS: dict[str, Any] = {"health_check_interval": 30, "socket_keepalive": True,
                                "socket_connect_timeout": CONNECT_TIMEOUT}
"""What every pooled client of this process has, sync (here) and asyncio (``notifier.redis.aio``)."""

_checked_url: str | None = None
"""The store URL whose server passed :func:`check_server_version` in this process (or the one it forked from)."""


def is_cluster(url: str) -> bool:
    """Cluster URLs (``redis+cluster://host:port[,host:port...]``) switch Pub/Sub to sharded Pub/Sub."""
    return url.startswith(urls.CLUSTER_SCHEME)


def connect(url: str, **options: Any) -> redis.Redis:
    """A client for ``url``: one server, a Redis Cluster or a Sentinel's master (``notifier.redis.urls``).

    Every client has connect and command timeouts (``CONNECT_TIMEOUT``, ``COMMAND_TIMEOUT``), so a
    server that accepts connections and never answers fails a call within seconds.
    """
    options = {**POOL_OPTIONS, "socket_timeout": COMMAND_TIMEOUT, **options}
    target = urls.parse(url)
    if target.kind == "cluster":
        from redis.cluster import ClusterNode, RedisCluster

        options.pop("health_check_interval")
        return RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in target.hosts],  # type: ignore[return-value]
                            decode_responses=True, **target.credentials, **options)
    options.setdefault("retry", Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), CONNECT_RETRIES,
                                      supported_errors=(redis.exceptions.ConnectionError,)))
    if target.kind == "sentinel":
        from redis.sentinel import Sentinel

        timeouts = {"socket_timeout": COMMAND_TIMEOUT, "socket_connect_timeout": CONNECT_TIMEOUT}
        sentinel = Sentinel(list(target.hosts), socket_timeout=COMMAND_TIMEOUT,
                            socket_connect_timeout=CONNECT_TIMEOUT,
                            sentinel_kwargs={**timeouts, **target.sentinel_credentials})
        return sentinel.master_for(target.service, db=target.db, decode_responses=True, **target.credentials,
                                   **options)
    return redis.Redis.from_url(url, decode_responses=True, **options)


def _new_client() -> redis.Redis:
    """A client for the settings' store, its server's version checked once per process."""
    url = get_settings().redis_url
    client = connect(url)
    _check_once(client, url)
    return client


_client: PerProcess[redis.Redis] = PerProcess(_new_client)


def get_redis() -> redis.Redis:
    """This process's client; a forked child (Celery prefork) gets its own pool."""
    return _client.get()


def check_server_version(client: redis.Redis, url: str) -> None:
    """Raise :class:`ConfigError` naming the version needed when the server at ``url`` is too old.

    On a cluster every primary is asked; connection errors pass through to the caller.
    """
    nodes = ([node.redis_connection for node in client.get_primaries()]
             if isinstance(client, RedisCluster) else [client])
    for node in nodes:
        info = node.info("server")
        version = str(info.get("redis_version", "0"))
        if _version(version) < MIN_REDIS_VERSION:
            raise ConfigError(f"Redis at {urls.redact(url)} is {version}; notifier needs Redis >= "
                              f"{_dotted(MIN_REDIS_VERSION)} (or Valkey >= {_dotted(MIN_VALKEY_VERSION)})")


def _check_once(client: redis.Redis, url: str) -> None:
    """:func:`check_server_version` on a process's first client.

    A server that refuses the connection is left to the command that needs it (which reports it) and
    checked again by the next client made (a forked worker child's, say); one that accepts and never
    answers raises its timeout here, so a hung store costs one timeout, not two.
    """
    global _checked_url
    if _checked_url == url:
        return
    try:
        check_server_version(client, url)
    except (redis.ConnectionError, redis.ResponseError):
        return  # unreachable, or INFO not allowed for this user: nothing known to refuse
    _checked_url = url


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def _dotted(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version))


def get_keys() -> Keys:
    return Keys(get_settings().key_prefix)


def reset() -> None:
    """Drop the client so the next call reconnects with fresh settings."""
    _client.reset(lambda client: client.close())  # a RedisCluster too: not redis.Redis.close
    from notifier.redis import scripts  # scripts are registered on the client dropped here

    scripts.script.cache_clear()
