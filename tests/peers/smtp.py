"""An SMTP server on 127.0.0.1 (aiosmtpd) that keeps every message it receives."""

from __future__ import annotations

import asyncio
import email
import email.policy
import secrets
import time
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

from tests.support.processes import free_port


class _Handler:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.accepted_at: list[float] = []
        """``time.monotonic()`` when each of ``messages`` was accepted."""
        self.replies: dict[str, list[str]] = {}
        """Recipient -> SMTP replies to give, one per attempt, before accepting (e.g. '451 try later')."""
        self.refuse: dict[str, str] = {}
        """Recipient -> SMTP reply to give on every attempt until removed (e.g. '550 no such user')."""
        self.attempts: dict[str, int] = {}
        self.queue_ids: list[str] = []
        """The queue id the answer to each accepted message named (``250 2.0.0 Ok: queued as ...``)."""
        self.slow: dict[str, float] = {}
        """Recipient -> seconds to wait before accepting the message (to catch a sender mid-send)."""

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        self.attempts[address] = self.attempts.get(address, 0) + 1
        if address in self.refuse:
            return self.refuse[address]
        if self.replies.get(address):
            return self.replies[address].pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        delay = max((self.slow.get(a, 0.0) for a in envelope.rcpt_tos), default=0.0)
        if delay:
            await asyncio.sleep(delay)
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.accepted_at.append(time.monotonic())
        self.messages.append(msg)  # type: ignore[arg-type]
        self.queue_ids.append(secrets.token_hex(5).upper())
        return f"250 2.0.0 Ok: queued as {self.queue_ids[-1]}"


class SmtpPeer:
    def __init__(self) -> None:
        self.handler = _Handler()
        self.port = free_port()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)

    def start(self) -> SmtpPeer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    @property
    def messages(self) -> list[EmailMessage]:
        return self.handler.messages

    def fail(self, address: str, *replies: str) -> None:
        """Answer the next attempts for ``address`` with ``replies``, then accept."""
        self.handler.replies[address] = list(replies)

    def refuse(self, address: str, reply: str | None) -> None:
        """Refuse ``address`` with ``reply`` until called again with None."""
        if reply is None:
            self.handler.refuse.pop(address, None)
        else:
            self.handler.refuse[address] = reply

    def attempts(self, address: str) -> int:
        return self.handler.attempts.get(address, 0)

    def to(self, address: str) -> list[EmailMessage]:
        """The messages whose ``To`` holds ``address`` (with or without a display name)."""
        return [m for m in self.messages if address in (a.addr_spec for a in m["To"].addresses)]

    def env(self) -> dict[str, str]:
        return {"NOTIFIER_SMTP_HOST": "127.0.0.1", "NOTIFIER_SMTP_PORT": str(self.port),
                "NOTIFIER_SMTP_TLS": "none", "NOTIFIER_SMTP_FROM": "alerts@notifier.test"}
