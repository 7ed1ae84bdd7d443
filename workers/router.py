"""Router tasks: turn sends into per-channel delivery tasks (see ``notifier/pipeline/router.py``)."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from notifier.channels import registry
from notifier.config import get_settings
from notifier.metrics import ROUTED
from notifier.pipeline.queues import ROUTE, ROUTE_AUDIENCE, ROUTE_USERS, deliver_task, queue_of
from notifier.pipeline.router import SKIPPED, Plan, Router
from notifier.redis import store
from notifier.redis.keys import Keys
from notifier.state.groups import Groups, scan_batches
from notifier.state.schedule import Schedule
from workers.app import app
from workers.base import NotifierTask
from workers.deliver import tasks as deliver_tasks
from workers.take import waiting_sends

log = logging.getLogger("notifier.worker")


def _inline(channel: str) -> bool:
    """Whether the router task delivers ``channel`` itself when its worker also consumes that queue.

    For channels that say they are ``inline`` (realtime): such a delivery is a few Redis calls,
    cheaper than the Celery hop to reach it (publish, fetch, ack, events), so when one pool serves
    both queues the router runs the delivery task's body itself, with the same retry and dead-letter
    policy. A separate pool still gets its own tasks, and retries and deferred batches always go
    through the channel's queue. Redelivery stays safe: inbox appends are idempotent per
    notification id and rate limits count each send once.
    """
    return registry.channel_class(channel).inline


def _consumes(task: NotifierTask, channel: str) -> bool:
    """Whether this worker (``-Q``) consumes ``channel``'s queue."""
    return queue_of(deliver_task(channel)) in task.app.amqp.queues.consume_from


def _dispatch(task: NotifierTask, plan: Plan, rejected_task: str) -> None:
    totals: Counter[tuple[str, str]] = Counter()
    verbose = log.isEnabledFor(logging.INFO)
    for nid, decisions in plan.decisions.items():
        totals.update(decisions)
        if verbose:
            log.info("routed: %s", ", ".join(f"{c} {d} x{n}" if n > 1 else f"{c} {d}"
                                              for (c, d), n in sorted(decisions.items())),
                     extra={"notification_id": nid})
            for channel, decision in sorted(k for k in decisions if k[1] in SKIPPED):
                log.info("%s skipped: %s", channel, SKIPPED[decision],
                         extra={"notification_id": nid, "channel": channel})
    for (channel, decision), count in totals.items():
        ROUTED.labels(channel, decision).inc(count)
    for args, reason in plan.rejected:
        ROUTED.labels("*", "rejected").inc()
        task.dead_letter([args] if rejected_task == ROUTE else args, {}, reason, "ValidationError",
                         task=rejected_task)
    for channel, batch in plan.now.items():
        if _inline(channel) and _consumes(task, channel):
            deliver_tasks[channel](*batch.args())
        else:
            task.enqueue(deliver_task(channel), batch.args())
    for (due, channel), batch in plan.later.items():
        Schedule().add(due, deliver_task(channel), batch.args(), {}, channel)


@app.task(bind=True, base=NotifierTask, name=ROUTE)
def route(self: NotifierTask, items: list[Any]) -> dict[str, str] | None:
    """Route ``[user_id, notification, idempotency_key]`` items, with those of the sends waiting behind
    them (``workers/take.py``); returns the ids they resolved to."""
    if not isinstance(items, list):
        self.dead_letter([items], {}, "malformed task message: items must be a list", "MalformedMessage")
        return None
    with waiting_sends(self, items) as batch:
        plan = Router().plan(batch)
        _dispatch(self, plan, ROUTE)
    return plan.ids


@app.task(bind=True, base=NotifierTask, name=ROUTE_USERS)
def route_users(self: NotifierTask, notification: dict[str, Any], user_ids: list[str]) -> int:
    """Route one notification to a batch of users."""
    if not isinstance(user_ids, list):
        self.dead_letter([notification, user_ids], {}, "malformed task message: user_ids must be a list",
                         "MalformedMessage")
        return 0
    plan = Router().plan_audience(notification, user_ids)
    _dispatch(self, plan, ROUTE_USERS)
    return len(user_ids)


@app.task(bind=True, base=NotifierTask, name=ROUTE_AUDIENCE)
def route_audience(self: NotifierTask, notification: dict[str, Any], audience: dict[str, Any]) -> int:
    """Expand a group (``{"group": id}``) or everyone (``{"all": true}``) into ``route_users`` batches."""
    keys: Keys = store.get_keys()
    if isinstance(audience, dict) and "group" in audience:
        batches = Groups().members(str(audience["group"]), get_settings().batch_size)
    elif audience == {"all": True}:
        batches = scan_batches(store.get_redis(), keys.users(), get_settings().batch_size)
    else:
        self.dead_letter([notification, audience], {}, 'audience must be {"group": ID} or {"all": true}',
                         "MalformedMessage")
        return 0
    total = 0
    for users in batches:
        self.enqueue(ROUTE_USERS, [notification, users])
        total += len(users)
    log.info("audience %s: %d users in batches", audience, total)
    return total
