"""Event webhooks: delivery events posted to the subscribed endpoints, batched and signed.

The drain hands each batch of events it wrote, through the :class:`Outbox`, to :func:`fan_out`,
which groups them per subscription whose kinds match and enqueues one ``notifier.event_webhook``
task per subscription and batch (not per event; a very large batch in parts of
:data:`MAX_EVENTS_PER_MESSAGE`) on the ``event_webhooks`` queue, so a slow or down endpoint only
ever delays its own events. The task (``workers/event_webhooks.py``) posts with :func:`post`; the body is::

    {"type": "delivery_events", "timestamp": "<the last event's time>",
     "data": {"events": [{"kind", "notification_id", "user_id", "type", "channel", "target", "detail",
                          "at"}, ...]}}

with times in ISO 8601 (UTC), signed per Standard Webhooks by the ``standardwebhooks`` package with
the subscription's secret (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``: v1, HMAC-SHA256).
The ``webhook-id`` is a digest of the subscription and the events, the same on every retry and on a
batch drained twice, so a receiver de-duplicates on it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, cast

import orjson
import redis
from redis.client import Pipeline

from notifier.channels import egress
from notifier.channels.webhook import WebhookMessage, message_id, post_signed
from notifier.config import get_settings
from notifier.deliverylog.events import Event, decode_entry
from notifier.deliverylog.subscriptions import Subscription, Subscriptions
from notifier.per_process import PerProcess
from notifier.pipeline.queues import EVENT_WEBHOOK
from notifier.redis import store
from notifier.redis.keys import Keys
from notifier.state.deadletters import iso

EVENT_TYPE = "delivery_events"
TIMEOUT_SECONDS = 5.0
"""How long one post may take: a receiver should answer at once and work later; a slow one holds one
worker process of the ``event_webhooks`` pool this long at most, and is retried."""
OUTBOX_ENTRIES_PER_FLUSH = 100
MAX_EVENTS_PER_MESSAGE = 1000
"""Events one request carries at most, so a huge drain batch never makes a huge request."""

Enqueue = Callable[[str, list[Any]], object]
"""Sends a task by name with its arguments: a task's own ``self.enqueue``, or :func:`producer_enqueue`."""

_session = PerProcess(lambda: egress.guarded_session(get_settings().ca_file, get_settings().webhook_allow_private))


def event_dict(event: Event) -> dict[str, Any]:
    """One event as a receiver gets it."""
    return {"kind": event.kind, "notification_id": event.notification_id, "user_id": event.user_id,
            "type": event.type, "channel": event.channel, "target": event.target, "detail": event.detail,
            "at": iso(event.at)}


def fan_out(events: Iterable[Event], enqueue: Enqueue, subscriptions: Subscriptions | None = None) -> dict[str, int]:
    """Enqueue the events each active subscription wants, one task per subscription (and part);
    returns how many events went to each subscription id."""
    batch = list(events)
    if not batch:
        return {}
    sent: dict[str, int] = {}
    for sub in (subscriptions or Subscriptions()).list():
        wanted = [e for e in batch if sub.wants(e.kind)]
        for start in range(0, len(wanted), MAX_EVENTS_PER_MESSAGE):
            part = wanted[start:start + MAX_EVENTS_PER_MESSAGE]
            enqueue(EVENT_WEBHOOK, [sub.id, *message(sub.id, part)])
            sent[sub.id] = sent.get(sub.id, 0) + len(part)
    return sent


class Outbox:
    """Written events waiting for their webhook tasks to be enqueued, in a Redis stream.

    The drain moves the events some subscription wants from the buffer into it in the same
    transaction that deletes them from the buffer (:meth:`stage`), then enqueues their tasks and
    deletes each entry once its tasks are sent (:meth:`flush`). A broker that is away only leaves
    entries here for the next drain; an entry sent twice after a crash carries the same
    ``webhook-id``s, which receivers de-duplicate on.
    """

    def __init__(self, client: redis.Redis | None = None, keys: Keys | None = None) -> None:
        self.r = client or store.get_redis()
        self.keys = keys or store.get_keys()

    def stage(self, pipe: Pipeline, events: Iterable[Event], subscriptions: list[Subscription]) -> int:
        """Add to ``pipe`` (a transaction) the entry of the events a subscription wants; how many."""
        wanted = [e.row() for e in events if any(s.wants(e.kind) for s in subscriptions)]
        if wanted:
            pipe.xadd(self.keys.events_outbox(), {"e": orjson.dumps(wanted)})
        return len(wanted)

    def flush(self, enqueue: Enqueue, subscriptions: Subscriptions | None = None) -> int:
        """Enqueue the webhook tasks of every waiting entry, oldest first; returns the events sent.
        A broker error is raised with the entry that met it still waiting."""
        sent = 0
        subscriptions = subscriptions or Subscriptions(self.r, self.keys)
        while entries := cast("list[store.StreamEntry]",
                              self.r.xrange(self.keys.events_outbox(), count=OUTBOX_ENTRIES_PER_FLUSH)):
            for entry_id, fields in entries:
                counts: dict[str, int] = fan_out(decode_entry(fields), enqueue, subscriptions)
                sent += sum(counts.values())
                self.r.xdel(self.keys.events_outbox(), entry_id)
        return sent

    def pending(self) -> int:
        return int(self.r.xlen(self.keys.events_outbox()))


def message(subscription_id: str, events: list[Event]) -> tuple[str, dict[str, Any]]:
    """The webhook id and the payload of ``events`` for one subscription."""
    shown = [event_dict(e) for e in events]
    payload = {"type": EVENT_TYPE, "timestamp": shown[-1]["at"], "data": {"events": shown}}
    return message_id(subscription_id, orjson.dumps(shown).decode()), payload


def post(subscription: Subscription, webhook_id: str, payload: dict[str, Any]) -> int:
    """Post one message to the subscription's endpoint, signed now; the 2xx status, or the delivery
    error the answer means (:func:`notifier.channels.webhook.post_signed`)."""
    return post_signed(_session.get(), subscription.url, WebhookMessage(webhook_id, orjson.dumps(payload)),
                       subscription.secret, "event webhook", TIMEOUT_SECONDS)


def producer_enqueue(name: str, args: list[Any]) -> None:
    """Send a task from outside a worker task (the producer's Celery app)."""
    from notifier.pipeline.producer import producer_app
    from notifier.pipeline.queues import args_summary, queue_of

    producer_app().send_task(name, args=args, queue=queue_of(name), argsrepr=args_summary(name, args))
