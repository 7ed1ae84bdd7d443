"""The two Pub/Sub dialects Redis speaks: classic SUBSCRIBE on one server, sharded SSUBSCRIBE on a cluster.

The link reads every command name and reply kind from here, so the same code serves both.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PubSubCommands:
    """A Pub/Sub dialect: classic (one server) or sharded (a cluster, where a channel lives in a slot)."""

    subscribe: str
    unsubscribe: str
    message: str
    """The first element of a published message's reply."""
    batch: bool
    """Whether one command may name many channels (sharded ones may not: they sit in different slots)."""


CLASSIC = PubSubCommands("SUBSCRIBE", "UNSUBSCRIBE", "message", batch=True)
SHARDED = PubSubCommands("SSUBSCRIBE", "SUNSUBSCRIBE", "smessage", batch=False)
