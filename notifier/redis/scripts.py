"""The Lua scripts: files in ``notifier/redis/lua/``, sent once, then called by SHA.

Every script touches the keys of one user only, so it stays in one cluster slot; scripts announce with
``redis.call(PUBLISH, ...)``, where ``PUBLISH`` is the command this deployment uses.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from importlib import resources
from typing import Any

import redis
from redis.cluster import RedisCluster
from redis.commands.core import Script

from notifier.config import get_settings
from notifier.redis.store import get_redis, is_cluster


@functools.cache
def script(name: str) -> Script:
    """The Lua script ``lua/<name>.lua``, registered on this process's client.

    Scripts announce with ``redis.call(PUBLISH, ...)``; ``PUBLISH`` is defined here as the command
    this deployment uses (``SPUBLISH`` on a cluster).
    """
    source = resources.files("notifier.redis").joinpath("lua", f"{name}.lua").read_text()
    source = f"local PUBLISH = '{publish_command()}'\n{source}"
    client = get_redis()
    if is_cluster(get_settings().redis_url):
        client.script_load(source)  # to every primary: cluster pipelines cannot load scripts on demand
    return client.register_script(source)


def publish_command() -> str:
    """``SPUBLISH`` on a cluster (each shard carries only its users' traffic), else ``PUBLISH``."""
    return "SPUBLISH" if is_cluster(get_settings().redis_url) else "PUBLISH"


ScriptCall = tuple[Script, list[str], list[Any]]


def grouped_calls(lua: Script, head: list[Any], items: Sequence[tuple[list[str], tuple[Any, ...]]],
                  per_call: int) -> list[ScriptCall]:
    """Calls of ``lua`` for ``(keys, shared args)`` items, ``per_call`` items to a call: ARGV is
    ``head``, then per run of consecutive items with equal args, their count and the args once.

    A broadcast's runs and digest joins share every argument but their keys: sent once per group
    instead of once per item, the arguments cost neither the worker's packing nor Redis's parsing
    per recipient.
    """
    calls: list[ScriptCall] = []
    for start in range(0, len(items), per_call):
        keys: list[str] = []
        args = list(head)
        previous: tuple[Any, ...] | None = None
        count_at = 0
        for item_keys, shared in items[start:start + per_call]:
            keys += item_keys
            if shared == previous:
                args[count_at] += 1
                continue
            previous, count_at = shared, len(args)
            args += [1, *shared]
        calls.append((lua, keys, args))
    return calls


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
        for i, value in zip(indexes, pipe.execute(), strict=True):
            results[i] = value
    return results
