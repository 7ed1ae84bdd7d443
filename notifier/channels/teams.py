"""Microsoft Teams: an Adaptive Card posted to the incoming-webhook URL a user or group registered
(a Workflows "post to a channel when a webhook request is received" URL, or a legacy Office 365
connector's).

Workflows webhooks answer 202, legacy connectors 200 with the body ``1``; a legacy connector that
was throttled still answers 200, with a body saying the delivery failed with HTTP error 429, which
is retried like a 429. A webhook that was deleted answers 404 or 410 (pruned); 400 is a card Teams
refused (dead-lettered).
"""

from __future__ import annotations

from typing import Any

import requests

from notifier.channels import egress
from notifier.channels.base import Delivery
from notifier.channels.chat import ChatChannel, delivery_text, host_of, link, retry_after
from notifier.errors import InvalidTarget, PermanentError, RetryableError
from notifier.state.devices import Device

MAX_PAYLOAD = 28 * 1024
"""Teams' limit for a webhook message."""
CARD = "application/vnd.microsoft.card.adaptive"


class TeamsChannel(ChatChannel):
    name = "teams"
    takes_url = True
    user_urls = True
    max_payload_bytes = MAX_PAYLOAD

    @classmethod
    def check_url(cls, url: str) -> None:
        egress.check_url(cls.name, url)

    def build_payload(self, delivery: Delivery) -> dict[str, Any]:
        """A ``message`` with one Adaptive Card 1.4: the title in bold, the body, and ``action_url``
        as an ``Action.OpenUrl`` button."""
        title, body = delivery_text(delivery)
        blocks: list[dict[str, Any]] = []
        if title:
            blocks.append({"type": "TextBlock", "text": title, "weight": "Bolder", "size": "Medium", "wrap": True})
        if body:
            blocks.append({"type": "TextBlock", "text": body, "wrap": True})
        card: dict[str, Any] = {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                                "type": "AdaptiveCard", "version": "1.4", "body": blocks}
        url = link(delivery)
        if url is not None:
            card["actions"] = [{"type": "Action.OpenUrl", "title": "Open", "url": url}]
        return {"type": "message", "attachments": [{"contentType": CARD, "contentUrl": None, "content": card}]}

    def deliver(self, session: requests.Session, delivery: Delivery, device: Device) -> dict[str, Any]:
        assert device.url is not None
        host = host_of(device.url)
        return _answer(self.post(session, device.url, self.build_payload(delivery), host), host)


def _answer(response: requests.Response, host: str) -> dict[str, Any]:
    status = response.status_code
    text = response.text[:300].strip()
    what = f"Teams webhook at {host} answered {status}" + (f": {text}" if text else "")
    if status in (200, 202) and "delivery failed" not in text.lower():
        return {"status": status}
    if status == 429 or status >= 500 or "http error 429" in text.lower():
        raise RetryableError(what, retry_after=retry_after(response))
    if status in (404, 410):
        raise InvalidTarget(f"{what}: the webhook was deleted")
    if status in (401, 403):
        raise PermanentError(f"{what}: the webhook refused the request; register its URL again")
    raise PermanentError(f"{what}: the card was rejected")
