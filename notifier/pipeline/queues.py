"""Task names, queues and routes: the contract between producers and workers.

Producers send tasks by name (they never import worker code); workers register the same names.
Each channel in the registry (``notifier/channels/registry.py``) has its own queue, named after it,
so pools scale per queue (``celery -A workers worker -Q fcm``).
"""

from __future__ import annotations

from typing import Any

from notifier.channels.registry import names

CHANNELS: tuple[str, ...] = names()
"""Every channel, built-in and installed (read once per process, like Celery's queue list)."""
ROUTER_QUEUE = "router"
LOG_QUEUE = "log"
"""The delivery log's own tasks (the drain, retention), kept off the delivery queues."""
EVENT_WEBHOOKS_QUEUE = "event_webhooks"
"""The delivery log's event webhooks, on a queue of their own: a slow or down endpoint never holds up
a delivery."""
QUEUES: tuple[str, ...] = (ROUTER_QUEUE, *CHANNELS, LOG_QUEUE, EVENT_WEBHOOKS_QUEUE)

ROUTE = "notifier.route"
"""Route a batch of ``[user_id, notification, idempotency_key]`` items."""
ROUTE_USERS = "notifier.route_users"
"""Route one notification to a batch of user ids."""
ROUTE_AUDIENCE = "notifier.route_audience"
"""Expand a group or every known user into ``ROUTE_USERS`` batches."""
ADVANCE = "notifier.workflow.advance"
"""Take the next steps of workflow runs, ``[user_id, run_id, step]`` refs (``workers/workflow.py``)."""
WAKE_SNOOZED = "notifier.inbox.wake"
"""Bring back a user's snoozed notifications that are due, ``[user_id]`` (``workers/inbox.py``)."""
REPLAY = "notifier.replay_dead_letters"
"""Re-enqueue dead-lettered tasks (``notifier dlq replay``)."""
DRAIN_LOG = "notifier.log.drain"
"""Write the delivery events waiting in Redis to the log's database (``workers/deliverylog.py``)."""
PRUNE_LOG = "notifier.log.prune"
"""Delete the log's events older than ``NOTIFIER_LOG_RETENTION_DAYS``."""
EVENT_WEBHOOK = "notifier.event_webhook"
"""Post one batch of delivery events to one subscription, ``[subscription_id, message_id, payload]``
(``workers/event_webhooks.py``)."""


def deliver_task(channel: str) -> str:
    """One task name per channel, so Flower and logs show which channel a task is for."""
    return f"notifier.deliver.{channel}"


ROUTES: dict[str, dict[str, str]] = {
    ROUTE: {"queue": ROUTER_QUEUE},
    ROUTE_USERS: {"queue": ROUTER_QUEUE},
    ROUTE_AUDIENCE: {"queue": ROUTER_QUEUE},
    ADVANCE: {"queue": ROUTER_QUEUE},
    REPLAY: {"queue": ROUTER_QUEUE},
    WAKE_SNOOZED: {"queue": ROUTER_QUEUE},
    DRAIN_LOG: {"queue": LOG_QUEUE},
    PRUNE_LOG: {"queue": LOG_QUEUE},
    EVENT_WEBHOOK: {"queue": EVENT_WEBHOOKS_QUEUE},
    **{deliver_task(c): {"queue": c} for c in CHANNELS},
}


def queue_of(task_name: str) -> str:
    return ROUTES.get(task_name, {"queue": ROUTER_QUEUE})["queue"]


def args_summary(task_name: str, args: list[Any]) -> str:
    """A short, readable summary of a task's arguments for Flower and task events.

    It names users, types and counts, never whole payloads: arguments can be large (a batch of
    500 notifications), and nothing secret travels in them, but a summary is what an operator reads.
    """
    try:
        if task_name == ROUTE:
            items = args[0]
            first = items[0]
            head = f"{first[0]}: {first[1].get('type')} {first[1].get('title', '')[:40]!r}"
            return head if len(items) == 1 else f"{len(items)} sends, first {head}"
        if task_name == ROUTE_USERS:
            notification, users = args
            return f"{notification.get('type')} {notification.get('title', '')[:40]!r} to {len(users)} user(s)"
        if task_name == ROUTE_AUDIENCE:
            notification, audience = args
            return f"{notification.get('type')} {notification.get('title', '')[:40]!r} to {audience}"
        if task_name == ADVANCE:
            refs = args[0]
            head = f"{refs[0][0]}: run {refs[0][1]} from step {int(refs[0][2]) + 1}"
            return head if len(refs) == 1 else f"{len(refs)} workflow runs, first {head}"
        if task_name.startswith("notifier.deliver."):
            notifications, targets = args
            users = sorted({t[0] for t in targets})
            who = users[0] if len(users) == 1 else f"{len(users)} users"
            return f"{len(notifications)} notification(s) to {len(targets)} target(s) of {who}"
        if task_name == EVENT_WEBHOOK:
            subscription, _, payload = args
            return f"{len(payload['data']['events'])} event(s) to webhook {subscription}"
    except (IndexError, KeyError, TypeError, ValueError, AttributeError):
        pass
    return repr(args)[:200]


def subjects(task_name: str, args: list[Any]) -> tuple[list[str], list[str]]:
    """The users and the notification ids a task's arguments name, each once, in order.

    Empty lists where the arguments cannot be read (a poison message), or name no user (a group or
    broadcast send): ``notifier dlq list`` shows what a dead letter was for with it.
    """
    users: list[Any] = []
    ids: list[Any] = []
    try:
        if task_name == ROUTE:
            users = [item[0] for item in args[0]]
            ids = [item[1]["id"] for item in args[0]]
        elif task_name == ROUTE_USERS:
            users, ids = list(args[1]), [args[0]["id"]]
        elif task_name == ROUTE_AUDIENCE:
            ids = [args[0]["id"]]
        elif task_name == ADVANCE:
            users, ids = [r[0] for r in args[0]], [r[1] for r in args[0]]
        elif task_name.startswith("notifier.deliver."):
            notifications, targets = args
            users, ids = [t[0] for t in targets], list(notifications)
        elif task_name == EVENT_WEBHOOK:
            events = args[2]["data"]["events"]
            users, ids = [e["user_id"] for e in events], [e["notification_id"] for e in events]
    except (IndexError, KeyError, TypeError, ValueError, AttributeError):
        return [], []
    return list(dict.fromkeys(map(str, users))), list(dict.fromkeys(map(str, ids)))
