"""``notifier db upgrade|current``: the delivery log's database schema."""

from __future__ import annotations

import click

from notifier.cli import main


@main.group()
def db() -> None:
    """The delivery log's database (NOTIFIER_DATABASE_URL, default a SQLite file here)."""


@db.command()
def upgrade() -> None:
    """Bring the schema up to this notifier's (run once, and after each upgrade of notifier)."""
    from notifier.deliverylog import upgrades

    before = upgrades.current()
    after = upgrades.upgrade()
    click.echo(f"delivery log database at revision {after}" + (" (already)" if before == after else
                                                                f" (was {before or 'empty'})"))


@db.command()
def current() -> None:
    """Print the schema's revision and this notifier's; exit 1 when the database is behind."""
    from notifier.deliverylog import upgrades

    found, wanted = upgrades.current(), upgrades.head()
    click.echo(f"database revision {found or 'none'}, notifier needs {wanted}")
    if found != wanted:
        raise click.ClickException("the database is behind: run `notifier db upgrade`")
