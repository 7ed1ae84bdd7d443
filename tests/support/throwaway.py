"""A throwaway channel, added the way a user adds one: this module, plus an entry point
(``throwaway = tests.support.throwaway:Throwaway`` in the ``notifier.channels`` group) that
``tests/pipeline/test_registry.py`` installs. Nothing else in notifier names it.

It "sends" by appending the notification to a Redis list the test reads; a notification whose data
says ``{"fail": "once"}`` fails retryably on its first attempt, ``{"fail": "always"}`` permanently.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from notifier.channels import Channel, Delivery, Outcome
from notifier.channels.base import OnOutcome, reported
from notifier.errors import PermanentError, RetryableError
from notifier.redis import store

MAX_PAYLOAD = 600


def sent_key() -> str:
    return f"{store.get_keys().prefix}:test-throwaway:sent"


def attempts_key(notification_id: str) -> str:
    return f"{store.get_keys().prefix}:test-throwaway:attempts:{notification_id}"


class Throwaway(Channel):
    name = "throwaway"
    interruptive = False
    max_payload_bytes = MAX_PAYLOAD

    def build_payload(self, delivery: Delivery) -> bytes:
        return orjson.dumps(delivery.notification.to_dict())

    def send(self, deliveries: Sequence[Delivery], on_outcome: OnOutcome | None = None) -> list[Outcome]:
        r = store.get_redis()
        outcomes = []
        for d in deliveries:
            attempt = int(r.incr(attempts_key(d.notification.id)))
            fail = d.notification.data.get("fail")
            if fail == "always":
                outcome = Outcome(d, PermanentError("the throwaway provider refuses this one"))
            elif fail == "once" and attempt == 1:
                outcome = Outcome(d, RetryableError("the throwaway provider is busy", retry_after=0.1))
            else:
                r.rpush(sent_key(), orjson.dumps([d.user_id, d.notification.id]))
                outcome = Outcome(d)
            outcomes.append(reported(outcome, on_outcome))
        return outcomes
