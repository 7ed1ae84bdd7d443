"""The ``notifier`` command line.

Each module in this package adds one command or command group to :data:`main`; they are found and
imported automatically, so adding a command is one new module. Errors print one line on stderr and
exit non-zero, never a traceback.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

import click
import kombu.exceptions
import redis

from notifier.errors import NotifierError
from notifier.redis.urls import redact


class _Group(click.Group):
    """Turns expected failures into one readable line and exit status 1 (passwords in URLs hidden)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (NotifierError, redis.exceptions.RedisError, kombu.exceptions.OperationalError) as exc:
            raise click.ClickException(redact(_reason(exc))) from None


def _reason(exc: Exception) -> str:
    if isinstance(exc, NotifierError):
        return str(exc)
    if isinstance(exc, kombu.exceptions.OperationalError):
        from notifier.pipeline.producer import broker_unavailable

        return str(broker_unavailable(exc))
    from notifier.config import get_settings
    from notifier.redis.store import COMMAND_TIMEOUT

    url = get_settings().redis_url
    if isinstance(exc, redis.exceptions.TimeoutError):
        return (f"Redis at {url} did not answer within {COMMAND_TIMEOUT:g}s ({exc}); is it hung or overloaded? "
                "Check NOTIFIER_REDIS_URL.")
    if isinstance(exc, redis.exceptions.ConnectionError):
        return f"cannot reach Redis at {url} ({exc}); is it running? Set NOTIFIER_REDIS_URL."
    return f"Redis error ({url}): {exc}"


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="notifier")
def main() -> None:
    """notifier: real-time notifications for Python services."""


def echo_json(value: Any) -> None:
    import orjson

    click.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode())


def _load_commands() -> None:
    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")


_load_commands()
