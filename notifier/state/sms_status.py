"""What became of each SMS after its provider took it: a small Redis hash per provider message id.

The sms channel writes one when the provider accepts a message (``state=accepted``, with the user,
notification and number, so a later callback can be traced back to them); the gateway's status
callback (``notifier/gateway/sms_status.py``) adds the provider's report as it comes in (``queued``,
``sent``, then a final ``delivered``, ``undelivered`` or ``failed`` with its error code). Each hash
lives :data:`STATUS_TTL_SECONDS` after its last change. :meth:`SmsStatuses.get` is what a delivery
log reads.
"""

from __future__ import annotations

import re
import time

import redis
from redis.typing import EncodableT, FieldT

from notifier.redis import store
from notifier.redis.keys import Keys

STATUS_TTL_SECONDS = 7 * 86400
"""How long an SMS's state is kept after its last report (a week, like delivery receipts)."""
FINAL = frozenset({"delivered", "undelivered", "failed", "canceled", "read"})
"""Twilio's states after which no more reports follow."""
MESSAGE_ID = re.compile(r"[A-Za-z0-9-]{1,64}")
"""A provider's message id as it may enter a key name (Twilio ``SM...``, Vonage hex)."""


class SmsStatuses:
    """Read and write SMS delivery states."""

    def __init__(self, client: redis.Redis | None = None, keys: Keys | None = None) -> None:
        self.r = client or store.get_redis()
        self.keys = keys or store.get_keys()

    def accepted(self, provider: str, message_id: str, user_id: str, notification_id: str, to: str) -> None:
        """The provider took the message (its answer to the send)."""
        self._write(provider, message_id, {"state": "accepted", "user_id": user_id,
                                           "notification_id": notification_id, "to": to})

    def report(self, provider: str, message_id: str, state: str, error_code: str = "", to: str = "") -> None:
        """A delivery report from the provider (a status callback)."""
        fields = {"state": state, "error_code": error_code}
        if to:
            fields["to"] = to
        self._write(provider, message_id, fields)

    def get(self, provider: str, message_id: str) -> dict[str, str] | None:
        """The SMS's known state (``state``, ``error_code``, ``user_id``, ``notification_id``, ``to``,
        ``updated_at``), or None when nothing was recorded or it expired."""
        if not MESSAGE_ID.fullmatch(message_id):
            return None
        found: dict[str, str] = self.r.hgetall(self.keys.sms_status(provider, message_id))  # type: ignore[assignment]
        return found or None  # the store's client decodes replies to str

    def _write(self, provider: str, message_id: str, fields: dict[str, str]) -> None:
        if not MESSAGE_ID.fullmatch(message_id):
            raise ValueError(f"{message_id!r} is not a provider message id")
        key = self.keys.sms_status(provider, message_id)
        pipe = self.r.pipeline(transaction=True)
        mapping: dict[FieldT, EncodableT] = {"updated_at": f"{time.time():.3f}"}
        mapping.update(fields)
        pipe.hset(key, mapping=mapping)
        pipe.expire(key, STATUS_TTL_SECONDS)
        pipe.execute()

