"""The durable per-user inbox: a Redis Stream with read state, announced on Pub/Sub.

Each user has a stream of entries (``nid`` = notification id, ``n`` = notification JSON), a hash from
notification id to entry id (so a redelivered task never appends twice) and a set of unread ids whose
size is the unread count. Appends, deletes and mark-read are Lua scripts, so counts stay right under
concurrency and when the cap trims old entries.

The other states (:data:`STATES`) live in keys an append never touches, so a broadcast pays nothing
for them: *seen* is a "seen up to" entry id (with the stream's entries-added counter at that point,
so the entries after it are counted, not scanned) plus a set of ids seen one by one after it, *archived* and
*interacted* are sets, *snoozed* a sorted set of wake-up times (the wake-up is a task held in
:class:`~notifier.state.schedule.Schedule`). Archiving or snoozing takes an entry out of the unread
set; waking puts it back. ``inbox_state.lua`` changes them and takes the counts against the entries
still kept, so they stay exact under concurrency and trimming too.

Entry ids (``1700000000000-0``) are the cursor for pagination and for resuming a live stream;
:func:`entry_key` orders them.

A stream's history has its own hash (:class:`Position`): the epoch, random and new whenever the
stream is created afresh, and the newest id the cap trimmed, so a resuming client can be told whether
it missed anything; the append script keeps it on the rare appends that create or trim a stream,
and :meth:`Inbox.epoch` gives a stream its epoch when a client first connects.

Each change is announced on the user's live channel as a *live event*, whose JSON shape is defined
here once: the scripts fill :data:`NEW_ENTRY_EVENT` or :data:`UNREAD_EVENT` (passed to them as
templates, so an append stays one atomic script call) or :data:`STATE_EVENT`, Python fills the same
ones (:func:`new_entry_event`, :func:`unread_event`, :func:`state_event`) and the gateway reads them
with :func:`parse_event`.
Key names come from :mod:`notifier.redis.keys`; which key holds what, and how to read it, is known
only here (the gateway's event-loop reads are :class:`LiveInbox`'s).
"""

from __future__ import annotations

import builtins
import re
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import orjson
import redis
import redis.asyncio as aredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster

from notifier.config import get_settings
from notifier.errors import ValidationError
from notifier.redis import scripts, store
from notifier.redis.keys import Keys

MAX_PAGE = 200
MAX_IDS = 1000
ITEMS_PER_CALL = 100
"""Inbox appends per script call on one server: ~1 ms of Redis time, short enough not to stall it."""
_ENTRY_ID = re.compile(r"([0-9]{1,20})(?:-([0-9]{1,20}))?")
_MAX_PART = 2 ** 64 - 1

NEW_ENTRY_EVENT = '{"event":"notification","entry_id":"%s","unread":%d,"notification":%s}'
"""The live event of an append: entry id, unread count afterwards, the notification JSON."""
UNREAD_EVENT = '{"event":"unread_count","unread":%d}'
"""The live event of a mark-read or delete that changed something: the unread count afterwards."""
STATE_EVENT = '{"event":"state","state":"%s","value":%s,"ids":%s,"all":%s,"unread":%d,"unseen":%d}'
"""The live event of a state change (:data:`STATES`): the state, its new value (true/false, or the
snooze's until), the notification ids that changed, whether all were marked, the counts afterwards."""
STATES = ("seen", "archived", "snoozed", "interacted")
"""The states besides ``read`` that an entry has."""
MAX_SNOOZE_SECONDS = 366 * 86400


def _pieces(template: str) -> list[str]:
    """The literal text around a template's fields, which a script joins with the values (``..``):
    ``string.format`` would cost Redis 25% more per event, on the path that appends to 100,000
    inboxes per broadcast."""
    return re.split(r"%[sd]", template)


_NEW_ENTRY_PIECES = _pieces(NEW_ENTRY_EVENT)
_UNREAD_PIECES = _pieces(UNREAD_EVENT)
_STATE_PIECES = _pieces(STATE_EVENT)


@dataclass(frozen=True)
class Appended:
    entry_id: str
    unread: int
    added: bool


@dataclass(frozen=True)
class Marked:
    """What marking read did, so a client learns when its ids named nothing."""

    marked: int
    """Notifications that became read (one already read is not counted, nor is it unknown)."""
    unread: int
    """The unread count afterwards."""
    unknown: list[str]
    """The ids given that name no notification in the inbox, in the order given."""
    read: list[str] = field(default_factory=list, repr=False)
    """The notification ids that became read (the delivery log's ``read`` events)."""


@dataclass(frozen=True)
class Counts:
    """Exact counts of one inbox. ``total`` is the default list's size (archived and snoozed entries
    are out of it); ``unread`` and ``unseen`` count only entries in it."""

    total: int
    unread: int
    unseen: int
    archived: int
    snoozed: int


@dataclass(frozen=True)
class Changed:
    """What a state change did (:meth:`Inbox.mark_seen`, :meth:`Inbox.archive`, ...)."""

    marked: int
    """Notifications whose state changed (one already in that state is not counted)."""
    counts: Counts
    unknown: list[str]
    """The ids given that name no notification in the inbox, in the order given."""
    changed: list[str] = field(default_factory=list, repr=False)
    """The notification ids that changed."""


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    next_cursor: str | None


@dataclass(slots=True)
class NewEntry:
    """Live event: a notification was appended as ``entry_id``. Shared by all of the user's
    connections, so read-only by convention (not ``frozen``: that makes building one 3x slower, and
    the gateway builds one per user per event)."""

    entry_id: str
    notification: dict[str, Any]
    unread: int | None
    """The unread count afterwards (None if the event did not carry one)."""

    def item(self) -> dict[str, Any]:
        """The entry as an inbox item, the shape :meth:`Inbox.list` returns (new, so unread)."""
        return {**self.notification, "entry_id": self.entry_id, "read": False, "archived": False,
                "snoozed_until": None, "seen": False, "interacted": False}


@dataclass(slots=True)
class UnreadCount:
    """Live event: notifications were marked read or deleted; ``unread`` is the count afterwards."""

    unread: int


@dataclass(slots=True)
class StateChange:
    """Live event: notifications changed one of :data:`STATES` (``value`` true/false, or the snooze's
    until in epoch seconds); ``all`` when every notification was marked. Counts afterwards."""

    state: str
    value: bool | float
    ids: list[str]
    all: bool
    unread: int
    unseen: int

    def data(self) -> dict[str, Any]:
        return {"state": self.state, "value": self.value, "ids": self.ids, "all": self.all,
                "unread": self.unread, "unseen": self.unseen}


LiveEvent = NewEntry | UnreadCount | StateChange


def new_entry_event(entry_id: str, unread: int, notification_json: str) -> str:
    """:data:`NEW_ENTRY_EVENT` filled in Python (the script fills the same template)."""
    return NEW_ENTRY_EVENT % (entry_id, unread, notification_json)


def unread_event(unread: int) -> str:
    """:data:`UNREAD_EVENT` filled in Python (the scripts fill the same template)."""
    return UNREAD_EVENT % unread


def state_event(change: StateChange) -> str:
    """:data:`STATE_EVENT` filled in Python (``inbox_state.lua`` fills the same template)."""
    value = ("true" if change.value else "false") if isinstance(change.value, bool) else repr(float(change.value))
    return STATE_EVENT % (change.state, value, orjson.dumps(change.ids).decode(), "true" if change.all else "false",
                          change.unread, change.unseen)


def parse_event(data: bytes | str) -> LiveEvent | None:
    """A message from a live channel as a :data:`LiveEvent`; None for JSON that is no event this
    version knows. Raises ``ValueError`` when ``data`` is not JSON at all."""
    message = orjson.loads(data)
    if not isinstance(message, dict):
        return None
    kind, unread = message.get("event"), message.get("unread")
    if kind == "notification":
        entry_id, notification = message.get("entry_id"), message.get("notification")
        if not isinstance(entry_id, str) or not isinstance(notification, dict):
            return None
        return NewEntry(entry_id, notification, unread if isinstance(unread, int) else None)
    if kind == "unread_count" and isinstance(unread, int):
        return UnreadCount(unread)
    if kind == "state" and message.get("state") in STATES and isinstance(unread, int):
        value, ids, unseen = message.get("value"), message.get("ids"), message.get("unseen")
        if isinstance(value, (bool, int, float)) and isinstance(ids, builtins.list) and isinstance(unseen, int):
            return StateChange(message["state"], value, [str(i) for i in ids], bool(message.get("all")), unread,
                               unseen)
    return None


def entry_key(entry_id: str) -> tuple[int, int]:
    """A checked entry id as ``(ms, seq)``, its order: stream ids sort by number, not as strings; a
    missing seq counts as 0."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def check_entry_id(entry_id: str) -> str:
    """Entry ids come from clients (cursors, Last-Event-ID): accept only ``<ms>-<seq>`` in ASCII
    digits, each part below 2**64 (Redis refuses larger ones with an error, not an empty range)."""
    match = _ENTRY_ID.fullmatch(entry_id) if isinstance(entry_id, str) else None
    if match is None or any(int(part) > _MAX_PART for part in match.groups() if part):
        raise ValidationError(f"invalid cursor {entry_id!r}: expected an inbox entry id like 1700000000000-0")
    return entry_id


EPOCH_BYTES = 8
_EPOCH = re.compile(r"[0-9a-f]{1,64}")


def new_epoch() -> str:
    """A random epoch for an inbox stream that has none (it only has to differ from the user's
    previous epochs)."""
    return secrets.token_hex(EPOCH_BYTES)


def check_epoch(epoch: str) -> str:
    """Epochs come from clients (the one their ``connected`` event named): lowercase hex only."""
    if not isinstance(epoch, str) or _EPOCH.fullmatch(epoch) is None:
        raise ValidationError(f"invalid epoch {epoch!r}: send the epoch the connected event named")
    return epoch


@dataclass(frozen=True)
class Position:
    """Where a user's inbox stands when a connection opens: what a resuming client is judged against."""

    newest: str | None
    """The newest entry id (None for an empty or missing stream)."""
    unread: int
    oldest: str | None
    """The oldest kept entry id."""
    exists: bool
    """Whether the stream exists at all (one emptied by deletes does; a lost one does not)."""
    epoch: str | None
    """The stream's epoch: new whenever the stream is created afresh (None: no stream, or one no
    client has connected to since it was created: :meth:`Inbox.epoch` gives it one)."""
    since: str | None
    """The oldest entry id when the epoch began: a client's id below it comes from an earlier stream
    (or was trimmed), unless the client names this epoch."""
    trimmed: str | None
    """The newest entry id the cap removed from this stream (None: nothing)."""

    def resume(self, last_id: str, epoch: str | None = None) -> tuple[bool, str]:
        """Whether a client that last saw ``last_id`` (of ``epoch``, if it knows one) misses nothing by
        replaying what follows it, and the id to replay after: :data:`START` when its id belongs to
        another stream (whose ids say nothing about this one's).

        ``True`` is a promise: every entry after ``last_id`` is still kept. ``False`` errs on the safe
        side: an id below the oldest entry when the epoch began counts as lost unless the client names
        the epoch (its trim may have gone unrecorded, in an inbox older than epochs)."""
        at = entry_key(last_id)
        if not self.exists:  # no stream: it never was, or it was lost (with or without its epoch)
            return at == (0, 0) and epoch is None, START
        if self.epoch is None:
            return (self.oldest is None or at >= entry_key(self.oldest)) and epoch is None, last_id
        foreign = epoch != self.epoch if epoch is not None else (
            at != (0, 0) and self.since is not None and at < entry_key(self.since))
        if foreign:
            return False, START
        return self.trimmed is None or at >= entry_key(self.trimmed), last_id


START = "0-0"
"""The id before every entry: resuming from it replays the whole inbox."""


class Inbox:
    """Inbox operations for any user, on one Redis client and key namespace."""

    def __init__(self, client: redis.Redis | None = None, keys: Keys | None = None,
                 max_len: int | None = None) -> None:
        self.r = client or store.get_redis()
        self.keys = keys or store.get_keys()
        self.max_len = max_len or get_settings().inbox_max_len
        self.slack = max(10, self.max_len // 10)

    def _append_keys(self, user_id: str) -> list[str]:
        k = self.keys
        return [k.inbox(user_id), k.inbox_ids(user_id), k.unread(user_id), k.live(user_id)]

    # Writing ----------------------------------------------------------------------------------
    def append_many(self, items: Iterable[tuple[str, str, str, bool]]) -> list[Appended]:
        """Append ``(user_id, notification_id, notification_json, publish)`` items in one round trip.

        Returns one result per item; ``added`` is False when the inbox already held that id. On one
        server a script call appends up to ``ITEMS_PER_CALL`` items (one call per item costs the client
        more than the append itself); on a cluster each user's keys live in their own slot, so one each.
        """
        lua = scripts.script("inbox_append")
        per_call = 1 if isinstance(self.r, RedisCluster) else ITEMS_PER_CALL
        calls: list[scripts.ScriptCall] = []
        keys: list[str] = []
        head: list[Any] = [self.max_len, self.slack, *_NEW_ENTRY_PIECES]
        args = list(head)
        for user_id, nid, payload, publish in items:
            keys += self._append_keys(user_id)
            keys.append(self.keys.inbox_epoch(user_id))
            args += [nid, payload, "1" if publish else "0"]
            if len(keys) == 5 * per_call:
                calls.append((lua, keys, args))
                keys, args = [], list(head)
        if keys:
            calls.append((lua, keys, args))
        flat = [value for result in scripts.run_scripts(self.r, calls) for value in result]
        return [Appended(str(flat[i]), int(flat[i + 1]), bool(flat[i + 2])) for i in range(0, len(flat), 3)]

    def append(self, user_id: str, notification: dict[str, Any], publish: bool = True) -> Appended:
        return self.append_many([(user_id, notification["id"], orjson.dumps(notification).decode(), publish)])[0]

    def mark_read(self, user_id: str, ids: Sequence[str] | None = None) -> int:
        """Mark ``ids`` read, or everything when ``ids`` is None; returns the unread count."""
        return self.mark(user_id, ids).unread

    def mark(self, user_id: str, ids: Sequence[str] | None = None) -> Marked:
        """Mark ``ids`` read, or everything when ``ids`` is None, and say which ids named nothing.

        Each id is a notification id or an inbox entry id (``1700000000000-0``: the SSE ``id:`` and
        the WebSocket frame's ``id``), whichever the client kept.
        """
        if ids is not None:
            ids = _check_ids(ids)
            if not ids:
                return Marked(0, self.unread_count(user_id), [])
        k = self.keys
        changed, unread, unknown, read = scripts.script("inbox_read")(
            [k.unread(user_id), k.live(user_id), k.inbox_ids(user_id), k.inbox(user_id)],
            [*_UNREAD_PIECES, *(ids or [])], client=self.r)
        return Marked(int(changed), int(unread), [str(i) for i in unknown], [str(i) for i in read])

    def delete(self, user_id: str, ids: Sequence[str]) -> tuple[int, int]:
        """Delete by notification id; returns ``(deleted, unread count)``."""
        ids = _check_ids(ids)
        if not ids:
            return 0, self.unread_count(user_id)
        k = self.keys
        keys = [k.inbox(user_id), k.inbox_ids(user_id), k.unread(user_id), k.live(user_id), k.seen(user_id),
                k.archived(user_id), k.snoozed(user_id), k.interacted(user_id), k.seen_upto(user_id)]
        deleted, unread = scripts.script("inbox_delete")(keys, [*_UNREAD_PIECES, *ids], client=self.r)
        return int(deleted), int(unread)

    def epoch(self, user_id: str) -> tuple[str | None, str | None, str | None]:
        """``(epoch, since, trimmed)`` of the user's inbox stream, giving it an epoch if it has none
        (all None when there is no stream). Called when a client connects to a stream without one:
        once per stream, so a broadcast to new inboxes creates no key for it."""
        k = self.keys
        epoch, since, trimmed = scripts.script("inbox_epoch")([k.inbox(user_id), k.inbox_epoch(user_id)],
                                                              [new_epoch()], client=self.r)
        return epoch or None, since or None, trimmed or None

    def _state_keys(self, user_id: str) -> list[str]:
        """``inbox_state.lua``'s keys, spelled out (not :meth:`_append_keys` plus more: the scripts
        name keys by position)."""
        k = self.keys
        return [k.inbox(user_id), k.inbox_ids(user_id), k.unread(user_id), k.live(user_id), k.seen_upto(user_id),
                k.seen(user_id), k.archived(user_id), k.snoozed(user_id), k.interacted(user_id)]

    def _change(self, op: str, user_id: str, ids: Sequence[str] | None, value: float = 0.0) -> Changed:
        """Run ``op`` of ``inbox_state.lua`` on ``ids`` (notification or entry ids), or on all when None."""
        if ids is not None:
            ids = _check_ids(ids)
            if not ids:
                return Changed(0, self.counts(user_id), [])
        marked, unread, unseen, total, archived, snoozed, unknown, changed = scripts.script("inbox_state")(
            self._state_keys(user_id), [op, self.max_len, repr(float(value)), *_STATE_PIECES, *(ids or [])],
            client=self.r)
        return Changed(int(marked), Counts(int(total), int(unread), int(unseen), int(archived), int(snoozed)),
                       [str(i) for i in unknown], [str(i) for i in changed])

    def counts(self, user_id: str) -> Counts:
        """Total, unread, unseen, archived and snoozed, exact, in one script call."""
        return self._change("counts", user_id, None).counts

    def mark_seen(self, user_id: str, ids: Sequence[str] | None = None) -> Changed:
        """Mark ``ids`` seen (the feed showed them), or everything when None."""
        return self._change("seen", user_id, ids)

    def archive(self, user_id: str, ids: Sequence[str] | None = None) -> Changed:
        """Move ``ids`` (or everything) out of the default list, kept and listable; archived is read."""
        return self._change("archive", user_id, ids)

    def unarchive(self, user_id: str, ids: Sequence[str] | None = None) -> Changed:
        return self._change("unarchive", user_id, ids)

    def snooze(self, user_id: str, ids: Sequence[str], until: float) -> Changed:
        """Hide ``ids`` until ``until`` (epoch seconds); then they come back unread, announced live.

        The wake-up is a task held in the Redis schedule, which the workers' scheduler loop releases
        when due (never a Celery ETA: a long one is redelivered and runs twice).
        """
        from notifier.pipeline.queues import ROUTER_QUEUE, WAKE_SNOOZED
        from notifier.state.schedule import Schedule

        now = time.time()
        if not now < until <= now + MAX_SNOOZE_SECONDS:
            raise ValidationError(f"until must be in the future, at most {MAX_SNOOZE_SECONDS // 86400} days away")
        ids = _check_ids(ids)
        if ids:  # held first: a wake-up with nothing due does nothing, a snooze without one would never end
            Schedule(self.r, self.keys).add(until, WAKE_SNOOZED, [user_id], {}, ROUTER_QUEUE)
        return self._change("snooze", user_id, ids, until)

    def unsnooze(self, user_id: str, ids: Sequence[str] | None = None) -> Changed:
        """Bring snoozed ``ids`` (or all) back now, unread."""
        return self._change("unsnooze", user_id, ids)

    def wake_due(self, user_id: str, now: float | None = None) -> Changed:
        """Bring back every snoozed notification whose time has come (the wake-up task's work)."""
        return self._change("wake", user_id, None, time.time() if now is None else now)

    def mark_interacted(self, user_id: str, ids: Sequence[str]) -> Changed:
        """Record that the user took an action on ``ids`` (for the action buttons)."""
        return self._change("interact", user_id, ids)

    # Reading ----------------------------------------------------------------------------------
    def live_channel(self, user_id: str) -> str:
        """The Pub/Sub channel the user's live events (:func:`parse_event`) are published on."""
        return self.keys.live(user_id)

    def read_many(self, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        """For each ``(user_id, notification_id)``, whether the user has read it: it is in the inbox
        and not unread (one not delivered yet counts as not read). One round trip."""
        pipe = self.r.pipeline(transaction=False)
        for user_id, nid in pairs:
            pipe.hexists(self.keys.inbox_ids(user_id), nid)
            pipe.sismember(self.keys.unread(user_id), nid)
        replies = pipe.execute()
        return [bool(held) and not bool(unread) for held, unread in zip(replies[::2], replies[1::2], strict=True)]

    def unread_count(self, user_id: str) -> int:
        return int(self.r.scard(self.keys.unread(user_id)))

    def list(self, user_id: str, limit: int = 20, before: str | None = None,
             unread_only: bool = False, unseen_only: bool = False, archived: bool = False) -> Page:
        """Newest first, ``limit`` items older than the cursor ``before``; ``next_cursor`` pages on.

        The default list leaves archived and snoozed entries out; ``archived`` lists only the archived
        ones. ``unread_only`` and ``unseen_only`` narrow either further.
        """
        if not 1 <= limit <= MAX_PAGE:
            raise ValidationError(f"limit must be between 1 and {MAX_PAGE}")
        if before and entry_key(check_entry_id(before)) == (0, 0):
            return Page([], None)  # nothing is older than 0-0 (and Redis refuses "(0-0" as a bound)
        if archived:
            return self._list_archived(user_id, limit, before, unread_only, unseen_only)
        upper = f"({before}" if before else "+"
        lower = "-"
        if unseen_only:  # everything up to the seen marker is seen: the scan stops there
            marker = cast("str | None", self.r.hget(self.keys.seen_upto(user_id), "upto"))
            if marker:
                if before and entry_key(before) <= entry_key(marker):
                    return Page([], None)
                lower = f"({marker}"
        items: list[dict[str, Any]] = []
        chunk = max(limit * 2, 50)
        while True:
            entries = cast("list[store.StreamEntry]",
                           self.r.xrevrange(self.keys.inbox(user_id), max=upper, min=lower, count=chunk))
            if not entries:
                return Page(items, None)
            decoded = self._with_read(user_id, [_decode(e) for e in entries])
            for item in decoded:
                if _listed(item, unread_only, unseen_only) and not item["archived"] and item["snoozed_until"] is None:
                    items.append(item)
                    if len(items) == limit:
                        return Page(items, item["entry_id"])
            if len(entries) < chunk:
                return Page(items, None)
            upper = f"({decoded[-1]['entry_id']}"

    def _list_archived(self, user_id: str, limit: int, before: str | None, unread_only: bool,
                       unseen_only: bool) -> Page:
        """:meth:`list` of the archived entries, found through their set rather than by scanning the
        stream (an inbox of 10,000 holds few archived ones, or all)."""
        k = self.keys
        nids = cast("list[str]", builtins.list(self.r.smembers(k.archived(user_id))))
        found = cast("list[str | None]", self.r.hmget(k.inbox_ids(user_id), nids)) if nids else []
        bound = entry_key(before) if before else None
        kept = sorted(((entry_key(e), e) for e in found if e and (bound is None or entry_key(e) < bound)),
                      reverse=True)
        items: list[dict[str, Any]] = []
        chunk = max(limit * 2, 50) if unread_only or unseen_only else limit
        for start in range(0, len(kept), chunk):
            pipe = self.r.pipeline(transaction=False)
            for _, entry_id in kept[start:start + chunk]:
                pipe.xrange(k.inbox(user_id), min=entry_id, max=entry_id)
            entries = [e[0] for e in pipe.execute() if e]
            for item in self._with_read(user_id, [_decode(e) for e in entries]):
                if _listed(item, unread_only, unseen_only):
                    items.append(item)
                    if len(items) == limit:
                        return Page(items, item["entry_id"])
        return Page(items, None)

    def since(self, user_id: str, entry_id: str, count: int = 500) -> builtins.list[dict[str, Any]]:
        """Entries after ``entry_id``, oldest first, with ``read``: what a reconnecting client missed."""
        if entry_key(check_entry_id(entry_id)) == (_MAX_PART, _MAX_PART):
            return []  # nothing can follow the largest id (and Redis refuses it as an exclusive bound)
        entries = cast("list[store.StreamEntry]",
                       self.r.xrange(self.keys.inbox(user_id), min=f"({entry_id}", max="+", count=count))
        return self._with_read(user_id, [_decode(e) for e in entries])

    def present(self, user_id: str, notification_ids: Sequence[str]) -> tuple[builtins.list[str], builtins.list[str]]:
        """The ids that name a notification in the user's inbox, and those that do not (one round trip)."""
        found = cast("list[str | None]", self.r.hmget(self.keys.inbox_ids(user_id), list(notification_ids)))
        known = [n for n, entry in zip(notification_ids, found, strict=True) if entry]
        return known, [n for n, entry in zip(notification_ids, found, strict=True) if not entry]

    def get(self, user_id: str, notification_id: str) -> dict[str, Any] | None:
        entry_id = self.r.hget(self.keys.inbox_ids(user_id), notification_id)
        if not entry_id:
            return None
        entries = cast("list[store.StreamEntry]", self.r.xrange(self.keys.inbox(user_id), min=entry_id, max=entry_id))
        if not entries:
            return None
        return self._with_read(user_id, [_decode(entries[0])])[0]

    def _with_read(self, user_id: str, items: builtins.list[dict[str, Any]]) -> builtins.list[dict[str, Any]]:
        """Set each decoded item's ``read`` flag and its :data:`STATES`, in one round trip."""
        if not items:
            return items
        k, nids = self.keys, [item["id"] for item in items]
        pipe = self.r.pipeline(transaction=False)
        pipe.smismember(k.unread(user_id), nids)
        pipe.hget(k.seen_upto(user_id), "upto")
        pipe.smismember(k.seen(user_id), nids)
        pipe.smismember(k.archived(user_id), nids)
        pipe.zmscore(k.snoozed(user_id), nids)
        pipe.smismember(k.interacted(user_id), nids)
        unread, upto, seen, archived, snoozed, interacted = pipe.execute()
        marker = entry_key(upto) if upto else (0, 0)
        for i, item in enumerate(items):
            item["read"] = not unread[i]
            item["archived"] = bool(archived[i])
            item["snoozed_until"] = snoozed[i]
            item["seen"] = bool(seen[i]) or entry_key(item["entry_id"]) <= marker or item["archived"]
            item["interacted"] = bool(interacted[i])
        return items


class LiveInbox:
    """The inbox reads a live connection makes in the gateway's event loop, on its asyncio client:
    thousands of clients reconnecting at once would queue them behind the thread pool."""

    def __init__(self, client: aredis.Redis | AsyncRedisCluster, keys: Keys | None = None) -> None:
        self.r = client
        self.keys = keys or store.get_keys()

    async def position(self, user_id: str) -> Position:
        """Where the inbox stands (newest and oldest entry, unread count, epoch), in one round trip."""
        async with self.r.pipeline(transaction=False) as pipe:
            pipe.xrevrange(self.keys.inbox(user_id), count=1)
            pipe.scard(self.keys.unread(user_id))
            pipe.xrange(self.keys.inbox(user_id), count=1)
            pipe.exists(self.keys.inbox(user_id))
            pipe.hmget(self.keys.inbox_epoch(user_id), ["epoch", "since", "trimmed"])
            newest, unread, oldest, exists, (epoch, since, trimmed) = await pipe.execute()
        return Position(newest[0][0] if newest else None, int(unread), oldest[0][0] if oldest else None,
                        bool(exists), epoch, since, trimmed)


def _listed(item: dict[str, Any], unread_only: bool, unseen_only: bool) -> bool:
    return not (unread_only and item["read"]) and not (unseen_only and item["seen"])


def _decode(entry: store.StreamEntry) -> dict[str, Any]:
    entry_id, fields = entry
    item: dict[str, Any] = orjson.loads(fields["n"])
    item["entry_id"] = entry_id
    return item


def _check_ids(ids: Sequence[str]) -> list[str]:
    if isinstance(ids, str) or not all(isinstance(i, str) and 0 < len(i) <= 64 for i in ids):
        raise ValidationError("ids must be a list of notification id strings")
    if len(ids) > MAX_IDS:
        raise ValidationError(f"at most {MAX_IDS} ids per call")
    return list(dict.fromkeys(ids))
