"""The log's schema migrations: ``notifier db upgrade|current`` on both databases, the migrated schema
is the one ``schema.py`` describes, PostgreSQL behind is refused until upgraded while the embedded
SQLite is upgraded on first use, and an unreachable database is a catalogue error."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner
from sqlalchemy import Engine, inspect, text

from notifier.cli import main
from notifier.deliverylog import upgrades
from notifier.deliverylog.schema import metadata
from notifier.deliverylog.store import get_engine
from notifier.errors import LogDatabaseNotUpgraded, LogUnavailable
from tests.support.helpers import ROOT
from tests.support.processes import free_port


def test_db_upgrade_creates_the_schema_the_code_describes(engine: Engine, log_url: str, settings_env) -> None:
    settings_env({"NOTIFIER_DATABASE_URL": log_url})
    cli = CliRunner()
    before = cli.invoke(main, ["db", "current"])
    assert before.exit_code == 1 and "revision none" in before.output and "notifier db upgrade" in before.output
    first = cli.invoke(main, ["db", "upgrade"])
    assert first.exit_code == 0, first.output
    assert f"at revision {upgrades.head()} (was empty)" in first.output
    again = cli.invoke(main, ["db", "upgrade"])
    assert again.exit_code == 0 and "(already)" in again.output
    now = cli.invoke(main, ["db", "current"])
    assert now.exit_code == 0 and f"database revision {upgrades.head()}" in now.output
    assert upgrades.current(engine) == upgrades.head()
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": upgrades.VERSION_TABLE})
        assert compare_metadata(context, metadata) == []
    tables = inspect(engine)
    assert {"delivery_events", upgrades.VERSION_TABLE} <= set(tables.get_table_names())
    assert {i["name"] for i in tables.get_indexes("delivery_events")} == {
        "delivery_events_notification", "delivery_events_user", "delivery_events_at"}


def test_postgresql_behind_is_refused_and_the_embedded_sqlite_is_upgraded(engine: Engine) -> None:
    if engine.dialect.name == "postgresql":
        with pytest.raises(LogDatabaseNotUpgraded, match=r"revision none.*notifier db upgrade"):
            upgrades.ensure_current(engine)
        assert upgrades.current(engine) is None, "a refused check changes nothing"
        upgrades.upgrade(engine)
    upgrades.ensure_current(engine)
    assert upgrades.current(engine) == upgrades.head()


def test_a_database_a_newer_notifier_migrated_is_refused_on_both(engine: Engine) -> None:
    upgrades.upgrade(engine)
    with engine.begin() as connection:
        connection.execute(text(f"UPDATE {upgrades.VERSION_TABLE} SET version_num = 'f00dfeed'"))
    with pytest.raises(LogDatabaseNotUpgraded, match="revision f00dfeed, which this notifier does not know"):
        upgrades.ensure_current(engine)


def test_an_unreachable_database_is_one_line_naming_it_without_its_password(settings_env) -> None:
    url = f"postgresql+psycopg://notifier:s3cretPW@127.0.0.1:{free_port()}/log"
    with pytest.raises(LogUnavailable, match="cannot reach the delivery log's database"):
        upgrades.ensure_current(get_engine(url))
    settings_env({"NOTIFIER_DATABASE_URL": url})
    result = CliRunner().invoke(main, ["db", "upgrade"])
    assert result.exit_code == 1 and "cannot reach the delivery log's database at" in result.output
    assert "s3cretPW" not in result.output and "Traceback" not in result.output


def test_every_migration_file_ships_in_the_package() -> None:
    """The migrations folder is not a Python package, so only pyproject's package-data puts it in a
    wheel: each of its files must match one of those patterns."""
    import fnmatch
    import tomllib

    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["notifier"]
    package = ROOT / "notifier"
    files = [p.relative_to(package).as_posix() for p in upgrades.MIGRATIONS.rglob("*")
             if p.is_file() and "__pycache__" not in p.parts]
    assert "deliverylog/migrations/env.py" in files and any(f.endswith(".mako") for f in files)
    assert [f for f in files if not any(fnmatch.fnmatchcase(f, p) for p in patterns)] == []
