"""Reading the delivery log: one notification's timeline, and the log searched by user, type, channel,
kind and time, newest first, a page at a time.

The CLI (``notifier status``, ``notifier log``), the admin API and page, and a user's own status
endpoint all read through here, so they answer the same. Pages are cut by row id (the order events
were written in), not by offset: a page stays the same while new events arrive.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy.exc
from sqlalchemy import Engine, Select, select

from notifier.deliverylog import schema
from notifier.deliverylog.events import KINDS, Event
from notifier.deliverylog.store import get_engine
from notifier.deliverylog.upgrades import ensure_current
from notifier.errors import LogUnavailable, ValidationError
from notifier.models import duration

MAX_PAGE = 500
"""Events per page at most (the API's and the CLI's ``limit``)."""

@dataclass(frozen=True)
class LoggedEvent:
    """An event as written: ``id`` orders events and pages through them."""

    id: int
    event: Event

    def to_dict(self) -> dict[str, Any]:
        e = self.event
        return {"id": self.id, "kind": e.kind, "at": _iso(e.at), "notification_id": e.notification_id,
                "user_id": e.user_id, "type": e.type, "channel": e.channel, "target": e.target,
                "detail": e.detail}


@dataclass
class Delivery:
    """What happened on one channel and target for one user: its latest state and every event."""

    user_id: str
    channel: str
    target: str | None
    events: list[LoggedEvent] = field(default_factory=list)

    @property
    def state(self) -> str:
        return self.events[-1].event.kind

    def to_dict(self) -> dict[str, Any]:
        return {"user_id": self.user_id, "channel": self.channel, "target": self.target, "state": self.state,
                "at": _iso(self.events[-1].event.at), "events": [e.to_dict() for e in self.events]}


@dataclass
class Timeline:
    """One notification's events in order, and per (user, channel, target) where it stands. Events
    not about one channel (accepted, a workflow's steps) are the notification's own."""

    notification_id: str
    events: list[LoggedEvent]

    @property
    def deliveries(self) -> list[Delivery]:
        found: dict[tuple[str, str, str | None], Delivery] = {}
        for logged in self.events:
            e = logged.event
            if e.channel is None:
                continue
            key = (e.user_id, e.channel, e.target)
            found.setdefault(key, Delivery(*key)).events.append(logged)
        return list(found.values())

    def to_dict(self) -> dict[str, Any]:
        return {"notification_id": self.notification_id,
                "deliveries": [d.to_dict() for d in self.deliveries],
                "events": [e.to_dict() for e in self.events]}


@dataclass(frozen=True)
class Filters:
    """What ``notifier log`` and ``GET /v1/admin/log`` narrow the log to; None is no filter."""

    user_id: str | None = None
    type: str | None = None
    channel: str | None = None
    kind: str | None = None
    since: dt.datetime | None = None

    def __post_init__(self) -> None:
        if self.kind is not None and self.kind not in KINDS:
            raise ValidationError(f"unknown status {self.kind!r}: one of {', '.join(KINDS)}")


@dataclass
class Page:
    events: list[LoggedEvent]
    next_cursor: int | None
    """Pass as ``before`` for the next (older) page; None at the end."""

    def to_dict(self) -> dict[str, Any]:
        return {"events": [e.to_dict() for e in self.events], "next_cursor": self.next_cursor}


def since(value: str, now: dt.datetime | None = None) -> dt.datetime:
    """``--since``: a duration back from now (``90s``, ``15m``, ``1h``, ``2d``) or an ISO 8601 time."""
    try:
        return (now or dt.datetime.now(dt.UTC)) - dt.timedelta(seconds=duration(value, "since"))
    except ValueError:
        pass
    try:
        at = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValidationError(f"since must be a duration back from now (15m, 1h, 2d) or an ISO 8601 time, "
                              f"not {value!r}") from None
    return at if at.tzinfo is not None else at.replace(tzinfo=dt.UTC)


def timeline(notification_id: str, user_id: str | None = None, engine: Engine | None = None) -> Timeline | None:
    """The notification's events in the order they were written; only ``user_id``'s when given (a user
    reading their own). None when the log has nothing of it (for that user)."""
    query = select(schema.events).where(schema.events.c.notification_id == notification_id)
    if user_id is not None:
        query = query.where(schema.events.c.user_id == user_id)
    rows = _fetch(query.order_by(schema.events.c.id), engine)
    return Timeline(notification_id, rows) if rows else None


def search(filters: Filters, limit: int = 50, before: int | None = None, engine: Engine | None = None) -> Page:
    """Events matching ``filters``, newest first; ``before`` is the cursor of the previous page."""
    if not 1 <= limit <= MAX_PAGE:
        raise ValidationError(f"limit must be between 1 and {MAX_PAGE}, not {limit}")
    c = schema.events.c
    query = select(schema.events)
    for column, value in ((c.user_id, filters.user_id), (c.type, filters.type), (c.channel, filters.channel),
                          (c.kind, filters.kind)):
        if value is not None:
            query = query.where(column == value)
    if filters.since is not None:
        query = query.where(c.at >= filters.since)
    if before is not None:
        query = query.where(c.id < before)
    rows = _fetch(query.order_by(c.id.desc()).limit(limit + 1), engine)
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, rows[-1].id if more else None)


def _fetch(query: Select[Any], engine: Engine | None) -> list[LoggedEvent]:
    """Rows of ``query``; the embedded SQLite file is created (migrated) if no worker has yet."""
    engine = engine or get_engine()
    ensure_current(engine)
    try:
        with engine.connect() as conn:
            return [_logged(row) for row in conn.execute(query)]
    except sqlalchemy.exc.OperationalError as exc:
        raise LogUnavailable(f"the delivery log's database cannot be read ({exc.orig}); deliveries go on and "
                             "their events wait in Redis until it is back") from None


def _logged(row: Sequence[Any]) -> LoggedEvent:
    r = row._mapping  # type: ignore[attr-defined]
    at = r["at"] if r["at"].tzinfo is not None else r["at"].replace(tzinfo=dt.UTC)  # SQLite keeps no zone
    return LoggedEvent(int(r["id"]), Event(r["kind"], r["notification_id"], r["user_id"], r["channel"], r["target"],
                                           r["detail"] or {}, at.timestamp(), r["type"]))


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat(timespec="milliseconds")
