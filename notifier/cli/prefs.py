"""``notifier prefs get|set USER``"""

from __future__ import annotations

import click

from notifier.cli import echo_json, main


@main.group()
def prefs() -> None:
    """Read and change a user's notification preferences."""


@prefs.command("get")
@click.argument("user_id")
@click.option("--json", "as_json", is_flag=True)
def get(user_id: str, as_json: bool) -> None:
    """Show USER_ID's preferences (defaults when none are set)."""
    from notifier.state.preferences import PreferenceStore

    _show(PreferenceStore().get(user_id).to_dict(), as_json)


@prefs.command("set")
@click.argument("user_id")
@click.option("--channel", "channels", multiple=True, metavar="NAME=on|off", help="Turn a channel on or off.")
@click.option("--disable-type", "disable_types", multiple=True, metavar="TYPE")
@click.option("--enable-type", "enable_types", multiple=True, metavar="TYPE")
@click.option("--quiet-hours", metavar="HH:MM-HH:MM", help="Defer push, email and SMS in this daily window.")
@click.option("--no-quiet-hours", is_flag=True)
@click.option("--timezone", metavar="TZ", help="IANA zone the quiet hours are in, e.g. Europe/Berlin.")
@click.option("--email", metavar="ADDR")
@click.option("--phone", metavar="NUMBER", help="Mobile number for SMS: +COUNTRY NUMBER (stored as E.164); "
                                                "empty removes it.")
@click.option("--locale", metavar="TAG", help="BCP 47 language tag templates render in, e.g. de-AT.")
@click.option("--name", metavar="NAME", help="How templates address the user (user.name).")
@click.option("--json", "as_json", is_flag=True)
def set_(user_id: str, channels: tuple[str, ...], disable_types: tuple[str, ...], enable_types: tuple[str, ...],
         quiet_hours: str | None, no_quiet_hours: bool, timezone: str | None, email: str | None,
         phone: str | None, locale: str | None, name: str | None, as_json: bool) -> None:
    """Change USER_ID's preferences; prints the result."""
    from notifier.errors import ValidationError
    from notifier.models import QuietHours
    from notifier.state.preferences import PreferenceStore, changes_from_cli

    if quiet_hours and no_quiet_hours:
        raise ValidationError("--quiet-hours and --no-quiet-hours exclude each other")
    store = PreferenceStore()
    current = store.get(user_id)
    changes = changes_from_cli(channels, disable_types, enable_types, current)
    if quiet_hours:
        changes["quiet_hours"] = QuietHours.parse(quiet_hours).model_dump()
    if no_quiet_hours:
        changes["quiet_hours"] = None
    if timezone is not None:
        changes["timezone"] = timezone
    if email is not None:
        changes["email"] = email
    if phone is not None:
        changes["phone"] = phone or None
    if locale is not None:
        changes["locale"] = locale
    if name is not None:
        changes["name"] = name
    _show(store.update(user_id, **changes).to_dict(), as_json)


def _show(prefs: dict[str, object], as_json: bool) -> None:
    if as_json:
        echo_json(prefs)
        return
    for key, value in prefs.items():
        click.echo(f"{key}: {value}")
