"""The delivery log's database: PostgreSQL (``NOTIFIER_DATABASE_URL``) or, by default, a SQLite file.

Events arrive in batches (the drain's, ``notifier.deliverylog.drain``), so writing is one statement per
batch: PostgreSQL takes them through psycopg 3's ``COPY`` (its fastest bulk path, several times a
multi-row INSERT), SQLite through one ``executemany``. Retention deletes in batches, so a large purge
never holds a long lock against the drain and the queries.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, create_engine, delete, event, select

from notifier.config import get_settings
from notifier.deliverylog.events import Event
from notifier.deliverylog.schema import events as events_table
from notifier.devstack import state_dir

SQLITE_FILE = "log.sqlite3"
"""The embedded default, in notifier's state folder (``$XDG_STATE_HOME/notifier``, beside ``notifier
dev``'s log): so ``notifier dev`` needs no database, and ``notifier status`` finds the workers' log
from any working directory."""

CONNECT_TIMEOUT_SECONDS = 5
"""How long connecting to PostgreSQL may take: a drain meeting a database that is away gives up within
this, and its events wait in Redis."""

DELETE_BATCH = 5000
"""Rows one retention statement deletes: short transactions, each using the ``at`` index."""

COLUMNS = ("at", "kind", "notification_id", "user_id", "type", "channel", "target", "detail")
"""The columns an insert fills (``id`` is the database's)."""

_engines: dict[tuple[int, str], Engine] = {}
_lock = threading.Lock()


def database_url() -> str:
    configured = get_settings().database_url
    if configured:
        return configured
    folder = state_dir()
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / SQLITE_FILE}"


def get_engine(url: str | None = None) -> Engine:
    """This process's engine for ``url`` (default: the settings'); one pool per process and URL, so a
    forked worker child never shares its parent's connections."""
    url = url or database_url()
    key = (os.getpid(), url)
    with _lock:
        engine = _engines.get(key)
        if engine is None:
            engine = _engines[key] = _create(url)
    return engine


def _create(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS})


def _sqlite_pragmas(connection: object, _record: object) -> None:
    """WAL, so the gateway's reads do not wait for the drain's writes."""
    cursor = connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def utc(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, dt.UTC)


def _values(e: Event) -> tuple[Any, ...]:
    return (utc(e.at), e.kind, e.notification_id, e.user_id, e.type, e.channel, e.target, e.detail)


def insert_many(events: Sequence[Event], connection: Connection | None = None) -> int:
    """Write ``events`` with one statement; returns how many. Inside ``connection``'s transaction when
    given (the caller commits), else in a transaction of its own."""
    if not events:
        return 0
    if connection is None:
        with get_engine().begin() as own:
            return insert_many(events, own)
    if connection.dialect.name == "postgresql":
        _copy(connection, events)
    elif connection.dialect.name == "sqlite":
        _executemany(connection, events)
    else:
        connection.execute(events_table.insert(), [dict(zip(COLUMNS, _values(e), strict=True)) for e in events])
    return len(events)


def _executemany(connection: Connection, events: Sequence[Event]) -> None:
    """SQLite: the driver's own ``executemany`` of rows in the form SQLAlchemy's types store and read
    (times as ``YYYY-MM-DD HH:MM:SS.ffffff`` in UTC, ``detail`` as JSON text), inside the connection's
    transaction. SQLAlchemy's per-row type processing cost the drain ~25 µs per event, more than the
    rest of the send path's worker time (``benchmarks/log_sends.py``)."""
    raw = connection.connection.driver_connection
    statement = (f"INSERT INTO {events_table.name} ({', '.join(COLUMNS)}) "
                 f"VALUES ({', '.join('?' * len(COLUMNS))})")
    raw.executemany(statement, [(_sqlite_time(e.at), e.kind, e.notification_id, e.user_id, e.type,  # type: ignore[union-attr]
                                 e.channel, e.target, orjson.dumps(e.detail).decode()) for e in events])


def _sqlite_time(epoch: float) -> str:
    d = dt.datetime.fromtimestamp(epoch, dt.UTC)
    return f"{d:%Y-%m-%d %H:%M:%S}.{d.microsecond:06d}"


def _copy(connection: Connection, events: Sequence[Event]) -> None:
    """``COPY ... FROM STDIN`` on the connection's own psycopg connection, so it is part of the
    transaction SQLAlchemy commits."""
    raw = connection.connection.driver_connection
    statement = f"COPY {events_table.name} ({', '.join(COLUMNS)}) FROM STDIN"
    with raw.cursor() as cursor, cursor.copy(statement) as copy:  # type: ignore[union-attr]
        for e in events:
            copy.write_row((*_values(e)[:-1], orjson.dumps(e.detail).decode()))


def delete_older_than(cutoff: dt.datetime, batch: int = DELETE_BATCH, engine: Engine | None = None) -> int:
    """Delete the events before ``cutoff``, ``batch`` rows per transaction; returns how many."""
    engine = engine or get_engine()
    cutoff = cutoff.astimezone(dt.UTC)
    oldest = select(events_table.c.id).where(events_table.c.at < cutoff).order_by(events_table.c.id).limit(batch)
    deleted = 0
    while True:
        with engine.begin() as connection:
            count = connection.execute(delete(events_table).where(events_table.c.id.in_(oldest))).rowcount
        deleted += count
        if count < batch:
            return deleted


def retention_cutoff(now: dt.datetime | None = None) -> dt.datetime:
    """Events before this are past ``NOTIFIER_LOG_RETENTION_DAYS``."""
    return (now or dt.datetime.now(dt.UTC)) - dt.timedelta(days=get_settings().log_retention_days)
