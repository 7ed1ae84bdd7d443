"""Routing: decide, for a batch of sends, which channel gets what, now or held back.

Per send and channel, in order: the channel is wanted (the notification's ``channels`` or the default
set) and on in the user's preferences; the type is not disabled; the user has somewhere to send it (an
address or a device, for channels that need one); interruptive channels wait for the end of quiet
hours unless the priority is ``critical`` (or the type's workflow is); and the user is under the
channel's rate limit (over it, the notification still lands in the inbox). What quiet hours or a rate
limit hold back on an interruptive channel is rolled up (``Plan.rollups``): it waits in the user's
digest of that channel and goes out as one summary when the hold ends.

Which channel needs what is read from each channel class's attributes (``needs_address``,
``needs_device``, ``interruptive``, ``is_inbox``): no channel is named here.

Everything is batched: one pipelined round trip each for idempotency claims, preferences and rate
limits, whatever the batch size. The result is a :class:`Plan` that the router task turns into
per-channel tasks; this module sends nothing itself.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from notifier.channels import registry
from notifier.channels.base import ALL_TARGETS, INBOX_ONLY, Channel
from notifier.config import Settings, get_settings
from notifier.errors import ValidationError
from notifier.models import GROUP_RECIPIENT, Notification, Preferences, check_recipient, utcnow, validate
from notifier.redis import store
from notifier.redis.keys import Keys
from notifier.state.devices import platform_of
from notifier.state.idempotency import Idempotency, check_key
from notifier.state.preferences import PreferenceStore, quiet_until
from notifier.state.ratelimit import RateLimiter
from notifier.workflows.files import get_workflows

SKIPPED = {"no_address": "no address", "no_device": "no device"}
"""Decisions that drop a wanted channel for want of somewhere to send it, with the reason logged."""


@dataclass
class Batch:
    """The arguments of one delivery task: each notification once, then ``[user, nid, target]`` rows."""

    notifications: dict[str, dict[str, Any]] = field(default_factory=dict)
    targets: list[list[str]] = field(default_factory=list)

    def add(self, user_id: str, notification: dict[str, Any], target: str = ALL_TARGETS) -> None:
        self.notifications.setdefault(notification["id"], notification)
        self.targets.append([user_id, notification["id"], target])

    def args(self) -> list[Any]:
        return [self.notifications, self.targets]


@dataclass
class Plan:
    """What a routed batch becomes."""

    now: dict[str, Batch] = field(default_factory=lambda: defaultdict(Batch))
    ids: dict[str, str] = field(default_factory=dict)
    """Notification id -> the id it resolved to (the first send's, for a duplicate)."""
    rollups: list[tuple[str, str, dict[str, Any], float]] = field(default_factory=list)
    """``(user_id, channel, notification, until)``: sends a rate limit or quiet hours hold back on an
    interruptive channel, until the hold ends; ``workers/workflow.py`` rolls them into the user's
    digest of that channel, sent as one summary then."""
    runs: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    """``(user_id, notification)`` sends that start a workflow run (their type has a workflow, or a
    ``send_at`` still ahead): ``workers/workflow.py`` takes them through their steps."""
    rejected: list[tuple[Any, str]] = field(default_factory=list)
    """Items that failed validation, with the reason (they go to the dead-letter queue)."""
    decisions: dict[str, Counter[tuple[str, str]]] = field(default_factory=lambda: defaultdict(Counter))
    """Per notification id, how many sends got each ``(channel, decision)``; channel ``*`` is all of them.

    Decisions: ``workflow`` (a workflow run starts), ``queued``, ``inbox_only``, ``deferred``,
    ``rate_limited``, ``channel_disabled``, ``type_disabled``, ``expired``, ``deduplicated``, and
    (:data:`SKIPPED`) ``no_address`` (a channel that ``needs_address`` without one in the
    preferences), ``no_device`` (one that ``needs_device`` without a device of it).
    """
    sends: list[tuple[str, str, str, str, float | None]] = field(default_factory=list)
    """Each decision for one send, ``(user_id, notification id, channel, decision, until)`` (``until``:
    when a held send's hold ends), in the order taken: the delivery log's events
    (``notifier.deliverylog.emission``)."""
    accepted: list[tuple[str, str, str, str | None]] = field(default_factory=list)
    """Each send taken in, ``(user_id, notification id, type, idempotency)``: None without an
    idempotency key, else the id of the send holding the key (its own when it is the first)."""
    types: dict[str, str] = field(default_factory=dict)
    """Notification id -> its type (events carry it)."""

    def note(self, nid: str, channel: str, decision: str, user_id: str, until: float | None = None) -> None:
        self.decisions[nid][(channel, decision)] += 1
        self.sends.append((user_id, nid, channel, decision, until))


class Router:
    def __init__(self, client: redis.Redis | None = None, keys: Keys | None = None,
                 settings: Settings | None = None) -> None:
        self.r = client or store.get_redis()
        self.keys = keys or store.get_keys()
        self.settings = settings or get_settings()
        self.prefs = PreferenceStore(self.r, self.keys)
        self.limits = RateLimiter(self.r, self.keys, self.settings.limits)
        self.idempotency = Idempotency(self.r, self.keys, self.settings.idempotency_ttl_seconds)
        self.channels: dict[str, type[Channel]] = registry.classes()
        self.device_channels = frozenset(n for n, c in self.channels.items() if c.needs_device)
        self.inbox = next((n for n, c in self.channels.items() if c.is_inbox), None)
        """The inbox channel, if one is registered (``realtime``)."""
        self.workflows = get_workflows()

    def _starts_run(self, n: Notification, now: dt.datetime) -> bool:
        return n.type in self.workflows or n.pending(now)

    def plan(self, items: Sequence[Any], now: dt.datetime | None = None, runs: bool = True,
             unheld: frozenset[str] = frozenset()) -> Plan:
        """Route ``[user_id, notification, idempotency_key]`` items (as they arrive from the queue).

        With ``runs``, sends whose type has a workflow (or whose ``send_at`` is ahead) go to
        ``plan.runs`` instead; the workflow engine routes its channel steps with ``runs=False``, and
        names in ``unheld`` the notifications no rate limit or quiet hours may hold back (a roll-up's
        summary, which is what was held back).
        """
        plan = Plan()
        now = now or utcnow()
        valid: list[tuple[str, Notification, dict[str, Any]]] = []
        claims: list[tuple[str, str]] = []
        seen: dict[int, Notification] = {}
        payloads: dict[int, dict[str, Any]] = {}
        for item in items:
            try:
                user_id, notification, key = _parse_item(item, seen)
            except ValidationError as exc:
                plan.rejected.append((item, str(exc)))
                continue
            payload = payloads.get(id(notification))
            if payload is None:
                payload = payloads[id(notification)] = notification.to_dict()
            valid.append((user_id, notification, payload))
            if key is not None:
                claims.append((key, notification.id))
        winners = dict(zip((nid for _, nid in claims), self.idempotency.claim_many(claims), strict=True))
        fresh = []
        for user_id, n, payload in valid:
            first = winners.get(n.id)
            plan.ids[n.id] = first or n.id
            plan.types[n.id] = n.type
            if runs:  # a workflow's steps were accepted when their run started
                plan.accepted.append((user_id, n.id, n.type, (first or n.id) if n.id in winners else None))
            if first is not None and first != n.id:
                plan.note(n.id, "*", "deduplicated", user_id)
            elif runs and self._starts_run(n, now):
                plan.note(n.id, "*", "workflow", user_id)
                plan.runs.append((user_id, payload))
            else:
                fresh.append((user_id, n, payload))
        self._route(plan, fresh, now, unheld, known=not runs)
        self._known([u for u, _ in plan.runs])
        return plan

    def plan_audience(self, notification: dict[str, Any], user_ids: Sequence[str],
                      now: dt.datetime | None = None) -> Plan:
        """Route one notification to many users (validated once, not per recipient)."""
        plan = Plan()
        try:
            n = validate(Notification, notification)
        except ValidationError as exc:
            plan.rejected.append(([notification, list(user_ids)], str(exc)))
            return plan
        payload = n.to_dict()
        users = []
        for user_id in user_ids:
            try:
                users.append(check_recipient(user_id))
            except ValidationError as exc:
                plan.rejected.append(([payload, [user_id]], str(exc)))
        plan.ids[n.id] = n.id
        plan.types[n.id] = n.type
        plan.accepted = [(u, n.id, n.type, None) for u in users]
        now = now or utcnow()
        if self._starts_run(n, now):
            plan.runs = [(u, payload) for u in users]
            plan.decisions[n.id][("*", "workflow")] += len(users)
            plan.sends = [(u, n.id, "*", "workflow", None) for u in users]
            self._known(users)
            return plan
        self._route(plan, [(u, n, payload) for u in users], now)
        return plan

    def _route(self, plan: Plan, sends: list[tuple[str, Notification, dict[str, Any]]],
               now: dt.datetime, unheld: frozenset[str] = frozenset(), known: bool = False) -> None:
        """Route ``sends``; ``known`` when their users are known already (a workflow's steps: the
        start of their run added them)."""
        if not sends:
            return
        prefs = self.prefs.get_many([u for u, _, _ in sends])
        wants_devices = any(not self.device_channels.isdisjoint(n.channels or self.settings.channels)
                            for _, n, _ in sends)
        platforms = self._platforms([u for u, _, _ in sends]) if wants_devices else {}
        decided: list[tuple[str, Notification, dict[str, Any], Preferences, list[str], bool]] = []
        for (user_id, n, payload), p in zip(sends, prefs, strict=True):
            critical = n.type in self.workflows and self.workflows[n.type].critical
            plan.types[n.id] = n.type
            if n.type in p.disabled_types and not critical:
                plan.note(n.id, "*", "type_disabled", user_id)
                continue
            if n.expired(now):
                plan.note(n.id, "*", "expired", user_id)
                continue
            wanted = n.channels or self.settings.channels
            channels = [c for c in wanted if p.channel_enabled(c, n.type)]
            for channel in sorted(set(wanted) - set(channels)):
                plan.note(n.id, channel, "channel_disabled", user_id)
            for channel in list(channels):
                skipped = self._unreachable(channel, p, platforms.get(user_id, set()))
                if skipped is not None:
                    channels.remove(channel)
                    plan.note(n.id, channel, skipped, user_id)
            decided.append((user_id, n, payload, p, channels, critical))
        verdicts = self.limits.allow_many([(u, n.id, [] if n.id in unheld else chans)
                                           for u, n, _, _, chans, _ in decided])
        for (user_id, n, payload, p, channels, critical), allowed in zip(decided, verdicts, strict=True):
            bypass = n.priority == "critical" or critical or n.id in unheld
            quiet_end = None if bypass else quiet_until(p, now)
            limited = [c for c in channels if not allowed.get(c, True)]
            for channel in channels:
                if channel in limited:
                    until = None
                    if channel == self.inbox:
                        plan.now[channel].add(user_id, payload, INBOX_ONLY)
                    elif self.channels[channel].interruptive:
                        until = now.timestamp() + self.settings.limits[channel][1]
                        plan.rollups.append((user_id, channel, payload, until))
                    plan.note(n.id, channel, "rate_limited", user_id, until)
                    continue
                if quiet_end is not None and self.channels[channel].interruptive:
                    plan.note(n.id, channel, "deferred", user_id, quiet_end.timestamp())
                    plan.rollups.append((user_id, channel, payload, quiet_end.timestamp()))
                    continue
                plan.note(n.id, channel, "queued", user_id)
                plan.now[channel].add(user_id, payload)
            inbox = self.inbox
            if limited and inbox is not None and inbox not in channels and p.channel_enabled(inbox, n.type):
                plan.note(n.id, inbox, "inbox_only", user_id)
                plan.now[inbox].add(user_id, payload, INBOX_ONLY)
        if not known:
            self._known([u for u, _, _ in sends])

    def _known(self, user_ids: Sequence[str]) -> None:
        """Add to the known users (``broadcast`` with no list), those of workflow runs too; a group's
        own recipient id is not a user (a broadcast to everyone must not reach the group's targets)."""
        users = {u for u in user_ids if not u.startswith(GROUP_RECIPIENT)}
        if users:
            self.r.sadd(self.keys.users(), *users)

    def _unreachable(self, channel: str, prefs: Preferences, platforms: set[str]) -> str | None:
        """Why ``channel`` has nowhere to send to this user (a :data:`SKIPPED` decision), or None."""
        cls = self.channels[channel]
        if cls.needs_address is not None and not getattr(prefs, cls.needs_address, None):
            return "no_address"
        if cls.needs_device and channel not in platforms:
            return "no_device"
        return None

    def _platforms(self, user_ids: Sequence[str]) -> dict[str, set[str]]:
        """The push platforms each user has a device on (device ids start with the platform)."""
        pipe = self.r.pipeline(transaction=False)
        for user_id in user_ids:
            pipe.hkeys(self.keys.devices(user_id))
        return {u: {platform_of(d) for d in ids} for u, ids in zip(user_ids, pipe.execute(), strict=True) if ids}


def _parse_item(item: Any, seen: dict[int, Notification]) -> tuple[str, Notification, str | None]:
    """An item's parts, checked; a notification object shared by many items (the workflow engine
    routes a broadcast's step as one dict for all its users) is validated once (``seen``)."""
    if not isinstance(item, (list, tuple)) or len(item) != 3:
        raise ValidationError("a routed item is [user_id, notification, idempotency_key]")
    user_id, notification, key = item
    if not isinstance(notification, dict):
        raise ValidationError("notification must be a JSON object")
    n = seen.get(id(notification))
    if n is None:
        n = seen[id(notification)] = validate(Notification, notification)
    return check_recipient(user_id), n, check_key(key)

