"""Slack: a bot posts each notification with ``chat.postMessage`` to the member id (a direct message)
or channel id a user or group registered.

Slack answers HTTP 200 with ``{"ok": false, "error": "..."}`` for most failures; the error name
decides: a target that is gone (``channel_not_found``, ``is_archived``, ``user_not_found``, and
``account_inactive``: the workspace or account it was in is deleted, so nothing reaches it) is pruned,
a refused token (``invalid_auth``, ``not_authed``, ``token_revoked``) dead-letters with the fix, and
``ratelimited`` (HTTP 429, ``Retry-After``) and 5xx are retried.
"""

from __future__ import annotations

import re
from typing import Any

import requests

from notifier.channels.base import Delivery
from notifier.channels.chat import ChatChannel, delivery_text, link, response_json, retry_after
from notifier.errors import InvalidTarget, PermanentError, RetryableError
from notifier.state.devices import Device
from notifier.textlimits import truncate

_ID = re.compile(r"[UWCGD][A-Z0-9]{6,20}")
HEADER_CHARS = 150
"""Slack's limit for a header block's text."""
SECTION_CHARS = 3000
"""Slack's limit for a section block's text."""
FALLBACK_CHARS = 4000
"""Slack truncates ``text`` beyond 40,000 characters; the fallback (notifications, screen readers)
needs far less."""
GONE = frozenset({"channel_not_found", "is_archived", "user_not_found", "account_inactive"})
"""Errors saying the registered member or channel no longer takes messages: prune it."""
TOKEN = frozenset({"invalid_auth", "not_authed", "token_revoked", "token_expired",
                   "no_permission", "missing_scope", "not_allowed_token_type"})
"""Errors about the bot token, which no retry fixes."""
RETRY = frozenset({"ratelimited", "rate_limited", "service_unavailable", "fatal_error", "internal_error",
                   "request_timeout"})
_TOKEN_HINT = "fix NOTIFIER_SLACK_BOT_TOKEN (a bot token xoxb-... with the chat:write scope)"


def escape(text: str) -> str:
    """Slack's mrkdwn escaping: ``&``, ``<`` and ``>`` (so no ``<!channel>`` or ``<@U…>`` mention and
    no link markup in a notification's text reaches anyone)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class SlackChannel(ChatChannel):
    name = "slack"
    id_field = "ts"

    @classmethod
    def check_token(cls, token: str) -> None:
        if not _ID.fullmatch(token):
            raise ValueError("a slack target is a member id (U… or W…) or a channel id (C…, G… or D…), "
                             "e.g. U024BE7LH: in Slack, a profile's or channel's details show it")

    def build_payload(self, delivery: Delivery) -> dict[str, Any]:
        """``chat.postMessage``'s body without ``channel``: a fallback ``text``, and Block Kit blocks:
        the title as a header, the body as an escaped mrkdwn section, ``action_url`` as a button."""
        title, body = delivery_text(delivery)
        blocks: list[dict[str, Any]] = []
        if title:
            blocks.append({"type": "header",
                           "text": {"type": "plain_text", "text": truncate(title, HEADER_CHARS, len), "emoji": True}})
        if body:
            blocks.append({"type": "section", "text": {
                "type": "mrkdwn", "text": escape(truncate(body, SECTION_CHARS, lambda t: len(escape(t))))}})
        url = link(delivery)
        if url is not None:
            blocks.append({"type": "actions", "elements": [{
                "type": "button", "action_id": "open", "url": url,
                "text": {"type": "plain_text", "text": "Open", "emoji": True}}]})
        fallback = "\n".join(part for part in (title, body) if part)
        return {"text": escape(truncate(fallback, FALLBACK_CHARS, lambda t: len(escape(t)))), "blocks": blocks,
                "unfurl_links": False, "unfurl_media": False}

    def ready(self) -> None:
        if not self.settings.slack_bot_token:
            raise PermanentError("Slack is not configured: set NOTIFIER_SLACK_BOT_TOKEN to a bot token (xoxb-... "
                                 "with the chat:write scope)")

    def deliver(self, session: requests.Session, delivery: Delivery, device: Device) -> dict[str, Any]:
        assert device.token is not None
        base = self.settings.slack_base_url
        response = self.post(session, f"{base}/api/chat.postMessage",
                             {"channel": device.token, **self.build_payload(delivery)}, base,
                             headers={"Authorization": f"Bearer {self.settings.slack_bot_token}"})
        return _answer(response, device.token)


def _answer(response: requests.Response, target: str) -> dict[str, Any]:
    """The message's ``ts`` and channel, or the error Slack's answer means."""
    status = response.status_code
    answer = response_json(response)
    error = str(answer.get("error") or "")
    what = f"Slack answered {status} {error or response.reason} for {target}"
    if status == 429 or error in ("ratelimited", "rate_limited"):
        raise RetryableError(what, retry_after=retry_after(response))
    if status >= 500 or error in RETRY:
        raise RetryableError(what, retry_after=retry_after(response))
    if status == 200 and answer.get("ok") is True:
        return {"ts": str(answer.get("ts", "")), "channel": str(answer.get("channel", target))}
    if error in GONE:
        raise InvalidTarget(f"{what}: the member or channel is gone")
    if error in TOKEN or status in (401, 403):
        raise PermanentError(f"{what}: {_TOKEN_HINT}")
    if error == "not_in_channel":
        raise PermanentError(f"{what}: invite the app to the channel (/invite @your-app) and send again")
    raise PermanentError(f"{what}: the message was rejected")
