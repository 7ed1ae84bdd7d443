"""The delivery log's databases for tests: a PostgreSQL database made for a module or the session
(dropped after) and a SQLite file, each migrated to the log's tables, and events written to them as the
drain writes them; a schema of its own per test in the session's database (``postgres_url``) gives a
test an empty database without making one."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, make_url, text

from notifier.deliverylog import store, upgrades
from notifier.deliverylog.events import Event

POSTGRES = os.environ.get("NOTIFIER_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


@dataclass
class LogDatabase:
    url: str
    engine: Engine

    def write(self, events: Iterable[Event]) -> None:
        with self.engine.begin() as conn:
            store.insert_many(list(events), conn)


def _postgres(name: str) -> Iterator[str]:
    admin = create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001  scripts/services.sh starts PostgreSQL: its absence is a failure
        pytest.fail(f"no PostgreSQL at {POSTGRES} ({exc}); scripts/services.sh starts one", pytrace=False)
    try:
        yield POSTGRES.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def database(kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LogDatabase]:
    """A fresh log database of ``kind`` (``sqlite`` or ``postgresql``) with its tables, removed after."""
    if kind == "sqlite":
        urls: Iterator[str] = iter([f"sqlite:///{Path(tmp_path_factory.mktemp('log')) / 'log.sqlite3'}"])
    else:
        urls = _postgres(f"notifier_test_{uuid.uuid4().hex[:12]}")
    url = next(urls)
    engine = create_engine(url)
    upgrades.upgrade(engine)
    try:
        yield LogDatabase(url, engine)
    finally:
        engine.dispose()
        next(urls, None)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def log_database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LogDatabase]:
    """Each test that takes it runs on both databases."""
    yield from database(request.param, tmp_path_factory)


_session: Iterator[str] | None = None
_session_url: str | None = None


def session_database() -> str:
    """The URL of this session's own PostgreSQL database, made on first use (dropped by :func:`drop`)."""
    global _session, _session_url
    if _session_url is None:
        _session = _postgres(f"notifier_test_{uuid.uuid4().hex[:12]}")
        _session_url = next(_session)
    return _session_url


def postgres_url(port: int | None = None, schema: str | None = None) -> str:
    """A URL of a schema of its own (new unless named) in the session database, through ``port`` (a
    proxy's) when given."""
    url = make_url(session_database())
    if port is not None:
        url = url.set(port=port)
    return url.update_query_dict({"options": f"-csearch_path={schema or new_schema()}"}).render_as_string(
        hide_password=False)


def new_schema() -> str:
    name = f"t_{uuid.uuid4().hex[:12]}"
    engine = create_engine(session_database(), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{name}"'))
    engine.dispose()
    return name


def drop() -> None:
    """Drop the session database, if one was made."""
    global _session, _session_url
    if _session is not None:
        next(_session, None)
    _session = _session_url = None
