"""Run one batch of deliveries on a channel and sort the outcomes.

This is the part of a delivery task that does not depend on Celery: expand users into targets, skip
targets that already got the notification (receipts), refuse payloads over the channel's
``max_payload_bytes``, send, record receipts, prune dead targets, and report which deliveries
succeeded, should be retried, or failed for good. :func:`notifier.pipeline.retry.decide` turns the report into
what to do (re-enqueue with backoff, dead-letter); ``workers/base.py`` does it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import redis

from notifier.channels import ALL_TARGETS, Channel, Delivery, Outcome, get_channel
from notifier.errors import DeliveryError, InvalidTarget, PermanentError, RetryableError, TemplateRenderError
from notifier.models import Notification, utcnow, validate
from notifier.state.preferences import PreferenceStore
from notifier.state.receipts import Claim, Item, Receipts
from notifier.templates import Recipient, Rendered, get_renderer

log = logging.getLogger("notifier.pipeline.delivery")
RECEIPT_RETRY_SECONDS = 0.2


@dataclass(frozen=True)
class Failure:
    """A target that failed for good: its delivery, or the task row that could not be read at all."""

    error: DeliveryError
    delivery: Delivery | None = None
    row: Any = None
    """The unreadable row (or whole task arguments) when there is no delivery."""
    gave_up: bool = False
    """It failed retryably until the retries were used up."""

    @property
    def reason(self) -> str:
        """What its dead letter says."""
        return ("gave up: " if self.gave_up else "") + str(self.error)

    @property
    def notification_id(self) -> str:
        return self.delivery.notification.id if self.delivery is not None else "?"

    def args(self) -> list[Any]:
        """The delivery task's arguments for this target alone: what its dead letter replays."""
        if self.delivery is None:
            return [{}, [self.row]]
        notifications, targets = rows([self.delivery])
        return [notifications, targets]


@dataclass
class Report:
    """What became of each target of one delivery task."""

    delivered: list[Delivery] = field(default_factory=list)
    provider_ids: dict[tuple[str, str, str], str] = field(default_factory=dict)
    """``(user_id, notification id, target)`` -> the provider's id for a delivered message, where it gave one."""
    already: list[Delivery] = field(default_factory=list)
    """Skipped: a receipt says the target already got it (a redelivered or replayed task)."""
    expired: list[Delivery] = field(default_factory=list)
    pruned: list[tuple[Delivery, DeliveryError]] = field(default_factory=list)
    retry: list[tuple[Delivery, RetryableError]] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)
    """Permanent failures (including payloads over the channel's ``max_payload_bytes``)."""


def run(channel_name: str, notifications: dict[str, Any], targets: Sequence[Any]) -> Report:
    """Deliver ``targets`` (``[user_id, notification_id, target]`` rows) on one channel."""
    channel = get_channel(channel_name)
    report = Report()
    deliveries = _parse(notifications, targets, report)
    now = utcnow()
    live: list[Delivery] = []
    for d in deliveries:
        (report.expired if d.notification.expired(now) else live).append(d)
    live = _check_payloads(channel, _render(channel, channel.expand(live), report), report)
    to_send = _claim(channel_name, live, report) if channel.uses_receipts else live
    receipted = _Receipted(channel_name) if channel.uses_receipts else None
    claimed = [(d.user_id, channel_name, d.notification.id, d.target) for d in to_send]
    with receipted.receipts.keep_alive(claimed) if receipted else contextlib.nullcontext():
        outcomes = channel.send(to_send, receipted) if to_send else []
    _sort(channel_name, outcomes, report, receipted.keys if receipted else set())
    for d, _ in report.pruned:
        channel.prune(d)
    return report


def _parse(notifications: Any, targets: Any, report: Report) -> list[Delivery]:
    if not isinstance(notifications, dict) or not isinstance(targets, list):
        report.failed.append(Failure(PermanentError(
            "malformed delivery task: expected ({notification_id: notification}, [[user, id, target], ...])"),
            row=[notifications, targets]))
        return []
    parsed: dict[str, Notification | PermanentError] = {}
    deliveries = []
    for row in targets:
        if not (isinstance(row, list) and len(row) == 3 and all(isinstance(x, str) for x in row)):
            report.failed.append(Failure(PermanentError("malformed target row: expected [user_id, id, target]"),
                                         row=row))
            continue
        user_id, nid, target = row
        if nid not in parsed:
            try:
                parsed[nid] = validate(Notification, notifications.get(nid))
            except Exception as exc:  # noqa: BLE001  (an unreadable notification fails its rows, not the batch)
                parsed[nid] = PermanentError(f"notification {nid}: {exc}")
        n = parsed[nid]
        if isinstance(n, PermanentError):
            report.failed.append(Failure(n, row=row))
        else:
            deliveries.append(Delivery(user_id, n, target))
    return deliveries


def _render(channel: Channel, deliveries: list[Delivery], report: Report) -> list[Delivery]:
    """Each delivery of a templated notification with its text rendered for its user (language, time
    zone, name from their preferences); one whose template fails is dead-lettered unsent.

    The rendered title and body go into the delivery's copy of the notification (so every channel
    sends them as it sends a producer's own), the rest rides along as ``Delivery.rendered``.
    """
    renderer = get_renderer()
    templated = [d for d in deliveries if renderer.template_of(d.notification) is not None]
    if not templated:
        return deliveries
    users = list(dict.fromkeys(d.user_id for d in templated))
    prefs = dict(zip(users, PreferenceStore().fields_many(users, ("locale", "timezone", "name")), strict=True))
    copies: dict[tuple[str, Rendered], Notification] = {}
    out = []
    for d in deliveries:
        if renderer.template_of(d.notification) is None:
            out.append(d)
            continue
        p = prefs[d.user_id]
        recipient = Recipient(d.user_id, p.get("locale") or renderer.default_locale, p.get("timezone", "UTC"),
                              p.get("name"))
        try:
            rendered = renderer.render(d.notification, channel.name, recipient, push=channel.is_push)
        except TemplateRenderError as exc:
            report.failed.append(Failure(exc, d))
            continue
        key = (d.notification.id, rendered)
        copy = copies.get(key)
        if copy is None:
            copy = copies[key] = d.notification.model_copy(update={"title": rendered.title, "body": rendered.body})
        out.append(replace(d, notification=copy, rendered=rendered))
    return out


def _check_payloads(channel: Channel, deliveries: list[Delivery], report: Report) -> list[Delivery]:
    """The deliveries whose payload the channel takes; the others fail for good, unsent (checked
    once per notification and rendering: the payload differs by target only in its address)."""
    refused: dict[tuple[str, Rendered | None], PermanentError | None] = {}
    live = []
    for d in deliveries:
        nid = (d.notification.id, d.rendered)
        if nid not in refused:
            try:
                channel.check_payload(d)
                refused[nid] = None
            except PermanentError as exc:
                refused[nid] = exc
        error = refused[nid]
        if error is None:
            live.append(d)
        else:
            report.failed.append(Failure(error, d))
    return live


def _claim(channel: str, deliveries: list[Delivery], report: Report) -> list[Delivery]:
    receipts = Receipts()
    claims = receipts.claim_many([(d.user_id, channel, d.notification.id, d.target) for d in deliveries])
    to_send = []
    for d, claim in zip(deliveries, claims, strict=True):
        if claim is Claim.SEND:
            to_send.append(d)
        elif claim is Claim.DONE:
            report.already.append(d)
        else:
            report.retry.append((d, RetryableError("another attempt is sending this right now",
                                                   retry_after=receipts.claim_seconds)))
    return to_send


class _Receipted:
    """A channel's ``on_outcome``: the done receipt is written the moment a provider accepts a
    delivery, not after the whole batch, so a worker killed mid-batch repeats none of those sends.

    If Redis is unreachable right then (a dropped connection, a restart), the write is retried for as
    long as the delivery's claim lasts: giving up would let another attempt send it again.
    """

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.receipts = Receipts()
        self.claim_ends = time.monotonic() + self.receipts.claim_seconds
        self.keys: set[Item] = set()
        self._lock = threading.Lock()

    def __call__(self, outcome: Outcome) -> None:
        if not outcome.ok:
            return
        d = outcome.delivery
        key = (d.user_id, self.channel, d.notification.id, d.target)
        while True:
            try:
                self.receipts.done_many([key])
                break
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                if time.monotonic() + RECEIPT_RETRY_SECONDS > self.claim_ends:
                    raise
                log.warning("cannot record the receipt of a sent %s delivery yet (%s); retrying", self.channel, exc)
                time.sleep(RECEIPT_RETRY_SECONDS)
        with self._lock:
            self.keys.add(key)


def _sort(channel: str, outcomes: list[Outcome], report: Report, receipted: set[Item]) -> None:
    """Sort outcomes into the report and settle receipts; ``receipted`` already have a done receipt
    (a provider accepted them), whatever the batch's outcome says later."""
    done, release = [], []
    for o in outcomes:
        key = (o.delivery.user_id, channel, o.delivery.notification.id, o.delivery.target)
        if o.ok or key in receipted:
            report.delivered.append(o.delivery)
            if o.provider_id:
                report.provider_ids[(o.delivery.user_id, o.delivery.notification.id, o.delivery.target)] = \
                    o.provider_id
            if key not in receipted:
                done.append(key)
            continue
        release.append(key)
        if isinstance(o.error, InvalidTarget):
            report.pruned.append((o.delivery, o.error))
        elif isinstance(o.error, RetryableError):
            report.retry.append((o.delivery, o.error))
        else:
            report.failed.append(Failure(o.error or PermanentError("unknown failure"), o.delivery))
    if get_channel(channel).uses_receipts:
        receipts = Receipts()
        receipts.done_many(done)
        receipts.release_many(release)


def rows(deliveries: Sequence[Delivery]) -> tuple[dict[str, Any], list[list[str]]]:
    """Deliveries back into task arguments (for a retry or a dead letter)."""
    notifications: dict[str, Any] = {}
    targets = []
    for d in deliveries:
        notifications.setdefault(d.notification.id, d.notification.to_dict())
        targets.append([d.user_id, d.notification.id, d.target])
    return notifications, targets


__all__ = ["ALL_TARGETS", "Failure", "Report", "rows", "run"]
