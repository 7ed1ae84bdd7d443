"""``notifier webhooks add|list|remove|enable``: the delivery log's event webhook subscriptions."""

from __future__ import annotations

import click

from notifier.cli import echo_json, main


@main.group()
def webhooks() -> None:
    """Send delivery events (sent, failed, read, ...) to your endpoints, signed per Standard Webhooks."""


@webhooks.command()
@click.argument("url")
@click.option("--events", "kinds", required=True, metavar="KINDS",
              help="Comma-separated event kinds (sent,failed,read; see the delivery log), or * for every kind.")
def add(url: str, kinds: str) -> None:
    """Subscribe URL to events; prints the subscription's id and its signing secret (shown only now)."""
    from notifier.deliverylog.subscriptions import Subscriptions

    sub = Subscriptions().add(url, kinds)
    click.echo(sub.id)
    click.echo(f"secret {sub.secret}")


@webhooks.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the subscriptions as JSON.")
def list_(as_json: bool) -> None:
    """Every subscription, oldest first: id, state, events, URL, since when it fails (never the secret)."""
    from notifier.deliverylog.subscriptions import Subscriptions

    found = [s.to_dict() for s in Subscriptions().list()]
    if as_json:
        echo_json(found)
        return
    if not found:
        click.echo("no event webhooks (add one with `notifier webhooks add URL --events sent,failed`)")
    for s in found:
        state = s["state"] + (f" since {s['disabled_at']} ({s['disabled_reason']})" if s["state"] == "disabled"
                              else "")
        failing = f"  failing since {s['failing_since']}" if s["failing_since"] else ""
        click.echo(f"{s['id']}  {state}  events {','.join(s['events'])}  {s['url']}{failing}")


@webhooks.command()
@click.argument("subscription_id")
def remove(subscription_id: str) -> None:
    """Stop sending events to a subscription and forget it (retries under way are dropped)."""
    from notifier.deliverylog.subscriptions import Subscriptions

    Subscriptions().remove(subscription_id)
    click.echo(f"removed {subscription_id}")


@webhooks.command()
@click.argument("subscription_id")
def enable(subscription_id: str) -> None:
    """Turn a disabled subscription on again (its dead letters can then be replayed: `notifier dlq replay`)."""
    from notifier.deliverylog.subscriptions import Subscriptions

    Subscriptions().enable(subscription_id)
    click.echo(f"enabled {subscription_id}")
