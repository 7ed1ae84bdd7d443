"""Realtime: the durable inbox plus a live Pub/Sub announcement, in one Lua call per delivery."""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from notifier.channels.base import (
    ALL_TARGETS,
    INBOX_ONLY,
    Channel,
    Delivery,
    OnOutcome,
    Outcome,
    reported,
)
from notifier.state.inbox import Inbox
from notifier.templates.rendering import Rendered

LIVE = "live"
"""Target: append to the inbox and publish to open connections (``INBOX_ONLY``: append only)."""


class Realtime(Channel):
    name = "realtime"
    interruptive = False
    uses_receipts = False
    is_inbox = True
    inline = True

    def __init__(self, inbox: Inbox | None = None) -> None:
        self._inbox = inbox

    @property
    def inbox(self) -> Inbox:
        if self._inbox is None:
            self._inbox = Inbox()
        return self._inbox

    def expand(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        return [Delivery(d.user_id, d.notification, LIVE) if d.target == ALL_TARGETS else d for d in deliveries]

    def build_payload(self, delivery: Delivery) -> str:
        return orjson.dumps(delivery.notification.to_dict()).decode()

    def send(self, deliveries: Sequence[Delivery], on_outcome: OnOutcome | None = None) -> list[Outcome]:
        """One pipelined round trip; appends are idempotent per notification id, so no receipts."""
        payloads: dict[tuple[str, Rendered | None], str] = {}
        items = []
        for d in deliveries:
            payload = payloads.get((d.notification.id, d.rendered))  # rendered: one per language
            if payload is None:
                payload = payloads[d.notification.id, d.rendered] = self.build_payload(d)
            items.append((d.user_id, d.notification.id, payload, d.target != INBOX_ONLY))
        results = self.inbox.append_many(items)
        return [reported(Outcome(d, detail={"entry_id": r.entry_id, "unread": r.unread, "added": r.added},
                                 provider_id=r.entry_id), on_outcome) for d, r in zip(deliveries, results, strict=True)]
