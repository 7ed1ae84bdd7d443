"""Inbox tasks: waking snoozed notifications when their time comes."""

from __future__ import annotations

import logging

from notifier.pipeline.queues import WAKE_SNOOZED
from notifier.state.inbox import Inbox
from workers.app import app
from workers.base import NotifierTask

log = logging.getLogger("notifier.worker")


@app.task(bind=True, base=NotifierTask, name=WAKE_SNOOZED)
def wake_snoozed(self: NotifierTask, user_id: str) -> int:
    """Bring back ``user_id``'s snoozed notifications that are due, unread, with a live event.

    Released by the scheduler loop from the Redis schedule at the snooze's end; a snooze that was
    renewed or undone meanwhile is simply not due, and running twice wakes nothing the second time.
    """
    woken = Inbox().wake_due(user_id)
    if woken.marked:
        log.info("woke %d snoozed notification(s) of %s", woken.marked, user_id)
    return woken.marked
