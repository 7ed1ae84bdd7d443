"""Router tasks: turn sends into per-channel delivery tasks (see ``notifier/pipeline/router.py``)."""

from __future__ import annotations

import logging
from typing import Any

from notifier.config import get_settings
from notifier.pipeline.queues import ROUTE, ROUTE_AUDIENCE, ROUTE_USERS
from notifier.pipeline.router import Router
from notifier.redis import store
from notifier.redis.keys import Keys
from notifier.state.groups import Groups, scan_batches
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
