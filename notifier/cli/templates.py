"""``notifier templates check|render``: the templates folder (NOTIFIER_TEMPLATES_DIR) before it sends."""

from __future__ import annotations

import dataclasses

import click

from notifier.cli import echo_json, main


@main.group()
def templates() -> None:
    """Check the templates folder, and see what a type renders to."""


@templates.command()
@click.argument("folder", required=False, type=click.Path(file_okay=False))
def check(folder: str | None) -> None:
    """Compile every template and catalogue and render each type with its example.json: one line per
    problem with file and line, exit 1 if any; quiet when fine (default: NOTIFIER_TEMPLATES_DIR)."""
    from notifier.config import get_settings
    from notifier.templates import check as check_folder

    settings = get_settings()
    root = folder or settings.templates_dir
    if not root:
        raise click.UsageError("name a FOLDER or set NOTIFIER_TEMPLATES_DIR")
    problems = check_folder(root, settings.default_locale)
    for problem in problems:
        click.echo(problem, err=True)
    if problems:
        raise SystemExit(1)


@templates.command()
@click.argument("type_", metavar="TYPE")
@click.option("--channel", default="realtime", show_default=True, help="a channel, or sms")
@click.option("--locale", help="BCP 47 tag (default: NOTIFIER_DEFAULT_LOCALE)")
@click.option("--data", "data_json", help="the notification's data as JSON (default: TYPE/example.json's)")
@click.option("--name", help="the user's name, as templates read it (user.name)")
@click.option("--timezone", default="UTC", show_default=True, help="the user's time zone, for dates")
def render(type_: str, channel: str, locale: str | None, data_json: str | None, name: str | None,
           timezone: str) -> None:
    """Show what TYPE's template renders to on CHANNEL in LOCALE (JSON: title, body, and for email
    subject, html, text; for sms text and its encoding and parts)."""
    from notifier.errors import ValidationError
    from notifier.models import Preferences, parse_json, validate
    from notifier.templates import Recipient, get_renderer

    data = parse_json(data_json, "--data") if data_json is not None else None
    if data is not None and not isinstance(data, dict):
        raise ValidationError("--data must be a JSON object")
    prefs = validate(Preferences, {"timezone": timezone, **({"locale": locale} if locale else {}),
                                   **({"name": name} if name else {})})
    user = Recipient("preview-user", prefs.locale or "", prefs.timezone, prefs.name)
    from notifier.textlimits import sms_length

    rendered = get_renderer().preview(type_, channel, prefs.locale, data, user)
    shown: dict[str, object] = dataclasses.asdict(rendered)
    if channel == "sms":  # what a carrier bills it at: encoding and parts
        shown["sms"] = dataclasses.asdict(sms_length(rendered.text))
    echo_json(shown)
