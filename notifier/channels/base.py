"""The one small interface every channel adapter implements.

A channel turns deliveries (user, notification, target) into sends. It does three things:

- ``expand``: find the concrete targets of each user (devices, an email address, the inbox);
- ``build_payload``: a pure mapping from a notification to what the provider receives (tested
  without I/O);
- ``send``: deliver a batch and report one :class:`Outcome` per target; a failure is a
  ``RetryableError``, ``PermanentError`` or ``InvalidTarget`` (see ``notifier/errors.py``), never a
  bare boolean.

Retries, receipts and dead letters are not the channel's business: ``workers/deliver.py`` applies
one policy to every channel. Adding a channel is one new module here that subclasses
:class:`Channel`, plus its name in ``notifier.config.CHANNELS``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Sequence

from notifier.errors import DeliveryError
from notifier.models import Notification

ALL_TARGETS = "*"
"""A delivery's target before expansion: every target the user has on that channel."""


@dataclass(frozen=True)
class Delivery:
    """One notification for one user on one target of a channel."""

    user_id: str
    notification: Notification
    target: str = ALL_TARGETS

    @property
    def key(self) -> tuple[str, str, str]:
        return self.user_id, self.notification.id, self.target


@dataclass(frozen=True)
class Outcome:
    """What happened to one delivery: ``error`` is None when it was delivered."""

    delivery: Delivery
    error: DeliveryError | None = None
    detail: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


OnOutcome = Callable[[Outcome], None]
"""Told each outcome the moment the provider has answered for it, before the next send."""


def reported(outcome: Outcome, on_outcome: OnOutcome | None) -> Outcome:
    """``outcome``, once ``on_outcome`` (if any) has been told about it."""
    if on_outcome is not None:
        on_outcome(outcome)
    return outcome


class Channel(ABC):
    """Base of every channel adapter; subclasses declare their name and limits as class attributes."""

    name: ClassVar[str]
    interruptive: ClassVar[bool] = True
    """Interruptive channels (push, email) wait for the end of quiet hours; realtime does not."""
    uses_receipts: ClassVar[bool] = True
    """Whether the delivery policy guards each target with a receipt (realtime de-duplicates itself)."""
    max_payload_bytes: ClassVar[int | None] = None

    def expand(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        """Replace ``ALL_TARGETS`` with the user's concrete targets; users with none drop out."""
        return list(deliveries)

    @abstractmethod
    def build_payload(self, delivery: Delivery) -> Any:
        """What the provider receives for this delivery (pure, no I/O)."""

    @abstractmethod
    def send(self, deliveries: Sequence[Delivery], on_outcome: OnOutcome | None = None) -> list[Outcome]:
        """Deliver a batch; one outcome per delivery, in any order.

        Each outcome also goes to ``on_outcome`` as soon as it is known (see :func:`reported`): the
        delivery policy records a receipt right then, so a worker killed later in the batch sends
        none of the already accepted deliveries again.
        """

    def prune(self, delivery: Delivery) -> None:
        """Forget a target the provider says no longer exists (``InvalidTarget``)."""

    def close(self) -> None:
        """Release connections (worker shutdown)."""
