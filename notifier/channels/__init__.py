"""Channel adapters, one module each, listed in :mod:`notifier.channels.registry`;
:func:`get_channel` gives the one instance of each per process."""

from __future__ import annotations

import threading

from notifier.channels import registry
from notifier.channels.base import ALL_TARGETS, INBOX_ONLY, Channel, Delivery, Outcome

__all__ = ["ALL_TARGETS", "INBOX_ONLY", "Channel", "Delivery", "Outcome", "close_all", "get_channel"]

_instances: dict[str, Channel] = {}
_lock = threading.Lock()


def get_channel(name: str) -> Channel:
    """The adapter for ``name``, created once per process (it may hold connections)."""
    cls = registry.channel_class(name)
    with _lock:
        if name not in _instances:
            _instances[name] = cls()
        return _instances[name]


def close_all() -> None:
    with _lock:
        for channel in _instances.values():
            channel.close()
        _instances.clear()
