"""Carrying out a router plan (``notifier.pipeline.router.Plan``): the router's and the workflow
engine's one way to send."""

from __future__ import annotations

import logging
from collections import Counter

from notifier.channels import registry
from notifier.deliverylog import emission
from notifier.metrics import ROUTED
from notifier.pipeline.queues import ROUTE, deliver_task, queue_of
from notifier.pipeline.router import SKIPPED, Plan
from workers.base import NotifierTask
from workers.deliver import tasks as deliver_tasks

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


def dispatch(task: NotifierTask, plan: Plan, rejected_task: str) -> None:
    """Carry out a plan's sends: count and log its decisions, dead-letter what it rejected, deliver or
    queue what goes now (its workflow runs and roll-ups are ``workers.workflow.follow``'s), and
    record its decisions in the delivery log."""
    emission.record(emission.routed(plan))
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
