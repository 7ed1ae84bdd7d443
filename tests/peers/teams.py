"""A fake Microsoft Teams incoming webhook on 127.0.0.1.

Two kinds of webhook URL, answering as each does: a Workflows webhook (``/workflows/...``: 202 with
no body) and a legacy Office 365 connector (``/webhookb2/...``: 200 with the body ``1``, and when
throttled still 200, with a body saying delivery failed with HTTP error 429). It checks the message
is a ``message`` with an Adaptive Card attachment; a deleted webhook answers 404.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from tests.peers.scripted import Handler, Peer

CARD = "application/vnd.microsoft.card.adaptive"
ANSWERS: dict[str, tuple[int, str, dict[str, str]]] = {
    "throttled": (429, "Too Many Requests", {"Retry-After": "1"}),
    "throttled_long": (429, "Too Many Requests", {"Retry-After": "3"}),
    "legacy_throttled": (200, "Webhook message delivery failed with error: Microsoft Teams endpoint returned "
                              "HTTP error 429 with ContextId tcid=0,server=msgapi-production-eus-azsc2-4-170", {}),
    "bad_payload": (400, "Bad payload received by generic incoming webhook.", {}),
    "deleted": (404, "Webhook not found", {}),
    "unavailable": (503, "Service Unavailable", {}),
}


class _Teams(Handler):
    def do_POST(self) -> None:
        raw = self.body()
        target = self.path.split("?", 1)[0]
        legacy = target.startswith("/webhookb2/")
        if not (legacy or self.path.startswith("/workflows/")):
            self.reply(404, raw=b"Not Found", content_type="text/plain")
            return
        try:
            body = json.loads(raw)
        except ValueError:
            self.reply(400, raw=b"Bad payload received by generic incoming webhook.", content_type="text/plain")
            return
        problem = _check(body)
        if problem:
            self.problem(problem)
            self.reply(400, raw=b"Bad payload received by generic incoming webhook.", content_type="text/plain")
            return
        answer = self.state.answer_for(target)
        if answer is not None:
            status, text, headers = ANSWERS[answer]
            self.reply(status, raw=text.encode(), headers=headers, content_type="text/plain")
            return
        self.accept(target, body)
        if legacy:
            self.reply(200, raw=b"1", content_type="text/plain; charset=utf-8")
        else:
            self.reply(202)


def _check(body: Any) -> str | None:
    if not isinstance(body, dict) or body.get("type") != "message":
        return 'the body is {"type": "message", ...}'
    attachments = body.get("attachments")
    if not isinstance(attachments, list) or len(attachments) != 1 or attachments[0].get("contentType") != CARD:
        return "one Adaptive Card attachment"
    card = attachments[0].get("content", {})
    if card.get("type") != "AdaptiveCard" or card.get("version") not in ("1.0", "1.2", "1.3", "1.4", "1.5"):
        return "content is an AdaptiveCard of version 1.0 to 1.5"
    if not all(b.get("type") == "TextBlock" and isinstance(b.get("text"), str) for b in card.get("body", [])):
        return "body holds TextBlocks"
    if not all(a.get("type") == "Action.OpenUrl" and a.get("url") for a in card.get("actions", [])):
        return "actions are Action.OpenUrl with a url"
    return None


class TeamsPeer(Peer):
    handler = _Teams

    def webhook(self, legacy: bool = False) -> str:
        """A fresh webhook URL of either kind."""
        a, b, c = secrets.token_hex(8), secrets.token_hex(8), secrets.token_hex(16)
        if legacy:
            return f"{self.url}/webhookb2/{a}@{b}/IncomingWebhook/{c}"
        return f"{self.url}/workflows/{a}{b}/triggers/manual/paths/invoke?api-version=1&sig={c}"

    def to_url(self, url: str) -> list[Any]:
        return self.to(url[len(self.url):].split("?", 1)[0])

    def attempts_at(self, url: str) -> list[float]:
        return self.attempts(url[len(self.url):].split("?", 1)[0])

    def fail_url(self, url: str, *answers: str) -> None:
        self.fail(url[len(self.url):].split("?", 1)[0], *answers)

    def refuse_url(self, url: str, answer: str) -> None:
        self.refuse(url[len(self.url):].split("?", 1)[0], answer)
