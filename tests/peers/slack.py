"""A fake Slack Web API on 127.0.0.1: ``POST /api/chat.postMessage`` as Slack answers it.

It checks the bot token (``Authorization: Bearer xoxb-...``; ``not_authed`` without one,
``invalid_auth`` for another, ``token_revoked`` once revoked), the JSON body (a ``channel``, ``text``
or ``blocks``, the Block Kit limits Slack enforces) and answers HTTP 200 with ``{"ok": false,
"error": ...}`` as Slack does, except a rate limit: HTTP 429 with ``Retry-After``.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from tests.peers.scripted import Handler, Peer

ANSWERS: dict[str, tuple[int, dict[str, Any], dict[str, str]]] = {
    name: (200, {"ok": False, "error": name}, {})
    for name in ("channel_not_found", "is_archived", "user_not_found", "account_inactive", "invalid_auth",
                 "not_in_channel", "msg_too_long")
}
ANSWERS["ratelimited"] = (429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "1"})
ANSWERS["ratelimited_long"] = (429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "3"})
"""Longer than the retry backoff's own first wait (1 to 2 s), so a test can tell it was honoured."""
ANSWERS["internal_error"] = (503, {"ok": False, "error": "service_unavailable"}, {})


class _Slack(Handler):
    token: str
    revoked: bool = False

    def do_POST(self) -> None:
        raw = self.body()
        if self.path != "/api/chat.postMessage":
            self.reply(404, raw=b"<html>404</html>", content_type="text/html")
            return
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            self.reply(200, {"ok": False, "error": "not_authed"})
            return
        if auth[7:] != type(self).token:
            self.reply(200, {"ok": False, "error": "invalid_auth"})
            return
        if type(self).revoked:
            self.reply(200, {"ok": False, "error": "token_revoked"})
            return
        if not self.headers.get("Content-Type", "").startswith("application/json"):
            self.problem(f"content type {self.headers.get('Content-Type')}")
            self.reply(200, {"ok": False, "error": "invalid_form_data"})
            return
        try:
            body = json.loads(raw)
            channel = body["channel"]
        except (ValueError, KeyError, TypeError):
            self.reply(200, {"ok": False, "error": "channel_not_found"})
            return
        problem = _check(body)
        if problem:
            self.problem(problem)
            self.reply(200, {"ok": False, "error": "invalid_blocks", "errors": [problem]})
            return
        answer = self.state.answer_for(channel)
        if answer is not None:
            status, error, headers = ANSWERS[answer]
            self.reply(status, error, headers)
            return
        self.accept(channel, body)
        ts = f"{time.time():.6f}"
        self.reply(200, {"ok": True, "channel": channel, "ts": ts,
                         "message": {"type": "message", "text": body.get("text", ""), "ts": ts,
                                     "bot_id": "B0" + secrets.token_hex(4).upper(), "blocks": body.get("blocks", [])}})


def _check(body: dict[str, Any]) -> str | None:
    """What Slack refuses in a message's shape (``no_text``, ``invalid_blocks``)."""
    blocks = body.get("blocks", [])
    if not body.get("text") and not blocks:
        return "no_text"
    if not isinstance(blocks, list) or len(blocks) > 50:
        return "blocks must be a list of at most 50"
    for i, block in enumerate(blocks):
        kind = block.get("type")
        text = block.get("text", {})
        if kind == "header" and (text.get("type") != "plain_text" or not 0 < len(text.get("text", "")) <= 150):
            return f"blocks[{i}]: a header is plain_text of 1 to 150 characters"
        if kind == "section" and not 0 < len(text.get("text", "")) <= 3000:
            return f"blocks[{i}]: a section's text is 1 to 3000 characters"
        if kind == "actions":
            for element in block.get("elements", []):
                if element.get("type") == "button" and not (element.get("text", {}).get("type") == "plain_text"
                                                             and len(element.get("url", "")) <= 3000):
                    return f"blocks[{i}]: a button has plain_text and a url of at most 3000 characters"
        if kind not in ("header", "section", "actions", "context", "divider"):
            return f"blocks[{i}]: unknown block type {kind!r}"
    return None


class SlackPeer(Peer):
    handler = _Slack

    def __init__(self, token: str = "xoxb-1234-5678-" + secrets.token_hex(12)) -> None:
        super().__init__()
        self.token = token
        self.state_handler = self.server.RequestHandlerClass
        self.state_handler.token = token  # type: ignore[attr-defined]

    def env(self) -> dict[str, str]:
        return {"NOTIFIER_SLACK_BOT_TOKEN": self.token, "NOTIFIER_SLACK_BASE_URL": self.url}

    def revoke(self, revoked: bool = True) -> None:
        self.state_handler.revoked = revoked  # type: ignore[attr-defined]
