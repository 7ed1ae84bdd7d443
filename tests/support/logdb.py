"""Delivery log databases for the tests: a PostgreSQL database per test session on the local server,
a schema per test inside it, or a SQLite file per test.

The session database is created on first use and dropped at the end of the session (``drop``), so
parallel sessions never share one; a schema per test (its URL sets ``search_path``) gives each test an
empty database without dropping tables between tests.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import psycopg
from psycopg import sql

HOST = os.environ.get("NOTIFIER_TEST_POSTGRES_HOST", "127.0.0.1")
PORT = int(os.environ.get("NOTIFIER_TEST_POSTGRES_PORT", "5432"))
USER = os.environ.get("NOTIFIER_TEST_POSTGRES_USER", "postgres")
_database: str | None = None


def _admin() -> psycopg.Connection:
    return psycopg.connect(host=HOST, port=PORT, user=USER, dbname="postgres", autocommit=True, connect_timeout=5)


def session_database() -> str:
    """The session's own database on the local PostgreSQL (created now if it is not yet)."""
    global _database
    if _database is None:
        name = f"notifier_test_{uuid.uuid4().hex[:12]}"
        with _admin() as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        _database = name
    return _database


def postgres_url(port: int = PORT, schema: str | None = None) -> str:
    """A URL of a fresh schema in the session database (through ``port``: a proxy's, in the outage test)."""
    database = session_database()
    schema = schema or new_schema()
    return f"postgresql+psycopg://{USER}@{HOST}:{port}/{database}?options=-csearch_path%3D{schema}"


def new_schema() -> str:
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(host=HOST, port=PORT, user=USER, dbname=session_database(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    return name


def sqlite_url(folder: Path) -> str:
    return f"sqlite:///{folder / 'log.sqlite3'}"


def drop() -> None:
    """Drop the session database (its connections too), if this session made one."""
    global _database
    if _database is not None:
        with _admin() as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(_database)))
        _database = None
