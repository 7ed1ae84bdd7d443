"""A fake Discord webhook endpoint on 127.0.0.1: ``POST /api/webhooks/{id}/{token}`` as Discord
answers it.

With ``?wait=true`` it answers 200 with the message object (its snowflake ``id``), else 204. It
checks the webhook token, the message's limits (content 2000 characters, title 256, description
4096, at most 10 embeds, not empty) and answers Discord's JSON errors: 404 ``Unknown Webhook``
(10015), 401 ``Invalid Webhook Token`` (50027), 400 ``Invalid Form Body`` (50035), and 429 with
``retry_after`` (seconds) in the body and ``Retry-After`` in the headers.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from tests.peers.scripted import Handler, Peer

ANSWERS: dict[str, tuple[int, dict[str, Any], dict[str, str]]] = {
    "ratelimited": (429, {"message": "You are being rate limited.", "retry_after": 1.2, "global": False},
                    {"Retry-After": "1", "X-RateLimit-Scope": "shared"}),
    "ratelimited_long": (429, {"message": "You are being rate limited.", "retry_after": 2.6, "global": False},
                         {"Retry-After": "1", "X-RateLimit-Scope": "user"}),
    "unknown_webhook": (404, {"message": "Unknown Webhook", "code": 10015}, {}),
    "invalid_form": (400, {"message": "Invalid Form Body", "code": 50035,
                           "errors": {"embeds": {"0": {"url": {"_errors": [{"code": "URL_TYPE_INVALID_URL",
                                                                            "message": "Not a well formed URL."}]}}}}},
                     {}),
    "unavailable": (502, {"message": "Bad Gateway", "code": 0}, {}),
}
_EPOCH_MS = 1420070400000


class _Discord(Handler):
    tokens: dict[str, str]

    def do_POST(self) -> None:
        raw = self.body()
        path, _, query = self.path.partition("?")
        parts = path.split("/")
        if len(parts) != 5 or parts[1:3] != ["api", "webhooks"]:
            self.reply(404, {"message": "404: Not Found", "code": 0})
            return
        webhook_id, token = parts[3], parts[4]
        known = type(self).tokens.get(webhook_id)
        if known is None:
            self.reply(404, {"message": "Unknown Webhook", "code": 10015})
            return
        if token != known:
            self.reply(401, {"message": "Invalid Webhook Token", "code": 50027})
            return
        try:
            body = json.loads(raw)
        except ValueError:
            self.reply(400, {"message": "The request body contains invalid JSON.", "code": 50109})
            return
        problem = _check(body)
        if problem:
            self.problem(problem)
            self.reply(400, {"message": problem, "code": 50035 if body.get("content") or body.get("embeds") else 50006})
            return
        answer = self.state.answer_for(webhook_id)
        if answer is not None:
            status, error, headers = ANSWERS[answer]
            self.reply(status, error, headers)
            return
        self.accept(webhook_id, body)
        if "wait=true" not in query.split("&"):
            self.reply(204)
            return
        snowflake = str((int(time.time() * 1000) - _EPOCH_MS) << 22 | secrets.randbits(22))
        self.reply(200, {"id": snowflake, "type": 0, "content": body.get("content", ""),
                         "embeds": body.get("embeds", []), "webhook_id": webhook_id, "channel_id": "1" * 18,
                         "mentions": [], "mention_everyone": False, "timestamp": "2026-01-01T00:00:00+00:00"})


def _check(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "the body is a JSON object"
    content, embeds = body.get("content") or "", body.get("embeds") or []
    if not content and not embeds:
        return "Cannot send an empty message"
    if len(content) > 2000:
        return "content: Must be 2000 or fewer in length."
    if len(embeds) > 10:
        return "embeds: Must be 10 or fewer in length."
    for embed in embeds:
        if len(embed.get("title", "")) > 256 or len(embed.get("description", "")) > 4096:
            return "embeds: title 256, description 4096 characters at most"
        url = embed.get("url")
        if url is not None and not str(url).startswith(("http://", "https://")):
            return "embeds.url: Not a well formed URL."
    return None


class DiscordPeer(Peer):
    handler = _Discord

    def __init__(self) -> None:
        super().__init__()
        self.tokens: dict[str, str] = {}
        self.server.RequestHandlerClass.tokens = self.tokens  # type: ignore[attr-defined]

    def webhook(self) -> tuple[str, str]:
        """A fresh webhook: its URL, and its id (what the peer records messages under)."""
        webhook_id = str(secrets.randbits(60))
        self.tokens[webhook_id] = secrets.token_urlsafe(48)
        return f"{self.url}/api/webhooks/{webhook_id}/{self.tokens[webhook_id]}", webhook_id

    def delete(self, webhook_id: str) -> None:
        """The webhook is deleted in Discord: it answers Unknown Webhook from now on."""
        self.tokens.pop(webhook_id, None)
