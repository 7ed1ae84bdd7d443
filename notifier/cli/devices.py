"""``notifier devices list|add|remove``: the device registry (push devices, chat targets, webhook and
Apprise URLs, a group's own targets) from the command line."""

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
    """List, register and remove a user's (or a group's) push devices and chat targets."""


_GROUP = click.option("--group", "group_id", metavar="ID",
                      help="A group's own targets (a Slack channel, a team's webhook) instead of a user's.")


def _recipient(user_id: str | None, group_id: str | None) -> str:
    """The registry's recipient id: USER_ID, or ``group:<ID>`` for ``--group ID``."""
    from notifier.errors import ValidationError
    from notifier.models import check_user_id
    from notifier.state.groups import group_recipient

    if (user_id is None) == (group_id is None):
        raise ValidationError("give either USER_ID or --group ID")
    return group_recipient(group_id) if group_id is not None else check_user_id(user_id)


@devices.command("list")
@click.argument("user_id", required=False)
@_GROUP
@click.option("--json", "as_json", is_flag=True, help="Print the devices as JSON.")
def list_(user_id: str | None, group_id: str | None, as_json: bool) -> None:
    """Show USER_ID's (or the group's) devices and chat targets, oldest first."""
    from notifier.state.devices import Devices

    recipient = _recipient(user_id, group_id)
    found = [d.to_dict() for d in Devices().list(recipient)]
    if as_json:
        echo_json(found)
        return
    if not found:
        click.echo(f"{recipient} has no devices")
    for d in found:
        where = d.get("token") or d.get("url") or d["subscription"]["endpoint"]
        click.echo(f"{d['id']}  {d['platform']}  {_short(where)}  last seen {d['last_seen']}")


@devices.command()
@click.argument("user_id", required=False)
@_GROUP
@click.option("--platform", required=True, type=_Platform())
@click.option("--token", help="The app's push token (FCM registration token, APNs device token), or a Slack "
                              "member or channel id.")
@click.option("--subscription", metavar="JSON", help="A browser's PushSubscription as JSON (web push).")
@click.option("--url", help="Where to post: a Teams or Discord incoming webhook, a webhook endpoint, an Apprise URL.")
@click.option("--secret", help="A webhook's signing secret (whsec_...); default: a new one, printed once.")
@click.option("--topic", help="APNs topic (bundle id) when it differs from NOTIFIER_APNS_TOPIC.")
def add(user_id: str | None, group_id: str | None, platform: str, token: str | None, subscription: str | None,
        url: str | None, secret: str | None, topic: str | None) -> None:
    """Register a device or target for USER_ID or --group ID (again: refreshes it); prints its id, and a
    webhook's secret."""
    from notifier.errors import ValidationError
    from notifier.models import parse_json
    from notifier.state.devices import Devices

    recipient = _recipient(user_id, group_id)
    if [token, subscription, url].count(None) != 2:
        raise ValidationError("give exactly one of --token (an app's push token, a Slack id), --subscription "
                              "(a browser's) or --url (a webhook or Apprise URL)")
    registration: dict[str, object] = {"platform": platform, "token": token, "url": url, "topic": topic,
                                       "secret": secret}
    if subscription is not None:
        registration["subscription"] = parse_json(subscription, "--subscription")
    device = Devices().register(recipient, registration)
    click.echo(device.id)
    if device.secret is not None:
        click.echo(f"secret {device.secret.get_secret_value()}  (configure your receiver with it; it is not "
                   "shown again)")


@devices.command()
@click.argument("ids", nargs=-1, required=True, metavar="[USER_ID] DEVICE_ID")
@_GROUP
def remove(ids: tuple[str, ...], group_id: str | None) -> None:
    """Forget DEVICE_ID of USER_ID (or of --group ID)."""
    from notifier.errors import ValidationError
    from notifier.state.devices import Devices

    if len(ids) > 2:
        raise ValidationError("give USER_ID DEVICE_ID, or DEVICE_ID with --group ID")
    *user, device_id = ids
    recipient = _recipient(user[0] if user else None, group_id)
    if not Devices().remove(recipient, device_id):
        raise ValidationError(f"{recipient} has no device {device_id}")
    click.echo(f"removed {device_id}")


def _short(text: str, width: int = 40) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"
