"""The one small interface every channel adapter implements.

A channel turns deliveries (user, notification, target) into sends. It does three things:

- ``expand``: find the concrete targets of each user (devices, an email address, the inbox);
- ``build_payload``: a pure mapping from a notification to what the provider receives (tested
  without I/O);
- ``send``: deliver a batch and report one :class:`Outcome` per target; a failure is a
  ``RetryableError``, ``PermanentError`` or ``InvalidTarget`` (see ``notifier/errors.py``), never a
  bare boolean.

Retries, receipts and dead letters are not the channel's business: ``workers/deliver.py`` applies
one policy to every channel. Adding a channel is one module with a subclass of :class:`Channel`,
listed in ``notifier/channels/registry.py`` (built-in) or added through the ``notifier.channels``
entry point group (an installed package). What the router and the policy need to know about it are
its class attributes; nothing else names a channel.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson

from notifier.errors import DeliveryError, PermanentError
from notifier.models import Notification
from notifier.templates.rendering import Rendered

ALL_TARGETS = "*"
"""A delivery's target before expansion: every target the user has on that channel."""
INBOX_ONLY = "inbox"
"""Target on the inbox channel (:attr:`Channel.is_inbox`): store only, announce to no open connection
(the user is over the inbox's rate limit, or over another channel's and gets the inbox instead)."""


@dataclass(frozen=True)
class Delivery:
    """One notification for one user on one target of a channel."""

    user_id: str
    notification: Notification
    target: str = ALL_TARGETS
    rendered: Rendered | None = None
    """The notification's template rendered for this user and channel (its title and body are already
    in ``notification``); None when it was sent with its own title and body."""


@dataclass(frozen=True)
class Outcome:
    """What happened to one delivery: ``error`` is None when it was delivered."""

    delivery: Delivery
    error: DeliveryError | None = None
    detail: dict[str, Any] | None = None
    provider_id: str | None = None
    """The provider's id for the accepted message (FCM's ``name``, APNs's ``apns-id``, the SMTP
    server's queue id...), where it gives one: the delivery log's ``sent`` event carries it."""

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
    """The name in the registry, the queue and the task (``notifier.deliver.<name>``)."""
    interruptive: ClassVar[bool] = True
    """Interruptive channels (push, email) wait for the end of quiet hours; the inbox does not."""
    uses_receipts: ClassVar[bool] = True
    """Whether the delivery policy guards each target with a receipt (the inbox de-duplicates itself)."""
    max_payload_bytes: ClassVar[int | None] = None
    """The provider's limit, as :meth:`payload_size` counts; a bigger payload is dead-lettered unsent."""
    needs_address: ClassVar[str | None] = None
    """The :class:`~notifier.models.Preferences` field holding the user's address on this channel
    (``"email"``); a user without one is skipped (``no_address``)."""
    needs_device: ClassVar[bool] = False
    """Targets are the user's registered devices (targets) of the platform named like the channel
    (:class:`~notifier.channels.targets.TargetChannel`); a user with none is skipped (``no_device``)."""
    is_push: ClassVar[bool] = False
    """A mobile or browser push channel: a workflow's ``push`` step means every one of them, and
    templates render their short push form."""
    is_inbox: ClassVar[bool] = False
    """The durable inbox: a send over another channel's rate limit still lands here (``inbox_only``)."""
    inline: ClassVar[bool] = False
    """Cheap enough (a few Redis calls) for the router task to deliver itself when its worker also
    consumes this channel's queue, saving a broker hop (``workers/router.py``)."""

    def expand(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        """Replace ``ALL_TARGETS`` with the user's concrete targets; users with none drop out. A channel
        that :attr:`needs_address` sends to that field of the user's preferences (one read for the
        batch); others keep their deliveries as they are."""
        if self.needs_address is None:
            return list(deliveries)
        from notifier.state.preferences import PreferenceStore

        open_ = [d for d in deliveries if d.target == ALL_TARGETS]
        prefs = PreferenceStore().get_many([d.user_id for d in open_])
        address = {d.user_id: getattr(p, self.needs_address) for d, p in zip(open_, prefs, strict=True)}
        expanded = []
        for d in deliveries:
            target = address.get(d.user_id) if d.target == ALL_TARGETS else d.target
            if target:
                expanded.append(Delivery(d.user_id, d.notification, target, d.rendered))
        return expanded

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

    def payload_size(self, payload: Any) -> int:
        """Bytes of ``payload`` as the provider counts them against :attr:`max_payload_bytes`
        (bytes and text as they are, anything else as JSON)."""
        if isinstance(payload, bytes):
            return len(payload)
        if isinstance(payload, str):
            return len(payload.encode())
        return len(orjson.dumps(payload))

    def check_payload(self, delivery: Delivery) -> None:
        """Refuse (``PermanentError``) a delivery whose payload is over :attr:`max_payload_bytes`.

        The delivery policy calls it once per notification before sending, for every channel.
        """
        if self.max_payload_bytes is None:
            return
        size = self.payload_size(self.build_payload(delivery))
        if size > self.max_payload_bytes:
            raise PermanentError(f"{self.name} payload is {size} bytes; the limit is {self.max_payload_bytes}: "
                                 "send less data or a shorter body")

    def prune(self, delivery: Delivery) -> None:  # noqa: B027  # a hook: most channels have nothing to forget
        """Forget a target the provider says no longer exists (``InvalidTarget``)."""

    def close(self) -> None:  # noqa: B027  # a hook: most channels hold no connection
        """Release connections (worker shutdown)."""
