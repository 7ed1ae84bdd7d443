"""``notifier send USER --type T --title X --body Y [--template NAME] [--data JSON] [--idempotency-key K]``"""

from __future__ import annotations

import click

from notifier.cli import main


@main.command()
@click.argument("user_id")
@click.option("--type", "type_", required=True, help="Notification type slug, e.g. order_update.")
@click.option("--title", default="", help="Required unless a template renders it (--template, or the type's).")
@click.option("--body", default="")
@click.option("--template", default=None, help="A template of NOTIFIER_TEMPLATES_DIR (default: the type's).")
@click.option("--data", default=None, help="A JSON object of extra data.")
@click.option("--channel", "channels", multiple=True, help="Only these channels (repeatable).")
@click.option("--priority", type=click.Choice(["normal", "high", "critical"]), default="normal")
@click.option("--action-url", default=None)
@click.option("--idempotency-key", default=None, help="Sends with the same key deliver once.")
def send(user_id: str, type_: str, title: str, body: str, template: str | None, data: str | None,
         channels: tuple[str, ...], priority: str, action_url: str | None, idempotency_key: str | None) -> None:
    """Send one notification to USER_ID; prints its id."""
    from notifier import send_notification
    from notifier.models import parse_json

    payload: dict[str, object] = {"type": type_, "title": title, "body": body, "priority": priority}
    if data is not None:
        payload["data"] = parse_json(data, "--data")
    if template is not None:
        payload["template"] = template
    if channels:
        payload["channels"] = list(channels)
    if action_url:
        payload["action_url"] = action_url
    result = send_notification.delay(user_id, payload, idempotency_key=idempotency_key)
    click.echo(result.id)
