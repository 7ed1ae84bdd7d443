"""``notifier status NOTIFICATION_ID`` and ``notifier log``: the delivery log, read."""

from __future__ import annotations

from typing import Any

import click

from notifier.cli import echo_json, main


def _detail(detail: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(detail.items()))


def _line(e: dict[str, Any], with_notification: bool = False) -> str:
    where = e["channel"] or "-"
    if e["target"]:
        where += f"/{e['target']}"
    head = f"{e['at']}  {e['kind']:<9} {where}"
    if with_notification:
        head = f"{e['id']:>8}  {head}  notification {e['notification_id']}  user {e['user_id']}"
    return (head + f"  {_detail(e['detail'])}").rstrip()


@main.command()
@click.argument("notification_id")
@click.option("--user", "user_id", help="Only this user's events (a broadcast has many users).")
@click.option("--json", "as_json", is_flag=True)
def status(notification_id: str, user_id: str | None, as_json: bool) -> None:
    """Where a notification is: per user, channel and target its last state, then every event in order."""
    from notifier.deliverylog.queries import timeline

    found = timeline(notification_id, user_id)
    if found is None:
        raise click.ClickException(f"the delivery log has no notification {notification_id}"
                                   + (f" for user {user_id}" if user_id else "")
                                   + " (events reach it within seconds of happening; see notifier log)")
    shown = found.to_dict()
    if as_json:
        echo_json(shown)
        return
    click.echo(f"notification {notification_id}")
    for d in shown["deliveries"]:
        target = f"/{d['target']}" if d["target"] else ""
        click.echo(f"  {d['user_id']}  {d['channel']}{target}: {d['state']} at {d['at']}")
    click.echo("events:")
    for e in shown["events"]:
        click.echo(f"  {e['user_id']}  " + _line(e))


@main.command()
@click.option("--user", "user_id")
@click.option("--type", "type_")
@click.option("--channel")
@click.option("--status", "kind", help="An event kind: sent, failed, skipped, read, ... (see the README).")
@click.option("--since", "since_", help="A duration back from now (15m, 1h, 2d) or an ISO 8601 time.")
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@click.option("--before", type=click.IntRange(1), help="The cursor a previous page printed: older events.")
@click.option("--json", "as_json", is_flag=True)
def log(user_id: str | None, type_: str | None, channel: str | None, kind: str | None, since_: str | None,
        limit: int, before: int | None, as_json: bool) -> None:
    """The delivery log, newest first: every decision and outcome, narrowed by the options."""
    from notifier.deliverylog.queries import Filters, search, since

    page = search(Filters(user_id, type_, channel, kind, since(since_) if since_ else None), limit, before)
    if as_json:
        echo_json(page.to_dict())
        return
    if not page.events:
        click.echo("no events match")
    for e in page.to_dict()["events"]:
        click.echo(_line(e, with_notification=True))
    if page.next_cursor is not None:
        click.echo(f"more: --before {page.next_cursor}")
