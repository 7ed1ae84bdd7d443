"""What every channel with registered targets shares: push devices, chat targets, webhook endpoints.

A user (or a group, through its recipient id, :func:`notifier.state.groups.group_recipient`)
registers targets in the device registry (``notifier/state/devices.py``): a phone's token, a
browser's push subscription, a Slack member id, an incoming-webhook URL. A delivery starts with
target ``ALL_TARGETS``; :meth:`TargetChannel.expand` turns it into one delivery per registered
target of the channel (target = the registry's id for it), so receipts, retries and pruning work
per target. :meth:`TargetChannel.send` looks the targets up again (a retried delivery arrives with
its id only), hands the live ones to the adapter and reports a vanished one as ``InvalidTarget``;
an adapter's ``InvalidTarget`` prunes it (:meth:`prune`).

What a target registers with is the channel class's to say (``takes_subscription``, ``takes_url``,
``takes_secret``, ``check_token``, ``check_url``, ``check_secret``), so the registry names no channel.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

from notifier.channels.base import ALL_TARGETS, Channel, Delivery, OnOutcome, Outcome, reported
from notifier.errors import DeliveryError, InvalidTarget

if TYPE_CHECKING:
    from notifier.state.devices import Device, Devices


class TargetChannel(Channel):
    """Base of the channels whose targets users register (``POST /v1/devices``)."""

    needs_device = True
    takes_subscription: ClassVar[bool] = False
    """Targets register a browser's push subscription (endpoint and keys) instead of a token."""
    takes_url: ClassVar[bool] = False
    """Targets register a URL (an incoming webhook, an endpoint) instead of a token."""
    takes_secret: ClassVar[bool] = False
    """Targets have a signing secret (:meth:`new_secret` when the registration gives none); it is
    stored with the target, answered to the registration and never listed."""

    @classmethod
    def check_token(cls, token: str) -> None:
        """Refuse (``ValueError``, saying what a token looks like) one the provider would not take."""

    @classmethod
    def token_address(cls, token: str) -> str:
        """The token as the provider knows it (the target's id hashes it, so spellings agree)."""
        return token

    @classmethod
    def check_url(cls, url: str) -> None:
        """Refuse (``ValueError``) a URL this channel cannot post to; by default, anything but
        http(s) with a host."""
        parts = urlsplit(url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError(f"a {cls.name} target is an http(s) URL with a host, not {url[:80]!r}")

    @classmethod
    def check_secret(cls, secret: str) -> None:
        """Refuse (``ValueError``, saying what a secret looks like, never quoting it) one this channel
        cannot sign with."""

    @classmethod
    def new_secret(cls) -> str:
        """A fresh secret for a target registered without one (channels that ``takes_secret``)."""
        raise NotImplementedError(f"{cls.name} takes no secret")

    def __init__(self, devices: Devices | None = None) -> None:
        self._devices = devices

    @property
    def devices(self) -> Devices:
        if self._devices is None:
            from notifier.state.devices import Devices

            self._devices = Devices()
        return self._devices

    def expand(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        """One delivery per target; all users' targets load in one pipelined round trip."""
        open_ = [d.user_id for d in deliveries if d.target == ALL_TARGETS]
        found = self.devices.for_users(open_, self.name)
        expanded = []
        for d in deliveries:
            if d.target != ALL_TARGETS:
                expanded.append(d)
                continue
            expanded.extend(Delivery(d.user_id, d.notification, device.id, d.rendered)
                            for device in found.get(d.user_id, ()))
        return expanded

    def send(self, deliveries: Sequence[Delivery], on_outcome: OnOutcome | None = None) -> list[Outcome]:
        if not deliveries:
            return []
        found = self.devices.for_users([d.user_id for d in deliveries], self.name)
        by_id = {(user, device.id): device for user, devices in found.items() for device in devices}
        live: list[tuple[Delivery, Device]] = []
        outcomes = []
        for d in deliveries:
            device = by_id.get((d.user_id, d.target))
            if device is None:
                outcomes.append(Outcome(d, InvalidTarget(f"{self.name} target {d.target} is no longer registered")))
            else:
                live.append((d, device))
        if live:
            outcomes.extend(self.send_to_devices(live, on_outcome))
        return outcomes

    @abstractmethod
    def send_to_devices(self, items: Sequence[tuple[Delivery, Device]],
                        on_outcome: OnOutcome | None = None) -> list[Outcome]:
        """Send to registered targets; one outcome each, also told to ``on_outcome`` as it is known."""

    def prune(self, delivery: Delivery) -> None:
        self.devices.remove(delivery.user_id, delivery.target)


def send_each(items: Sequence[tuple[Delivery, Device]], push: Callable[[Delivery, Device], dict[str, Any]],
              on_outcome: OnOutcome | None = None, id_field: str | None = None) -> list[Outcome]:
    """For providers that take one message per request (FCM, web push, a webhook): ``push`` each
    target in turn and report its outcome at once; ``push`` returns the outcome's detail or raises a
    ``DeliveryError``, which fails that target only. ``id_field`` names the detail's field holding the
    provider's message id (:attr:`Outcome.provider_id`)."""
    outcomes = []
    for d, device in items:
        try:
            detail = push(d, device)
        except DeliveryError as exc:
            outcomes.append(reported(Outcome(d, exc), on_outcome))
        else:
            provider_id = str(detail[id_field]) if id_field and detail.get(id_field) else None
            outcomes.append(reported(Outcome(d, detail=detail, provider_id=provider_id), on_outcome))
    return outcomes
