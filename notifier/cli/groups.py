"""``notifier groups add|remove|list``"""

from __future__ import annotations

import click

from notifier.cli import main


@main.group()
def groups() -> None:
    """Manage groups of users for send_to_group."""


@groups.command()
@click.argument("group_id")
@click.argument("user_ids", nargs=-1, required=True)
def add(group_id: str, user_ids: tuple[str, ...]) -> None:
    """Add users to a group."""
    from notifier.state.groups import Groups

    click.echo(f"added {Groups().add(group_id, list(user_ids))} user(s) to {group_id}")


@groups.command()
@click.argument("group_id")
@click.argument("user_ids", nargs=-1, required=True)
def remove(group_id: str, user_ids: tuple[str, ...]) -> None:
    """Remove users from a group."""
    from notifier.state.groups import Groups

    click.echo(f"removed {Groups().remove(group_id, list(user_ids))} user(s) from {group_id}")


@groups.command("list")
@click.argument("group_id", required=False)
def list_(group_id: str | None) -> None:
    """List groups, or the members of GROUP_ID."""
    from notifier.state.groups import Groups

    g = Groups()
    if group_id is None:
        names = g.list()
        if not names:
            click.echo("no groups")
        for name in names:
            click.echo(f"{name}  {g.size(name)} member(s)")
        return
    empty = True
    for batch in g.members(group_id):
        for user in sorted(batch):
            click.echo(user)
            empty = False
    if empty:
        click.echo(f"group {group_id} has no members")
