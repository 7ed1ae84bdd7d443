"""The durable per-user inbox: a Redis Stream with read state, announced on Pub/Sub.

Each user has a stream of entries (``nid`` = notification id, ``n`` = notification JSON), a hash from
notification id to entry id (so a redelivered task never appends twice) and a set of unread ids whose
size is the unread count. Appends, deletes and mark-read are Lua scripts, so counts stay right under
concurrency and when the cap trims old entries. Entry ids (``1700000000000-0``) are the cursor for
pagination and for resuming a live stream; :func:`entry_key` orders them.

A stream's history has its own hash (:class:`Position`): the epoch, random and new whenever the
stream is created afresh, and the newest id the cap trimmed, so a resuming client can be told whether
it missed anything; the append script keeps it on the rare appends that create or trim a stream,
and :meth:`Inbox.epoch` gives a stream its epoch when a client first connects.

Each change is announced on the user's live channel as a *live event*, whose JSON shape is defined
here once: the scripts fill :data:`NEW_ENTRY_EVENT` or :data:`UNREAD_EVENT` (passed to them as
templates, so an append stays one atomic script call), Python fills the same ones
(:func:`new_entry_event`, :func:`unread_event`) and the gateway reads them with :func:`parse_event`.
Key names come from :mod:`notifier.redis.keys`; which key holds what, and how to read it, is known
only here (the gateway's event-loop reads are :class:`LiveInbox`'s).
"""

from __future__ import annotations

import builtins
import re
import secrets
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


def _pieces(template: str) -> list[str]:
    """The literal text around a template's fields, which a script joins with the values (``..``):
    ``string.format`` would cost Redis 25% more per event, on the path that appends to 100,000
    inboxes per broadcast."""
    return re.split(r"%[sd]", template)


_NEW_ENTRY_PIECES = _pieces(NEW_ENTRY_EVENT)
_UNREAD_PIECES = _pieces(UNREAD_EVENT)


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
        return {**self.notification, "entry_id": self.entry_id, "read": False}


@dataclass(slots=True)
class UnreadCount:
    """Live event: notifications were marked read or deleted; ``unread`` is the count afterwards."""

    unread: int


LiveEvent = NewEntry | UnreadCount


def new_entry_event(entry_id: str, unread: int, notification_json: str) -> str:
    """:data:`NEW_ENTRY_EVENT` filled in Python (the script fills the same template)."""
    return NEW_ENTRY_EVENT % (entry_id, unread, notification_json)


def unread_event(unread: int) -> str:
    """:data:`UNREAD_EVENT` filled in Python (the scripts fill the same template)."""
    return UNREAD_EVENT % unread


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
        deleted, unread = scripts.script("inbox_delete")(self._append_keys(user_id), [*_UNREAD_PIECES, *ids],
                                                         client=self.r)
        return int(deleted), int(unread)

    def epoch(self, user_id: str) -> tuple[str | None, str | None, str | None]:
        """``(epoch, since, trimmed)`` of the user's inbox stream, giving it an epoch if it has none
        (all None when there is no stream). Called when a client connects to a stream without one:
        once per stream, so a broadcast to new inboxes creates no key for it."""
        k = self.keys
        epoch, since, trimmed = scripts.script("inbox_epoch")([k.inbox(user_id), k.inbox_epoch(user_id)],
                                                              [new_epoch()], client=self.r)
        return epoch or None, since or None, trimmed or None

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
             unread_only: bool = False) -> Page:
        """Newest first, ``limit`` items older than the cursor ``before``; ``next_cursor`` pages on."""
        if not 1 <= limit <= MAX_PAGE:
            raise ValidationError(f"limit must be between 1 and {MAX_PAGE}")
        if before and entry_key(check_entry_id(before)) == (0, 0):
            return Page([], None)  # nothing is older than 0-0 (and Redis refuses "(0-0" as a bound)
        upper = f"({before}" if before else "+"
        items: list[dict[str, Any]] = []
        chunk = limit if not unread_only else max(limit * 2, 50)
        while True:
            entries = cast("list[store.StreamEntry]",
                           self.r.xrevrange(self.keys.inbox(user_id), max=upper, min="-", count=chunk))
            if not entries:
                return Page(items, None)
            decoded = self._with_read(user_id, [_decode(e) for e in entries])
            for item in decoded:
                if not item["read"] or not unread_only:
                    items.append(item)
                    if len(items) == limit:
                        return Page(items, item["entry_id"])
            if len(entries) < chunk:
                return Page(items, None)
            upper = f"({decoded[-1]['entry_id']}"

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
        item = _decode(entries[0])
        item["read"] = not self.r.sismember(self.keys.unread(user_id), notification_id)
        return item

    def _with_read(self, user_id: str, items: builtins.list[dict[str, Any]]) -> builtins.list[dict[str, Any]]:
        """Set each decoded item's ``read`` flag, in one round trip."""
        if items:
            flags = self.r.smismember(self.keys.unread(user_id), [item["id"] for item in items])
            for item, unread in zip(items, flags, strict=True):
                item["read"] = not unread
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
