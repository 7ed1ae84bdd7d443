"""The delivery log's databases for tests: a PostgreSQL database made for the session (dropped after)
and a SQLite file, each with the log's tables, and events written to them as the drain writes them."""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, insert, text

from notifier.deliverylog import schema
from notifier.deliverylog.events import Event

POSTGRES = os.environ.get("NOTIFIER_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


@dataclass
class LogDatabase:
    url: str
    engine: Engine

    def write(self, events: Iterable[Event]) -> None:
        rows = [{"at": dt.datetime.fromtimestamp(e.at, dt.UTC), "kind": e.kind, "notification_id": e.notification_id,
                 "user_id": e.user_id, "type": e.type, "channel": e.channel, "target": e.target, "detail": e.detail}
                for e in events]
        with self.engine.begin() as conn:
            conn.execute(insert(schema.events), rows)


def _postgres(name: str) -> Iterator[str]:
    admin = create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001  no PostgreSQL here: the SQLite half still runs
        pytest.skip(f"no PostgreSQL at {POSTGRES} ({exc})")
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
    schema.metadata.create_all(engine)
    try:
        yield LogDatabase(url, engine)
    finally:
        engine.dispose()
        next(urls, None)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def log_database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LogDatabase]:
    """Each test that takes it runs on both databases."""
    yield from database(request.param, tmp_path_factory)
