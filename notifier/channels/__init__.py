"""Channel adapters, one module each; :func:`get_channel` finds one by name."""

from __future__ import annotations

import importlib
import threading

from notifier.channels.base import ALL_TARGETS, Channel, Delivery, Outcome
from notifier.config import CHANNELS
from notifier.errors import ConfigError

__all__ = ["ALL_TARGETS", "Channel", "Delivery", "Outcome", "get_channel", "close_all"]

_instances: dict[str, Channel] = {}
_lock = threading.Lock()


def get_channel(name: str) -> Channel:
    """The adapter for ``name``, created once per process (it may hold connections)."""
    if name not in CHANNELS:
        raise ConfigError(f"unknown channel {name!r}")
    with _lock:
        if name not in _instances:
            module = importlib.import_module(f"notifier.channels.{name}")
            classes = [c for c in vars(module).values()
                       if isinstance(c, type) and issubclass(c, Channel) and getattr(c, "name", None) == name]
            _instances[name] = classes[0]()
        return _instances[name]


def close_all() -> None:
    with _lock:
        for channel in _instances.values():
            channel.close()
        _instances.clear()
