"""``notifier inbox USER [--unread] [--unseen] [--archived] [--json]``"""

from __future__ import annotations

import click

from notifier.cli import echo_json, main


@main.command()
@click.argument("user_id")
@click.option("--unread", is_flag=True, help="Only unread notifications.")
@click.option("--unseen", is_flag=True, help="Only unseen notifications.")
@click.option("--archived", is_flag=True, help="The archived notifications instead of the others.")
@click.option("--limit", type=click.IntRange(1, 200), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def inbox(user_id: str, unread: bool, unseen: bool, archived: bool, limit: int, as_json: bool) -> None:
    """Show USER_ID's inbox, newest first (archived and snoozed notifications are left out unless
    --archived, which shows only the archived ones)."""
    from notifier.models import check_user_id
    from notifier.state.inbox import Inbox

    box = Inbox()
    page = box.list(check_user_id(user_id), limit=limit, unread_only=unread, unseen_only=unseen, archived=archived)
    if as_json:
        echo_json(page.items)
        return
    if not page.items:
        which = [word for word, on in (("unread", unread), ("unseen", unseen), ("archived", archived)) if on]
        click.echo(f"{user_id}'s inbox has no {' '.join(which)} notifications" if which
                   else f"{user_id}'s inbox is empty")
        return
    counts = box.counts(user_id)
    click.echo(f"{counts.unread} unread, {counts.unseen} unseen, {counts.total} in the inbox, "
               f"{counts.archived} archived, {counts.snoozed} snoozed")
    for item in page.items:
        mark = " " if item["read"] else "*"
        flags = "".join(f" ({state})" for state, on in (
            ("unseen", not item["seen"]), ("archived", item["archived"]), ("acted on", item["interacted"])) if on)
        click.echo(f"{mark} {item['timestamp']}  {item['id']}  [{item['type']}] {item['title']}{flags}")
