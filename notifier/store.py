"""The Redis connection of this process, and the Lua scripts that run in it.

One connection pool per process (workers, gateway, CLI), created on first use from the settings.
Lua scripts live as files in ``notifier/lua/`` and are sent once, then called by SHA.
"""

from __future__ import annotations

import functools
import os
import threading
from importlib import resources
from typing import Any

import redis
from redis.commands.core import Script

from notifier.config import get_settings
from notifier.keys import Keys

_lock = threading.Lock()
_client: redis.Redis | None = None
_client_pid: int | None = None


def connect(url: str, **options: Any) -> redis.Redis:
    """A client for ``url``: plain Redis or ``rediss://`` (Sentinel and Cluster come with scale-out)."""
    options.setdefault("health_check_interval", 30)
    options.setdefault("socket_keepalive", True)
    options.setdefault("retry_on_timeout", True)
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
    """The Lua script ``notifier/lua/<name>.lua``, registered on this process's client."""
    source = resources.files("notifier").joinpath("lua", f"{name}.lua").read_text()
    return get_redis().register_script(source)
