"""Each delivery log test runs on both databases: a fresh schema of the session's PostgreSQL database,
and a SQLite file of its own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from notifier.deliverylog.store import get_engine
from tests.deliverylog import logdb


@pytest.fixture(scope="session", autouse=True)
def _drop_session_database() -> Iterator[None]:
    yield
    logdb.drop()


@pytest.fixture(params=["postgresql", "sqlite"])
def log_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return logdb.postgres_url() if request.param == "postgresql" else f"sqlite:///{tmp_path / 'log.sqlite3'}"


@pytest.fixture
def engine(log_url: str) -> Iterator[Engine]:
    engine = get_engine(log_url)
    yield engine
    engine.dispose()
