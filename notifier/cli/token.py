"""``notifier token USER_ID``: mint a signed token for the gateway (for scripts, tests and demos)."""

from __future__ import annotations

import click

from notifier.cli import main


@main.command()
@click.argument("user_id")
@click.option("--ttl", type=click.IntRange(min=1), default=None, metavar="SECONDS",
              help="Lifetime in seconds (default NOTIFIER_TOKEN_TTL_SECONDS). Keep tokens that travel in URLs short.")
def token(user_id: str, ttl: int | None) -> None:
    """Print a token that lets USER_ID read and manage their own notifications.

    Signed with NOTIFIER_SECRET_KEY, or, when that is unset, with the key of the `notifier dev`
    running on this machine (it leaves it in ~/.local/state/notifier/dev.env while it runs).
    """
    from notifier import devstack, tokens
    from notifier.config import get_settings
    from notifier.errors import ConfigError

    if get_settings().secret_key:
        key = tokens.signing_key(allow_dev=False)
    elif (dev_secret := devstack.read_secret()) is not None:
        key = dev_secret.encode()
    else:
        raise ConfigError(f"NOTIFIER_SECRET_KEY is not set and no `notifier dev` is running (no "
                          f"{devstack.secret_file()}): set it to the gateway's key")
    click.echo(tokens.issue(user_id, ttl, key=key))
