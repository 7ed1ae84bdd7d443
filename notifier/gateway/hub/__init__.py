"""The hub: a gateway process's few Redis Pub/Sub connections, shared by every open client connection.

Read it in this order: :mod:`.subscriber` (one client connection's bounded buffer), :mod:`.dialect`
(classic or sharded Pub/Sub commands), :mod:`.topology` (where each channel's subscription lives, per
kind of ``NOTIFIER_REDIS_URL``), :mod:`.link` (one Pub/Sub connection's state machine and reconnect
loop) and :mod:`.placement` (the :class:`Hub`: which link carries which user, and delivery).
"""

from notifier.errors import HubUnavailable, TooManyConnections
from notifier.gateway.hub.dialect import CLASSIC, SHARDED, PubSubCommands
from notifier.gateway.hub.placement import Hub
from notifier.gateway.hub.subscriber import RESYNC, Item, Subscriber
from notifier.gateway.hub.topology import Topology

__all__ = [
    "CLASSIC",
    "RESYNC",
    "SHARDED",
    "Hub",
    "HubUnavailable",
    "Item",
    "PubSubCommands",
    "Subscriber",
    "TooManyConnections",
    "Topology",
]
