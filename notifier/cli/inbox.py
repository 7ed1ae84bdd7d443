"""``notifier inbox USER [--unread] [--json]``"""

from __future__ import annotations

import click

from notifier.cli import echo_json, main


@main.command()
@click.argument("user_id")
@click.option("--unread", is_flag=True, help="Only unread notifications.")
@click.option("--limit", type=click.IntRange(1, 200), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def inbox(user_id: str, unread: bool, limit: int, as_json: bool) -> None:
    """Show USER_ID's inbox, newest first."""
    from notifier.models import check_user_id
    from notifier.state.inbox import Inbox

    box = Inbox()
    page = box.list(check_user_id(user_id), limit=limit, unread_only=unread)
    if as_json:
        echo_json(page.items)
        return
    if not page.items:
        click.echo(f"{user_id}'s inbox has no unread notifications" if unread else f"{user_id}'s inbox is empty")
        return
    click.echo(f"{box.unread_count(user_id)} unread")
    for item in page.items:
        mark = " " if item["read"] else "*"
        click.echo(f"{mark} {item['timestamp']}  {item['id']}  [{item['type']}] {item['title']}")
