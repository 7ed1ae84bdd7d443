"""Task names, queues and routes: the contract between producers and workers.

Producers send tasks by name (they never import worker code); workers register the same names.
Each channel has its own queue, named after it, so pools scale per queue
(``celery -A workers worker -Q fcm``).
"""

from __future__ import annotations

from notifier.config import CHANNELS

ROUTER_QUEUE = "router"
QUEUES: tuple[str, ...] = (ROUTER_QUEUE, *CHANNELS)

ROUTE = "notifier.route"
"""Route a batch of ``[user_id, notification, idempotency_key]`` items."""
ROUTE_USERS = "notifier.route_users"
"""Route one notification to a batch of user ids."""
ROUTE_AUDIENCE = "notifier.route_audience"
"""Expand a group or every known user into ``ROUTE_USERS`` batches."""
REPLAY = "notifier.replay_dead_letters"
"""Re-enqueue dead-lettered tasks (``notifier dlq replay``)."""


def deliver_task(channel: str) -> str:
    """One task name per channel, so Flower and logs show which channel a task is for."""
    return f"notifier.deliver.{channel}"


ROUTES: dict[str, dict[str, str]] = {
    ROUTE: {"queue": ROUTER_QUEUE},
    ROUTE_USERS: {"queue": ROUTER_QUEUE},
    ROUTE_AUDIENCE: {"queue": ROUTER_QUEUE},
    REPLAY: {"queue": ROUTER_QUEUE},
    **{deliver_task(c): {"queue": c} for c in CHANNELS},
}


def queue_of(task_name: str) -> str:
    return ROUTES.get(task_name, {"queue": ROUTER_QUEUE})["queue"]
