"""The delivery log's database: PostgreSQL (``NOTIFIER_DATABASE_URL``) or, by default, a SQLite file."""

from __future__ import annotations

import functools

from sqlalchemy import Engine, create_engine, event

from notifier.config import get_settings

SQLITE_DEFAULT = "sqlite:///notifier-log.sqlite3"
"""The embedded default: a file in the working directory, so ``notifier dev`` needs no database."""


def database_url() -> str:
    return get_settings().database_url or SQLITE_DEFAULT


@functools.cache
def get_engine() -> Engine:
    """This process's engine (a pool per process; forked workers call it after the fork)."""
    url = database_url()
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


def _sqlite_pragmas(connection: object, _record: object) -> None:
    """WAL, so the gateway's reads do not wait for the drain's writes."""
    cursor = connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
