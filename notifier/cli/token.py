"""``notifier token USER_ID``: mint a signed token for the gateway (for scripts, tests and demos)."""

from __future__ import annotations

import click

from notifier.cli import main


@main.command()
@click.argument("user_id")
@click.option("--ttl", type=click.IntRange(min=1), default=None, metavar="SECONDS",
              help="Lifetime in seconds (default NOTIFIER_TOKEN_TTL). Keep tokens that travel in URLs short.")
def token(user_id: str, ttl: int | None) -> None:
    """Print a token that lets USER_ID read and manage their own notifications."""
    from notifier import tokens

    click.echo(tokens.issue(user_id, ttl, key=tokens.signing_key(allow_dev=False)))
