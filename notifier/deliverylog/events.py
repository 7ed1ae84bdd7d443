"""Delivery events, and the Redis buffer they wait in until the drain task writes them to the database.

An event says what happened to one notification for one user, on one channel and target where that
applies: ``Event(kind, notification_id, user_id, channel, target, detail, at)``. ``detail`` carries
what the kind needs (the reason of a skip, the provider's message id of a send, the attempt and error
of a retry). Producers hand a task batch's events to :meth:`EventLog.record_many`: one script call
appends them as one stream entry, so a broadcast batch of 500 recipients costs one command, not 500.

The stream is bounded (:data:`BUFFER_MAX_ENTRIES`): when the database has been away so long that the
buffer is full, new batches are dropped and counted (``Keys.events_dropped``), never blocking a
delivery.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis

from notifier.config import get_settings
from notifier.redis import scripts, store
from notifier.redis.keys import Keys

KINDS: dict[str, str] = {
    "accepted": "the router took the send (detail: idempotency = new | duplicate (of = the first send's id) | "
                "none, sent without a key)",
    "queued": "routed to a channel now (detail: inbox_only, stored without a live announcement, and reason "
              "rate_limited when the inbox's own limit did it)",
    "skipped": "not sent on a channel (detail: reason = channel_disabled | type_disabled | expired | "
               "no_address | no_device | deduplicated)",
    "held": "held back on a channel (detail: reason = quiet_hours | rate_limited, until = epoch s)",
    "workflow": "a workflow run's step (detail: step, outcome = sent | waited | opened | joined | closed | "
                "skipped | throttled | passed | lost | cancelled, the step's own detail text, until when it waits)",
    "sent": "a provider accepted it for a target (detail: provider_id, the FCM name, APNs apns-id, SMTP "
            "queue id where the provider gives one)",
    "retried": "a send failed and will be tried again (detail: attempt, delay, error)",
    "failed": "given up on: dead-lettered (detail: error, dead_letter id)",
    "replayed": "a dead letter was replayed (detail: dead_letter id)",
    "pruned": "the target is gone and was removed (detail: error)",
    "delivered": "the gateway pushed it to a live connection (target: the transport, sse | websocket; detail: "
                 "entry_id, replayed when sent as part of a resume)",
    "seen": "the user's client showed it",
    "read": "the user marked it read",
    "clicked": "the user clicked it or one of its actions (detail: action)",
    "deleted": "the user deleted it from the inbox",
}
"""Every event kind, with what it means and what its ``detail`` holds."""

BUFFER_MAX_ENTRIES = 100_000
"""Stream entries (task batches of events) kept while the database cannot take them: at the default
batch of 500 sends, room for tens of millions of events; beyond it, batches are dropped and counted."""


@dataclass(frozen=True, slots=True)
class Event:
    kind: str
    notification_id: str
    user_id: str
    channel: str | None = None
    target: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    at: float = field(default_factory=time.time)
    type: str | None = None
    """The notification's type, for ``notifier log --type``."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown event kind {self.kind!r}; the kinds are {', '.join(KINDS)}")

    def row(self) -> list[Any]:
        """The compact form stored in the stream (and read back by :func:`from_row`)."""
        return [self.kind, self.notification_id, self.user_id, self.channel, self.target, self.detail,
                self.at, self.type]


def from_row(row: Sequence[Any]) -> Event:
    kind, nid, user, channel, target, detail, at, type_ = row
    return Event(kind, nid, user, channel, target, detail or {}, float(at), type_)


class EventLog:
    """Appends events to the buffer stream; does nothing when ``NOTIFIER_DELIVERY_LOG`` is off."""

    def __init__(self, client: redis.Redis | None = None, keys: Keys | None = None) -> None:
        self.enabled = get_settings().delivery_log
        self.r = client or store.get_redis()
        self.keys = keys or store.get_keys()

    def record_many(self, events: Iterable[Event]) -> bool:
        """Append a batch of events as one stream entry; False when the buffer was full and the batch
        was dropped (and counted), or there was nothing to record."""
        if not self.enabled:
            return False
        rows = [e.row() for e in events]
        if not rows:
            return False
        appended = scripts.script("events_append")(
            [self.keys.events(), self.keys.events_dropped()], [BUFFER_MAX_ENTRIES, len(rows), orjson.dumps(rows)],
            client=self.r)
        return bool(appended)

    def record(self, event: Event) -> bool:
        return self.record_many([event])

    def dropped(self) -> int:
        """Events dropped because the buffer was full, since the counter was created."""
        return int(self.r.get(self.keys.events_dropped()) or 0)

    def pending(self) -> int:
        """Stream entries (batches) waiting to be written."""
        return int(self.r.xlen(self.keys.events()))


def decode_entry(fields: dict[Any, Any]) -> list[Event]:
    """The events of one stream entry (its ``e`` field)."""
    raw = fields.get(b"e", fields.get("e"))
    return [from_row(row) for row in orjson.loads(raw)] if raw else []
