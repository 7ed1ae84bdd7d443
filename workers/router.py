"""Router tasks: turn sends into per-channel delivery tasks (see ``notifier/pipeline/router.py``)."""

from __future__ import annotations

import logging
from typing import Any

from notifier.channels import registry
from notifier.channels.targets import TargetChannel
from notifier.config import get_settings
from notifier.pipeline.queues import ROUTE, ROUTE_AUDIENCE, ROUTE_USERS
from notifier.pipeline.router import Router
from notifier.redis import store
from notifier.redis.keys import Keys
from notifier.state.groups import Groups, group_recipient, scan_batches
from notifier.workflows.files import get_workflows
from workers import workflow
from workers.app import app
from workers.base import NotifierTask
from workers.take import waiting_sends

log = logging.getLogger("notifier.worker")


@app.task(bind=True, base=NotifierTask, name=ROUTE)
def route(self: NotifierTask, items: list[Any]) -> dict[str, str] | None:
    """Route ``[user_id, notification, idempotency_key]`` items, with those of the sends waiting behind
    them (``workers/take.py``); returns the ids they resolved to."""
    if not isinstance(items, list):
        self.dead_letter([items], {}, "malformed task message: items must be a list", "MalformedMessage")
        return None
    with waiting_sends(self, items) as batch:
        plan = Router().plan(batch)
        workflow.follow(self, plan, ROUTE)
    return plan.ids


@app.task(bind=True, base=NotifierTask, name=ROUTE_USERS)
def route_users(self: NotifierTask, notification: dict[str, Any], user_ids: list[str]) -> int:
    """Route one notification to a batch of users."""
    if not isinstance(user_ids, list):
        self.dead_letter([notification, user_ids], {}, "malformed task message: user_ids must be a list",
                         "MalformedMessage")
        return 0
    plan = Router().plan_audience(notification, user_ids)
    workflow.follow(self, plan, ROUTE_USERS)
    return len(user_ids)


@app.task(bind=True, base=NotifierTask, name=ROUTE_AUDIENCE)
def route_audience(self: NotifierTask, notification: dict[str, Any], audience: dict[str, Any]) -> int:
    """Expand a group (``{"group": id}``) or everyone (``{"all": true}``) into ``route_users`` batches;
    a group's own targets (:func:`group_targets`) get the notification once besides its members."""
    keys: Keys = store.get_keys()
    if isinstance(audience, dict) and "group" in audience:
        group = str(audience["group"])
        batches = Groups().members(group, get_settings().batch_size)
        own = group_targets(notification, group)
        if own is not None and store.get_redis().exists(keys.devices(group_recipient(group))):
            self.enqueue(ROUTE_USERS, own)
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


def group_targets(notification: dict[str, Any], group_id: str) -> list[Any] | None:
    """The ``route_users`` arguments that deliver ``notification`` to the group's own registered
    targets (a Slack channel, a team's webhook): a send to the group's recipient id limited to the
    wanted channels that are registered-target channels and not push (never the inbox or email), so
    receipts, retries, quiet hours and rate limits apply as to a user (the caller skips it when the
    group has no targets at all). None when no such channel is wanted, or the type has a workflow
    (its steps are per member)."""
    if not isinstance(notification, dict) or notification.get("type") in get_workflows():
        return None
    wanted = notification.get("channels") or get_settings().channels
    if not isinstance(wanted, list | tuple):
        return None
    classes = registry.classes()
    channels = [c for c in wanted if isinstance(c, str) and c in classes
                and issubclass(classes[c], TargetChannel) and not classes[c].is_push]
    if not channels:
        return None
    return [{**notification, "channels": channels}, [group_recipient(group_id)]]
