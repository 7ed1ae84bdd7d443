"""The one list of channels: every other place (settings, models, queues, tasks, the CLI, the
gateway's ``GET /v1/channels``) derives the channel names and roles from here.

Channels map to ``"module:Class"`` strings and are imported on first use, so reading the names stays
light (settings and models validate against them in every process; a push adapter pulls in HTTP/2
and crypto libraries only in workers, which import every channel before their pool forks, not in
producers or the CLI). Besides the built-in channels, any installed package may
add one through the ``notifier.channels`` entry point group::

    [project.entry-points."notifier.channels"]
    pigeon = "myapp.pigeon:Pigeon"

The class subclasses :class:`notifier.channels.base.Channel`; its class attributes (``interruptive``,
``needs_address``, ``needs_device``, ``is_inbox``, ``max_payload_bytes``, ...) tell the router and
the delivery policy how to treat it, so nothing else names it.
"""

from __future__ import annotations

import functools
import importlib
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from notifier.errors import ConfigError, ValidationError

if TYPE_CHECKING:
    from notifier.channels.base import Channel

BUILTIN: dict[str, str] = {
    "realtime": "notifier.channels.realtime:Realtime",
    "email": "notifier.channels.email:Email",
    "fcm": "notifier.channels.fcm:FCMChannel",
    "apns": "notifier.channels.apns:APNsChannel",
    "webpush": "notifier.channels.webpush:WebPushChannel",
    "webhook": "notifier.channels.webhook:WebhookChannel",
    "apprise": "notifier.channels.apprise:AppriseChannel",
    "slack": "notifier.channels.slack:SlackChannel",
    "teams": "notifier.channels.teams:TeamsChannel",
    "discord": "notifier.channels.discord:DiscordChannel",
    "sms": "notifier.channels.sms:SMS",
}
GROUP = "notifier.channels"
"""The entry point group an installed package adds channels through."""


@functools.cache
def specs() -> dict[str, str]:
    """Every channel's name and ``"module:Class"``: the built-in ones, then the installed ones."""
    found = dict(BUILTIN)
    for point in entry_points(group=GROUP):
        if point.name in BUILTIN:
            raise ConfigError(f"the package providing entry point {point.value!r} redefines the built-in "
                              f"channel {point.name!r}: give its channel another name")
        found[point.name] = point.value
    return found


def names() -> tuple[str, ...]:
    """Every channel's name, built-in ones first."""
    return tuple(specs())


def check(name: str) -> str:
    """``name``, or ``ValidationError`` naming the channels there are."""
    if name not in specs():
        raise ValidationError(f"unknown channel {name!r}; choose from {', '.join(specs())}")
    return name


@functools.cache
def channel_class(name: str) -> type[Channel]:
    """The class of channel ``name``, imported on first use."""
    from notifier.channels.base import Channel

    module, _, attribute = specs()[check(name)].partition(":")
    try:
        cls = getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot load channel {name!r} from {specs()[name]!r}: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, Channel)):
        raise ConfigError(f"channel {name!r} ({specs()[name]}) is not a subclass of notifier.channels.Channel")
    if getattr(cls, "name", name) != name:
        raise ConfigError(f"channel {name!r} ({specs()[name]}) says its name is {cls.name!r}: make them equal")
    cls.name = name
    return cls


def classes() -> dict[str, type[Channel]]:
    """Every channel's class (imports them all: for workers and the router, not for light clients)."""
    return {name: channel_class(name) for name in specs()}


def reload() -> None:
    """Read the installed entry points again (after installing a channel into a running process)."""
    specs.cache_clear()
    channel_class.cache_clear()
