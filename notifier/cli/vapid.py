"""``notifier vapid generate``: a VAPID key pair for web push, as environment lines."""

from __future__ import annotations

import click

from notifier.cli import main


@main.group()
def vapid() -> None:
    """VAPID keys identify this server to browsers' push services."""


@vapid.command()
def generate() -> None:
    """Print a new key pair; the public key is the applicationServerKey browsers subscribe with."""
    from py_vapid import Vapid

    from notifier.channels.webpush import private_key, public_key

    pair = Vapid()
    pair.generate_keys()
    click.echo(f"NOTIFIER_VAPID_PRIVATE_KEY={private_key(pair)}")
    click.echo(f"NOTIFIER_VAPID_PUBLIC_KEY={public_key(pair)}")
