"""Discord: a message posted to the channel webhook URL a user or group registered
(``https://discord.com/api/webhooks/{id}/{token}``).

``?wait=true`` makes Discord answer with the message (its ``id`` goes in the outcome). Mentions in a
notification's text ping nobody (``allowed_mentions`` parses none). A 429 carries ``retry_after``
(seconds) in its JSON and ``Retry-After``; an unknown webhook (404, code 10015) or a wrong webhook
token (401, code 50027) is pruned; 400 is a message Discord refused.
"""

from __future__ import annotations

from typing import Any

import requests

from notifier.channels import egress
from notifier.channels.base import Delivery
from notifier.channels.chat import (
    ChatChannel,
    delivery_text,
    host_of,
    link,
    response_json,
    retry_after,
)
from notifier.errors import InvalidTarget, PermanentError, RetryableError
from notifier.state.devices import Device
from notifier.textlimits import truncate

HOSTS = ("discord.com", "discordapp.com")
CONTENT_CHARS = 2000
EMBED_TITLE_CHARS = 256
EMBED_DESCRIPTION_CHARS = 4096
UNKNOWN_WEBHOOK = 10015
INVALID_WEBHOOK_TOKEN = 50027


class DiscordChannel(ChatChannel):
    name = "discord"
    id_field = "id"
    takes_url = True
    user_urls = True

    @classmethod
    def check_url(cls, url: str) -> None:
        egress.check_url(cls.name, url, HOSTS, "/api/webhooks/")

    def build_payload(self, delivery: Delivery) -> dict[str, Any]:
        """The webhook's JSON: the title as ``content`` (what a phone's notification shows), one embed
        with the title (linked to ``action_url``) and the body, and no mentions parsed."""
        title, body = delivery_text(delivery)
        embed: dict[str, Any] = {"title": truncate(title or delivery.notification.type, EMBED_TITLE_CHARS, len)}
        if body:
            embed["description"] = truncate(body, EMBED_DESCRIPTION_CHARS, len)
        url = link(delivery)
        if url is not None:
            embed["url"] = url
        return {"content": truncate(title, CONTENT_CHARS, len), "embeds": [embed], "allowed_mentions": {"parse": []}}

    def deliver(self, session: requests.Session, delivery: Delivery, device: Device) -> dict[str, Any]:
        assert device.url is not None
        host = host_of(device.url)
        response = self.post(session, device.url, self.build_payload(delivery), host, params={"wait": "true"})
        return _answer(response, host)


def _answer(response: requests.Response, host: str) -> dict[str, Any]:
    status = response.status_code
    answer = response_json(response)
    if status in (200, 204):
        return {"id": str(answer.get("id", ""))}
    code = answer.get("code")
    what = f"Discord webhook at {host} answered {status}: {str(answer.get('message') or response.reason)[:200]}"
    if status == 429 or status >= 500:
        after = answer.get("retry_after")
        hints = [w for w in (float(after) if isinstance(after, int | float) else None, retry_after(response))
                 if w is not None]
        raise RetryableError(what, retry_after=max(hints) if hints else None)
    if status == 404 or code in (UNKNOWN_WEBHOOK, INVALID_WEBHOOK_TOKEN):
        raise InvalidTarget(f"{what}: the webhook was deleted")
    raise PermanentError(f"{what}: the message was rejected")
