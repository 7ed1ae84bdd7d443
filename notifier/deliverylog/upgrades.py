"""The log database's schema version: Alembic's migrations (``notifier/deliverylog/migrations``) applied,
read and checked.

PostgreSQL is shared and changed only by an operator (``notifier db upgrade``), so a process that
finds it behind refuses to write (:class:`LogDatabaseNotUpgraded`) and the events wait in Redis. The
embedded SQLite file belongs to this machine alone: it is brought up to date on first use, under a file
lock so that two workers starting together do not both create the table.
"""

from __future__ import annotations

import contextlib
import fcntl
import threading
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy.exc
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Engine

from notifier.deliverylog.store import get_engine
from notifier.errors import LogDatabaseNotUpgraded, LogUnavailable
from notifier.redis.urls import redact

VERSION_TABLE = "notifier_log_version"
"""Alembic's version table, named for notifier so it never meets another application's in one database."""

MIGRATIONS = Path(__file__).with_name("migrations")

_current: set[str] = set()
"""URLs this process has found up to date (checked once per process, not per write)."""
_checking = threading.Lock()


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head() -> str:
    """The revision this notifier's code expects."""
    revision = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert revision is not None, "the migrations folder has no revision"
    return revision


def _known(revision: str) -> bool:
    try:
        return ScriptDirectory(str(MIGRATIONS)).get_revision(revision) is not None
    except CommandError:
        return False


def _where(engine: Engine) -> str:
    return redact(engine.url.render_as_string(hide_password=False))


def current(engine: Engine | None = None) -> str | None:
    """The database's revision (None: never upgraded)."""
    engine = engine or get_engine()
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE}).get_current_revision()
    except sqlalchemy.exc.OperationalError as exc:
        raise LogUnavailable(f"cannot reach the delivery log's database at {_where(engine)}: "
                                     f"{exc.orig or exc}") from None


def upgrade(engine: Engine | None = None) -> str:
    """Apply every migration the database lacks; returns the revision it is at now."""
    engine = engine or get_engine()
    try:
        with _file_lock(engine), engine.begin() as connection:
            config = _config()
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    except sqlalchemy.exc.OperationalError as exc:
        raise LogUnavailable(f"cannot reach the delivery log's database at {_where(engine)}: "
                                     f"{exc.orig or exc}") from None
    return head()


def ensure_current(engine: Engine | None = None) -> None:
    """Return when the database's schema is this code's; upgrade the embedded SQLite file if it is
    behind; else raise :class:`LogDatabaseNotUpgraded` (or :class:`LogUnavailable`)."""
    engine = engine or get_engine()
    url = str(engine.url)
    if url in _current:
        return
    with _checking:
        found = current(engine)
        if found is not None and not _known(found):
            raise LogDatabaseNotUpgraded(
                f"the delivery log's database at {_where(engine)} is at revision {found}, which this notifier "
                f"does not know (a newer notifier migrated it): run that version, or upgrade this one")
        if found != head():
            if engine.dialect.name != "sqlite":
                raise LogDatabaseNotUpgraded(
                    f"the delivery log's database at {_where(engine)} is at revision {found or 'none'}, this "
                    f"notifier needs {head()}: run `notifier db upgrade`")
            upgrade(engine)
        _current.add(url)


@contextlib.contextmanager
def _file_lock(engine: Engine) -> Iterator[None]:
    """An exclusive lock beside a SQLite file while it is migrated; nothing for other databases (their
    migrations run in one transaction, and by one operator)."""
    path = engine.url.database if engine.dialect.name == "sqlite" else None
    if not path or path == ":memory:":
        yield
        return
    with open(f"{path}.migrate-lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
