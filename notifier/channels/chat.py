"""What the chat channels (Slack, Microsoft Teams, Discord) share: registered targets that are not
push devices, one HTTPS session per process (system CAs plus ``NOTIFIER_CA_FILE``, no retries:
Celery owns them), one JSON POST per target, and the rules for webhook URLs users register.

A Teams or Discord webhook URL is chosen by a user, so it gets the webhook channel's guard against
server-side request forgery (``notifier/channels/egress.py``): only public addresses, checked on
the connected address, unless ``NOTIFIER_WEBHOOK_ALLOW_PRIVATE``. Slack's base URL is the operator's.

The channels are interruptive: a chat message pings the member's phone and desktop like a push, so
it waits for the end of quiet hours.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar
from urllib.parse import urlsplit

import orjson
import requests

from notifier.channels import egress
from notifier.channels.base import Delivery, OnOutcome, Outcome
from notifier.channels.push import https_session, parse_retry_after
from notifier.channels.targets import TargetChannel, send_each
from notifier.config import Settings, get_settings
from notifier.errors import DeliveryError
from notifier.per_process import PerProcess
from notifier.state.devices import Device


def response_json(response: requests.Response) -> dict[str, Any]:
    """The answer's JSON object, or ``{}`` when it is not one (a proxy's HTML page, Teams' ``1``)."""
    try:
        found = response.json()
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def retry_after(response: requests.Response) -> float | None:
    return parse_retry_after(response.headers.get("Retry-After"))


class ChatChannel(TargetChannel):
    """Base of the chat adapters: :meth:`post` each target's payload and read the answer (``answer``)."""

    user_urls: ClassVar[bool] = False
    """Targets are URLs users register: connections only to public addresses (``egress``)."""
    id_field: ClassVar[str | None] = None
    """The field of :meth:`deliver`'s detail holding the provider's message id, if it gives one."""

    def __init__(self, settings: Settings | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings or get_settings()
        self._session = PerProcess(self._new_session)
        """One per process: a forked worker child opens its own connections."""

    def _new_session(self) -> requests.Session:
        if self.user_urls:
            return egress.guarded_session(self.settings.ca_file, self.settings.webhook_allow_private)
        return https_session(self.settings.ca_file)

    def send_to_devices(self, items: Sequence[tuple[Delivery, Device]],
                        on_outcome: OnOutcome | None = None) -> list[Outcome]:
        try:
            self.ready()
            session = self._session.get()
        except DeliveryError as exc:
            return [Outcome(d, exc) for d, _ in items]
        return send_each(items, lambda d, device: self.deliver(session, d, device), on_outcome, self.id_field)

    def ready(self) -> None:
        """Raise ``PermanentError`` when the channel lacks its settings (a token)."""

    def deliver(self, session: requests.Session, delivery: Delivery, device: Device) -> dict[str, Any]:
        """Post one target's payload; the outcome's detail (the provider's message id)."""
        raise NotImplementedError

    def post(self, session: requests.Session, url: str, payload: Any, where: str,
             headers: dict[str, str] | None = None, params: dict[str, str] | None = None) -> requests.Response:
        """POST ``payload`` as JSON (:func:`egress.post`, with the charset Slack asks for); ``where``
        names the host in errors."""
        return egress.post(session, url, orjson.dumps(payload), f"{self.name} at {where}",
                           self.settings.push_timeout_seconds,
                           {"Content-Type": "application/json; charset=utf-8", **(headers or {})}, params)

    def close(self) -> None:
        self._session.reset(requests.Session.close)


def host_of(url: str) -> str:
    """A webhook URL's host, for errors and logs: its path holds the webhook's secret."""
    return urlsplit(url).netloc


def delivery_text(delivery: Delivery) -> tuple[str, str]:
    """The title and body to post: the rendered ones when a template rendered the notification."""
    rendered = delivery.rendered
    if rendered is not None:
        return rendered.title, rendered.body
    return delivery.notification.title, delivery.notification.body


def link(delivery: Delivery) -> str | None:
    """The notification's ``action_url`` when it is a web link a chat client can open."""
    url = delivery.notification.action_url
    return url if url and url.startswith(("https://", "http://")) else None
