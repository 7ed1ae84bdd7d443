"""The Redis connection of this process, and the Lua scripts that run in it.

One connection pool per process (workers, gateway, CLI), created on first use from the settings: a
single server, a Sentinel-managed master or a Redis Cluster. Lua scripts live as files in
``notifier/lua/`` and are sent once, then called by SHA; every script touches the keys of one user
only, so it stays in one cluster slot.
"""

from __future__ import annotations

import functools
import os
import threading
from importlib import resources
from typing import Any

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.cluster import RedisCluster
from redis.commands.core import Script
from redis.retry import Retry

from notifier import redis_url
from notifier.config import get_settings
from notifier.keys import Keys

CONNECT_TIMEOUT = 5.0
"""Seconds Redis may take to accept a connection before it is called unreachable."""
COMMAND_TIMEOUT = 5.0
"""Seconds one command may wait for its reply before it fails (a hung Redis must not hang a CLI command,
a producer or a worker). Safe because nothing on these clients blocks on purpose: no BLPOP, BRPOP or
XREAD BLOCK is sent through them (the gateway's Pub/Sub has its own connections, in
``notifier.gateway.redis_async``), so a reply this late means Redis is hung or overloaded."""
CONNECT_RETRIES = 2
"""Reconnects after a dropped connection (a restart, a failover). A command that timed out is not sent
again: a write might then apply twice, and the caller would wait twice as long."""

_lock = threading.Lock()
_client: redis.Redis | None = None
_client_pid: int | None = None


def is_cluster(url: str) -> bool:
    """Cluster URLs (``redis+cluster://host:port[,host:port...]``) switch Pub/Sub to sharded Pub/Sub."""
    return url.startswith(redis_url.CLUSTER_SCHEME)


def connect(url: str, **options: Any) -> redis.Redis:
    """A client for ``url``: one server, a Redis Cluster or a Sentinel's master (``notifier.redis_url``).

    Every client has connect and command timeouts (``CONNECT_TIMEOUT``, ``COMMAND_TIMEOUT``), so a
    server that accepts connections and never answers fails a call within seconds.
    """
    options.setdefault("health_check_interval", 30)
    options.setdefault("socket_keepalive", True)
    options.setdefault("socket_connect_timeout", CONNECT_TIMEOUT)
    options.setdefault("socket_timeout", COMMAND_TIMEOUT)
    target = redis_url.parse(url)
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
        sentinel = Sentinel(list(target.hosts), **timeouts,
                            sentinel_kwargs={**timeouts, **target.sentinel_credentials})
        return sentinel.master_for(target.service, db=target.db, decode_responses=True, **target.credentials,
                                   **options)
    return redis.Redis.from_url(url, decode_responses=True, **options)


def get_redis() -> redis.Redis:
    """This process's client; a forked child (Celery prefork) gets its own pool."""
    global _client, _client_pid
    pid = os.getpid()
    if _client is None or _client_pid != pid:
        with _lock:
            if _client is None or _client_pid != pid:
                _client = connect(get_settings().redis_url)
                _client_pid = pid
    return _client


def get_keys() -> Keys:
    return Keys(get_settings().key_prefix)


def reset() -> None:
    """Drop the client so the next call reconnects with fresh settings."""
    global _client
    with _lock:
        if _client is not None:
            _client.close()
        _client = None
    script.cache_clear()


@functools.lru_cache(maxsize=None)
def script(name: str) -> Script:
    """The Lua script ``notifier/lua/<name>.lua``, registered on this process's client.

    Scripts announce with ``redis.call(PUBLISH, ...)``; ``PUBLISH`` is defined here as the command
    this deployment uses (``SPUBLISH`` on a cluster).
    """
    source = resources.files("notifier").joinpath("lua", f"{name}.lua").read_text()
    source = f"local PUBLISH = '{publish_command()}'\n{source}"
    client = get_redis()
    if is_cluster(get_settings().redis_url):
        client.script_load(source)  # to every primary: cluster pipelines cannot load scripts on demand
    return client.register_script(source)


def publish_command() -> str:
    """``SPUBLISH`` on a cluster (each shard carries only its users' traffic), else ``PUBLISH``."""
    return "SPUBLISH" if is_cluster(get_settings().redis_url) else "PUBLISH"


ScriptCall = tuple[Script, list[str], list[Any]]


def run_scripts(client: redis.Redis, calls: list[ScriptCall]) -> list[Any]:
    """Run many script calls in one round trip (one per node on a cluster); results in call order.

    redis-py refuses scripts in cluster pipelines, so on a cluster the calls are grouped by the node
    owning their first key (every script's keys share one slot) and sent as a plain pipeline to each.
    """
    if not calls:
        return []
    if not isinstance(client, RedisCluster):
        pipe = client.pipeline(transaction=False)
        for lua, keys, args in calls:
            lua(keys, args, client=pipe)
        return list(pipe.execute())
    groups: dict[str, tuple[redis.Redis, list[int]]] = {}
    for index, (_, keys, _) in enumerate(calls):
        node = client.get_node_from_key(keys[0])
        groups.setdefault(node.name, (node.redis_connection, []))[1].append(index)
    results: list[Any] = [None] * len(calls)
    for node_client, indexes in groups.values():
        pipe = node_client.pipeline(transaction=False)
        for i in indexes:
            lua, keys, args = calls[i]
            lua(keys, args, client=pipe)
        for i, value in zip(indexes, pipe.execute()):
            results[i] = value
    return results
