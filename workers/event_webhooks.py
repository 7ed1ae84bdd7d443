"""The event webhook task: post one batch of delivery events to one subscription's endpoint.

On its own queue (``event_webhooks``) and with a short timeout, so an endpoint that is slow or down
never holds up a delivery. A retryable failure (a timeout, a dropped connection, 408, 429, 5xx) is
sent again after the pipeline's backoff (``notifier.pipeline.retry.backoff``, ``Retry-After``
honoured) up to ``NOTIFIER_MAX_RETRIES`` times, then dead-lettered like a delivery (``notifier dlq
replay`` sends it again); a permanent one (another 4xx, a redirect, a refused address) is
dead-lettered at once. Every failure keeps the time the endpoint's failures began; an endpoint
failing for ``NOTIFIER_EVENT_WEBHOOK_DISABLE_DAYS`` without a success is disabled, with a warning in
the log, and a success forgets the failures.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from notifier.channels.webhook import origin
from notifier.config import get_settings
from notifier.deliverylog import webhooks
from notifier.deliverylog.subscriptions import Subscriptions
from notifier.errors import DeliveryError, RetryableError
from notifier.pipeline.queues import EVENT_WEBHOOK
from notifier.pipeline.retry import backoff
from notifier.state.deadletters import iso
from workers.app import app
from workers.base import NotifierTask

log = logging.getLogger("notifier.worker")


@app.task(bind=True, base=NotifierTask, name=EVENT_WEBHOOK)
def event_webhook(self: NotifierTask, subscription_id: str, webhook_id: str, payload: dict[str, Any],
                  attempt: int = 0, first_attempt_at: float | None = None) -> str:
    """Post ``payload`` to the subscription; what became of it (``sent``, ``retry``, ``dead``, ``gone``)."""
    if not payload:
        return "empty"
    first_attempt_at = first_attempt_at or time.time()
    args = [subscription_id, webhook_id, payload]
    subscriptions = Subscriptions()
    sub = subscriptions.get(subscription_id)
    if sub is None:
        log.info("event webhook %s was removed; %s dropped", subscription_id, webhook_id)
        return "gone"
    settings = get_settings()
    if sub.state != "active":
        self.dead_letter(args, {"first_attempt_at": first_attempt_at},
                         f"event webhook {sub.id} is disabled ({sub.disabled_reason}): `notifier webhooks enable "
                         f"{sub.id}`, then replay", "WebhookDisabled", attempts=attempt)
        return "dead"
    try:
        webhooks.post(sub, webhook_id, payload)
    except DeliveryError as exc:
        disabled, since = subscriptions.failed(
            sub.id, settings.event_webhook_disable_days * 86400,
            f"failing for {settings.event_webhook_disable_days} day(s), last: {exc}")
        if disabled:
            log.warning("disabled event webhook %s (%s): it has failed since %s, last: %s; "
                        "`notifier webhooks enable %s` turns it on again", sub.id, origin(sub.url),
                        iso(since or first_attempt_at), exc, sub.id)
        if isinstance(exc, RetryableError) and attempt < settings.max_retries and not disabled:
            delay = backoff(attempt, settings, exc.retry_after)
            log.info("event webhook %s: retry in %.1fs (attempt %d): %s", sub.id, delay, attempt + 1, exc)
            self.enqueue(EVENT_WEBHOOK, args, {"attempt": attempt + 1, "first_attempt_at": first_attempt_at}, delay)
            return "retry"
        reason = ("gave up: " if isinstance(exc, RetryableError) else "") + str(exc)
        self.dead_letter(args, {"first_attempt_at": first_attempt_at}, reason, type(exc).__name__,
                         attempts=attempt + 1)
        return "dead"
    subscriptions.succeeded(sub.id)
    return "sent"
