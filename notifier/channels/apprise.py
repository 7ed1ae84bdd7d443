"""Apprise: one channel for the 100-odd services the ``apprise`` library speaks (Telegram, ntfy, Gotify,
Matrix, Pushover, ...), each target an Apprise URL a user registers.

A user registers ``{"platform": "apprise", "url": "tgram://TOKEN/CHAT"}``; the URL is checked by
letting Apprise parse it (an unknown scheme or a malformed URL is refused; ``apprise --details`` lists
the services and their URL forms). Each target is sent its own ``Apprise().notify(title, body)``
(the body ends with the notification's ``action_url``, when it has one).

Apprise answers a bare yes or no: it logs why a service refused, but tells its caller nothing that
separates "try later" from "never". So a failed notify is a ``RetryableError``, retried with the usual
backoff and dead-lettered after ``NOTIFIER_MAX_RETRIES``; no Apprise target is ever pruned (remove
one with ``DELETE /v1/devices/ID``). A URL holds the service's credentials: errors name it in
Apprise's privacy form, tokens elided. Apprise's plugins open their own connections, so
``notifier/channels/egress.py`` can refuse only an address written in the URL (unless
``NOTIFIER_WEBHOOK_ALLOW_PRIVATE``), not a name that resolves to a private one.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import apprise

from notifier.channels import egress
from notifier.channels.base import Delivery, OnOutcome, Outcome
from notifier.channels.targets import TargetChannel, send_each
from notifier.config import get_settings
from notifier.errors import InvalidTarget, RetryableError
from notifier.state.devices import Device

_ASSET = apprise.AppriseAsset(storage_mode="memory", secure_logging=True)
"""No persistent cache files on the worker's disk; tokens masked in Apprise's own log lines."""
_HINT = "run `apprise --details` for the services Apprise supports and their URL forms"


@functools.cache
def _schemes() -> frozenset[str]:
    """Every URL scheme this Apprise installation can notify."""
    found: set[str] = set()
    for service in apprise.Apprise(asset=_ASSET).details()["schemas"]:
        for key in ("protocols", "secure_protocols"):
            found.update(p.lower() for p in service.get(key) or ())
    return frozenset(found)


def shown(url: str) -> str:
    """``url`` as errors name it: Apprise's privacy form without its options, or only its scheme."""
    plugin = apprise.Apprise.instantiate(url, asset=_ASSET)
    return plugin.url(privacy=True).split("?", 1)[0] if plugin is not None else url.split("://", 1)[0] + "://..."


class AppriseChannel(TargetChannel):
    name = "apprise"
    takes_url = True

    @classmethod
    def check_url(cls, url: str) -> None:
        scheme, sep, _ = url.partition("://")
        if not sep or scheme.lower() not in _schemes():
            raise ValueError(f"{scheme + '://' if sep else 'that'} is not a scheme Apprise supports: {_HINT}")
        plugin = apprise.Apprise.instantiate(url, asset=_ASSET)
        if plugin is None:
            raise ValueError(f"Apprise cannot use this {scheme}:// URL (a token or part missing or malformed): {_HINT}")
        egress.check_host(getattr(plugin, "host", None), get_settings().webhook_allow_private)

    # Mapping ------------------------------------------------------------------------------------
    def build_payload(self, delivery: Delivery) -> dict[str, str]:
        """``title`` and ``body`` for ``notify``; the body is never empty (some services refuse one)."""
        n = delivery.notification
        body = n.body or n.title
        if n.action_url:
            body = f"{body}\n\n{n.action_url}"
        return {"title": n.title if n.body else "", "body": body}

    # Sending ------------------------------------------------------------------------------------
    def send_to_devices(self, items: Sequence[tuple[Delivery, Device]],
                        on_outcome: OnOutcome | None = None) -> list[Outcome]:
        def notify(d: Delivery, device: Device) -> dict[str, Any]:
            if device.url is None:
                raise InvalidTarget(f"apprise target {device.id} has no url: register it again")
            sender = apprise.Apprise(asset=_ASSET)
            if not sender.add(device.url):
                raise InvalidTarget(f"Apprise can no longer use {shown(device.url)} (after an upgrade?): "
                                    "register it again")
            payload = self.build_payload(d)
            if not sender.notify(body=payload["body"], title=payload["title"]):
                raise RetryableError(f"Apprise could not notify {shown(device.url)} (its reason is in the "
                                     "worker's log, logger apprise)")
            return {}

        return send_each(items, notify, on_outcome)
