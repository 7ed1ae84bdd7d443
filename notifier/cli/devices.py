"""``notifier devices list|add|remove``: the device registry (push devices, webhook and Apprise URLs)
from the command line."""

from __future__ import annotations

import click

from notifier.cli import echo_json, main


class _Platform(click.ParamType):
    """A channel that takes devices, read from the registry when the option is used (importing every
    channel module for every ``notifier`` command would slow them all down)."""

    name = "platform"

    def convert(self, value: str, param: click.Parameter | None, ctx: click.Context | None) -> str:
        from notifier.state.devices import platform_class

        try:
            platform_class(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        return value


@main.group()
def devices() -> None:
    """List, register and remove a user's push devices."""


@devices.command("list")
@click.argument("user_id")
@click.option("--json", "as_json", is_flag=True, help="Print the devices as JSON.")
def list_(user_id: str, as_json: bool) -> None:
    """Show USER_ID's devices, oldest first."""
    from notifier.state.devices import Devices

    found = [d.to_dict() for d in Devices().list(user_id)]
    if as_json:
        echo_json(found)
        return
    if not found:
        click.echo(f"{user_id} has no devices")
    for d in found:
        where = d.get("token") or d.get("url") or d["subscription"]["endpoint"]
        click.echo(f"{d['id']}  {d['platform']}  {_short(where)}  last seen {d['last_seen']}")


@devices.command()
@click.argument("user_id")
@click.option("--platform", required=True, type=_Platform())
@click.option("--token", help="The app's push token (FCM registration token, APNs device token).")
@click.option("--subscription", metavar="JSON", help="A browser's PushSubscription as JSON (web push).")
@click.option("--url", help="Where to post: a webhook endpoint, an Apprise URL.")
@click.option("--secret", help="A webhook's signing secret (whsec_...); default: a new one, printed once.")
@click.option("--topic", help="APNs topic (bundle id) when it differs from NOTIFIER_APNS_TOPIC.")
def add(user_id: str, platform: str, token: str | None, subscription: str | None, url: str | None,
        secret: str | None, topic: str | None) -> None:
    """Register a device for USER_ID (again: refreshes it); prints its id, and a webhook's secret."""
    from notifier.errors import ValidationError
    from notifier.models import parse_json
    from notifier.state.devices import Devices

    if [token, subscription, url].count(None) != 2:
        raise ValidationError("give exactly one of --token (an app's push token), --subscription (a browser's) "
                              "or --url (a webhook or Apprise URL)")
    registration: dict[str, object] = {"platform": platform, "token": token, "url": url, "topic": topic,
                                       "secret": secret}
    if subscription is not None:
        registration["subscription"] = parse_json(subscription, "--subscription")
    device = Devices().register(user_id, registration)
    click.echo(device.id)
    if device.secret is not None:
        click.echo(f"secret {device.secret.get_secret_value()}  (configure your receiver with it; it is not "
                   "shown again)")


@devices.command()
@click.argument("user_id")
@click.argument("device_id")
def remove(user_id: str, device_id: str) -> None:
    """Forget DEVICE_ID of USER_ID."""
    from notifier.errors import ValidationError
    from notifier.state.devices import Devices

    if not Devices().remove(user_id, device_id):
        raise ValidationError(f"user {user_id} has no device {device_id}")
    click.echo(f"removed {device_id}")


def _short(text: str, width: int = 40) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"
