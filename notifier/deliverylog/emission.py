"""What the pipeline decided and did, as delivery events, and the one stream entry per task they go in.

The deciding code stays pure (``Router.plan``, ``Engine.plan``, ``retry.decide``): the functions here
read their results (a router :class:`~notifier.pipeline.router.Plan`, a delivery
:class:`~notifier.pipeline.delivery.Report` and its :class:`~notifier.pipeline.retry.Decision`, a
workflow's moves) and turn them into :class:`~notifier.deliverylog.events.Event` lists, where the task
carries the decision out. :func:`record` hands them to the task's batch (:func:`task_batch`,
entered by every notifier task), written as one stream entry when the task ends: a router task that
also delivers the inbox itself, or a broadcast batch of 500, costs one command, never one per
recipient. Outside a task (the producer's cancel, a CLI), :func:`record` writes at once.

The stream's order is the order tasks ended, not always the order things happened (a delivery task
may end before the router task that queued it): events are ordered by their time, taken before the
work they lead to is handed on.

With ``NOTIFIER_DELIVERY_LOG`` off, :func:`enabled` is false and no event is even built.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import redis

from notifier.config import get_settings
from notifier.deliverylog.events import Event, EventLog

if TYPE_CHECKING:
    from notifier.pipeline.delivery import Report
    from notifier.pipeline.retry import Decision
    from notifier.pipeline.router import Plan
    from notifier.workflows.runs import Move

log = logging.getLogger("notifier.deliverylog")

ROUTED: dict[str, tuple[str, dict[str, Any]]] = {
    "queued": ("queued", {}),
    "inbox_only": ("queued", {"inbox_only": True}),
    "deferred": ("held", {"reason": "quiet_hours"}),
    "channel_disabled": ("skipped", {"reason": "channel_disabled"}),
    "type_disabled": ("skipped", {"reason": "type_disabled"}),
    "expired": ("skipped", {"reason": "expired"}),
    "deduplicated": ("skipped", {"reason": "deduplicated"}),
    "no_address": ("skipped", {"reason": "no_address"}),
    "no_device": ("skipped", {"reason": "no_device"}),
}
"""A router decision (``Plan.sends``) -> the event kind and detail it is logged as. ``workflow`` is
not here (the run's own ``workflow`` events tell it), nor ``rate_limited`` (:func:`_rate_limited`)."""

_pending: contextvars.ContextVar[list[Event] | None] = contextvars.ContextVar("delivery_events", default=None)


def enabled() -> bool:
    """Whether events are recorded (``NOTIFIER_DELIVERY_LOG``)."""
    return get_settings().delivery_log


@contextlib.contextmanager
def task_batch() -> Iterator[None]:
    """Collect the events recorded inside and write them as one stream entry at the end; nested
    (a router task running a delivery inline), the outer batch takes them. A buffer that cannot be
    written (Redis unreachable right then) costs the events, never the task."""
    if _pending.get() is not None or not enabled():
        yield
        return
    pending: list[Event] = []
    token = _pending.set(pending)
    try:
        yield
    finally:
        _pending.reset(token)
        _write(pending)


def record(events: Sequence[Event]) -> None:
    """Add ``events`` to the task's batch, or write them as one entry when no batch is open."""
    if not events:
        return
    pending = _pending.get()
    if pending is not None:
        pending.extend(events)
    elif enabled():
        _write(events)


def _write(events: Sequence[Event]) -> None:
    """One stream entry; Redis unreachable right then costs the events (logged), never what they tell of."""
    if events:
        try:
            EventLog().record_many(events)
        except redis.RedisError as exc:
            log.warning("cannot record %d delivery event(s): %s", len(events), exc)


def routed(plan: Plan) -> list[Event]:
    """The events of a router plan: ``accepted`` per send taken in, then each channel's decision."""
    if not enabled():
        return []
    now = time.time()
    types = plan.types
    events = []
    for user_id, nid, type_, first in plan.accepted:
        idempotency = "none" if first is None else "new" if first == nid else "duplicate"
        detail: dict[str, Any] = {"idempotency": idempotency, "of": first} if idempotency == "duplicate" else \
            {"idempotency": idempotency}
        events.append(Event("accepted", nid, user_id, None, None, detail, now, type_))
    for user_id, nid, channel, decision, until in plan.sends:
        if decision == "rate_limited":
            kind, detail = _rate_limited(until)
        elif decision in ROUTED:
            kind, detail = ROUTED[decision]
            if until is not None:
                detail = {**detail, "until": until}
        else:
            continue
        events.append(Event(kind, nid, user_id, None if channel == "*" else channel, None, detail, now,
                            types.get(nid)))
    return events


def _rate_limited(until: float | None) -> tuple[str, dict[str, Any]]:
    """Over a channel's rate limit: held until the window ends (an interruptive channel's roll-up), or
    kept in the inbox without a live announcement (the inbox's own limit)."""
    if until is not None:
        return "held", {"reason": "rate_limited", "until": until}
    return "queued", {"inbox_only": True, "reason": "rate_limited"}


def delivered(channel: str, report: Report, decision: Decision, attempt: int,
              dead_letters: Sequence[str], now: float) -> list[Event]:
    """The events of one delivery task, at ``now`` (when the sends ended): ``sent`` per target with
    the provider's id, ``skipped`` for a delivery found expired, ``pruned``, ``retried`` (attempt,
    delay, error) and ``failed`` (the dead letter's id, in ``decision.dead``'s order)."""
    if not enabled():
        return []
    events = []
    ids = report.provider_ids
    for d in report.delivered:
        n = d.notification
        provider_id = ids.get((d.user_id, n.id, d.target))
        events.append(Event("sent", n.id, d.user_id, channel, d.target,
                            {"provider_id": provider_id} if provider_id else {}, now, n.type))
    for d in report.expired:
        events.append(Event("skipped", d.notification.id, d.user_id, channel, d.target, {"reason": "expired"},
                            now, d.notification.type))
    for d, error in decision.pruned:
        events.append(Event("pruned", d.notification.id, d.user_id, channel, d.target, {"error": str(error)},
                            now, d.notification.type))
    if decision.retry:
        for d, error in report.retry:
            events.append(Event("retried", d.notification.id, d.user_id, channel, d.target,
                                {"attempt": attempt + 1, "delay": round(decision.delay, 3), "error": str(error)},
                                now, d.notification.type))
    for failure, letter in zip(decision.dead, dead_letters, strict=True):
        f = failure.delivery
        if f is not None:
            events.append(Event("failed", f.notification.id, f.user_id, channel, f.target,
                                {"error": failure.reason, "dead_letter": letter}, now, f.notification.type))
    return events


def workflow_moves(moves: Iterable[Move], types: dict[str, str | None]) -> list[Event]:
    """A ``workflow`` event per step the runs took (``types``: run id -> notification type)."""
    if not enabled():
        return []
    events = []
    for m in moves:
        last = max(m.log, default=None)
        for step, entry in sorted(m.log.items()):
            detail: dict[str, Any] = {"step": step, "outcome": entry["outcome"], "detail": entry["detail"]}
            if step == last and m.until is not None:
                detail["until"] = m.until
            events.append(Event("workflow", m.run_id, m.user_id, None, None, detail, entry["at"],
                                types.get(m.run_id)))
    return events


def cancelled(runs: Iterable[tuple[str, str]], cancel_key: str) -> list[Event]:
    """A ``workflow`` event (outcome ``cancelled``) per ``(user_id, run_id)`` a cancel stopped."""
    if not enabled():
        return []
    now = time.time()
    return [Event("workflow", rid, user_id, None, None, {"outcome": "cancelled", "detail": f"cancel_key {cancel_key}"},
                  now) for user_id, rid in runs]


def by_user(kind: str, user_id: str, notification_ids: Iterable[str], channel: str | None = None) -> list[Event]:
    """A ``kind`` event (``read``, ``deleted``) per notification the user acted on."""
    if not enabled():
        return []
    now = time.time()
    return [Event(kind, nid, user_id, channel, None, {}, now) for nid in notification_ids]


def replayed(entries: Iterable[dict[str, Any]]) -> list[Event]:
    """A ``replayed`` event per send a replayed dead letter names: per target of a delivery, per
    item of a routing."""
    if not enabled():
        return []
    now = time.time()
    events = []
    for entry in entries:
        task, args, letter = str(entry.get("task")), list(entry.get("args") or []), str(entry["id"])
        for user_id, nid, channel, target in _sends_of(task, args):
            events.append(Event("replayed", nid, user_id, channel, target, {"dead_letter": letter}, now))
    return events


def _sends_of(task: str, args: list[Any]) -> list[tuple[str, str, str | None, str | None]]:
    """``(user, notification id, channel, target)`` per send a task's arguments name; none for
    arguments that cannot be read (a poison message)."""
    from notifier.pipeline.queues import ROUTE, ROUTE_USERS

    try:
        if task.startswith("notifier.deliver."):
            channel = task.rsplit(".", 1)[1]
            return [(str(u), str(nid), channel, None if t == "*" else str(t)) for u, nid, t in args[1]]
        if task == ROUTE:
            return [(str(item[0]), str(item[1]["id"]), None, None) for item in args[0]]
        if task == ROUTE_USERS:
            return [(str(u), str(args[0]["id"]), None, None) for u in args[1]]
    except (IndexError, KeyError, TypeError, ValueError):
        pass
    return []
