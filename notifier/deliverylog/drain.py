"""The drain: delivery events move from their Redis buffer to the log's database, in batches.

One drain runs at a time (a Redis lock): it reads the oldest stream entries, writes all their events
with one :func:`store.insert_many` in one transaction, and deletes the entries from the stream only
after the commit. A database that is away, or not upgraded, leaves the entries where they are: they
wait in Redis, bounded by ``events.BUFFER_MAX_ENTRIES`` (``events_append.lua`` counts what it drops),
and are written once it is back. A crash between the commit and the delete writes those entries twice
on the next run (at least once); a normal run writes each event once. The events an event webhook
wants move to the webhooks' outbox in the transaction that deletes them from the buffer, and their
tasks are enqueued from there (``webhooks.Outbox``), so a broker that is away delays them, never drops them.

An entry the database refuses for its content (a value too long for its column), or that cannot be
decoded, would stop the drain for good: such entries are written one by one, and the ones that still
fail are logged, counted as dropped and removed.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

import kombu.exceptions
import orjson
import psycopg
import redis
import sqlalchemy.exc
from sqlalchemy import Engine

from notifier.deliverylog import store
from notifier.deliverylog.events import Event, decode_entry
from notifier.deliverylog.subscriptions import Subscription, Subscriptions
from notifier.deliverylog.upgrades import ensure_current
from notifier.deliverylog.webhooks import Enqueue, Outbox, producer_enqueue
from notifier.errors import BrokerUnavailable, LogDatabaseNotUpgraded, LogUnavailable
from notifier.metrics import LOG_BATCHES_PENDING, LOG_EVENTS_DROPPED, LOG_EVENTS_WRITTEN
from notifier.redis import store as redis_store
from notifier.redis.keys import Keys

log = logging.getLogger("notifier.deliverylog")

ENTRIES_PER_WRITE = 100
"""Stream entries (task batches, up to ``NOTIFIER_BATCH_SIZE`` events each) per insert and transaction."""
BUDGET_SECONDS = 10.0
"""How long one drain task writes before it returns; the next periodic send goes on where it stopped."""
LOCK_SECONDS = 60
"""How long the drain lock outlives a drain that died; renewed after every write."""

OUTAGE: tuple[type[BaseException], ...] = (
    LogUnavailable, sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError,
    psycopg.OperationalError, psycopg.InterfaceError)
"""The database is away (or SQLite busy): try again later, keep everything."""
REFUSED: tuple[type[BaseException], ...] = (sqlalchemy.exc.DatabaseError, psycopg.DatabaseError)
"""The database answered and refused what was written (its other errors)."""


class Drain:
    def __init__(self, client: redis.Redis | None = None, keys: Keys | None = None,
                 engine: Engine | None = None, enqueue: Enqueue = producer_enqueue) -> None:
        self.r = client or redis_store.get_redis()
        self.keys = keys or redis_store.get_keys()
        self._engine = engine
        self.enqueue = enqueue
        self.outbox = Outbox(self.r, self.keys)
        self._subscriptions: list[Subscription] = []

    @property
    def engine(self) -> Engine:
        return self._engine or store.get_engine()

    def run(self, budget_seconds: float = BUDGET_SECONDS) -> int:
        """Write what waits, for up to ``budget_seconds``; returns the events written (0 when another
        drain holds the lock, or the database cannot take them now)."""
        lock = self.r.lock(self.keys.events_drain_lock(), timeout=LOCK_SECONDS, blocking=False)
        if not lock.acquire():
            return 0
        written = 0
        try:
            self._subscriptions = Subscriptions(self.r, self.keys).list()
            try:
                ensure_current(self.engine)
                deadline = time.monotonic() + budget_seconds
                while entries := self.r.xrange(self.keys.events(), count=ENTRIES_PER_WRITE):
                    written += self._write(entries)
                    if time.monotonic() > deadline:
                        break
                    lock.reacquire()
            except LogDatabaseNotUpgraded as exc:
                log.warning("delivery log: %s; events wait in Redis", exc)
            except OUTAGE as exc:
                log.warning("delivery log: database unavailable (%s); %d batch(es) wait in Redis",
                            _short(exc), self.pending())
            self._send_webhooks()
        finally:
            with contextlib.suppress(redis.exceptions.LockError):
                lock.release()
            LOG_BATCHES_PENDING.set(self.pending())
            LOG_EVENTS_DROPPED.set(int(self.r.get(self.keys.events_dropped()) or 0))
        return written

    def pending(self) -> int:
        return int(self.r.xlen(self.keys.events()))

    def _write(self, entries: list[Any]) -> int:
        """Write ``entries`` in one transaction, then delete them from the stream; returns the events."""
        batches: list[tuple[Any, list[Event]]] = []
        for entry_id, fields in entries:
            try:
                batches.append((entry_id, decode_entry(fields or {})))
            except (ValueError, TypeError) as exc:
                self._drop(entry_id, _row_count(fields or {}), f"cannot be decoded ({exc})")
        try:
            with self.engine.begin() as connection:
                written = store.insert_many([e for _, batch in batches for e in batch], connection)
        except OUTAGE:
            raise
        except REFUSED:
            return self._write_one_by_one(batches)
        if batches:
            self._written([e for _, batch in batches for e in batch], [entry_id for entry_id, _ in batches])
        LOG_EVENTS_WRITTEN.inc(written)
        return written

    def _written(self, events: list[Event], entry_ids: list[Any]) -> None:
        """Committed: the entries leave the buffer, and what event webhooks want of them enters the
        outbox, in one transaction."""
        pipe = self.r.pipeline(transaction=True)
        self.outbox.stage(pipe, events, self._subscriptions)
        pipe.xdel(self.keys.events(), *entry_ids)
        pipe.execute()

    def _send_webhooks(self) -> None:
        """Enqueue the outbox's webhook tasks; with the broker away they wait for the next drain."""
        try:
            self.outbox.flush(self.enqueue)
        except (BrokerUnavailable, kombu.exceptions.OperationalError) as exc:
            log.warning("event webhooks: the broker is unavailable (%s); %d batch(es) wait in Redis",
                        _short(exc), self.outbox.pending())

    def _write_one_by_one(self, batches: list[tuple[Any, list[Event]]]) -> int:
        """Find the entries the database refuses: write each alone, drop those that fail."""
        written = 0
        for entry_id, batch in batches:
            try:
                with self.engine.begin() as connection:
                    count = store.insert_many(batch, connection)
            except OUTAGE:
                raise
            except REFUSED as exc:
                self._drop(entry_id, len(batch), f"refused by the database ({_short(exc)})")
                continue
            self._written(batch, [entry_id])
            LOG_EVENTS_WRITTEN.inc(count)
            written += count
        return written

    def _drop(self, entry_id: Any, events: int, why: str) -> None:
        log.error("delivery log: dropping stream entry %s (%d event(s)): %s", _text(entry_id), events, why)
        pipe = self.r.pipeline(transaction=True)
        pipe.incrby(self.keys.events_dropped(), events)
        pipe.xdel(self.keys.events(), entry_id)
        pipe.execute()


def _row_count(fields: dict[Any, Any]) -> int:
    """How many events an undecodable entry held, as far as can be told (1 when not even that)."""
    try:
        rows = orjson.loads(fields.get(b"e", fields.get("e")) or b"")
    except (orjson.JSONDecodeError, TypeError):
        return 1
    return len(rows) if isinstance(rows, list) else 1


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _short(exc: BaseException) -> str:
    """The first line of a database error (SQLAlchemy appends the statement and its parameters)."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
