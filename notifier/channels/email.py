"""Email over SMTP: one connection per batch, plain-text and HTML bodies from templates (the
delivery's :class:`~notifier.templates.Rendered`, or the built-in layout for a notification sent
with its own title and body).

The recipient is the address in the user's preferences (their contact record), with their display
name (``Preferences.name``) in ``To``; users without an address are skipped. The sender is
``NOTIFIER_SMTP_FROM``, or the type's own from ``NOTIFIER_SMTP_FROM_BY_TYPE``. With
``NOTIFIER_PUBLIC_URL`` set, each email carries ``List-Unsubscribe`` (a signed https link to the
gateway's ``/v1/unsubscribe/...``, see ``notifier/gateway/unsubscribe.py``) and
``List-Unsubscribe-Post: List-Unsubscribe=One-Click`` (RFC 8058), so mail clients offer a one-click
unsubscribe that turns this type's email off. SMTP answers map onto the error tree: 4xx and dropped
connections retry, 5xx and refused logins are permanent.
"""

from __future__ import annotations

import contextlib
import email.policy
import hashlib
import re
import smtplib
import ssl
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

from notifier import tokens
from notifier.channels.base import (
    Channel,
    Delivery,
    OnOutcome,
    Outcome,
    reported,
)
from notifier.config import Settings, get_settings
from notifier.errors import DeliveryError, PermanentError, RetryableError
from notifier.mailboxes import recipient
from notifier.state.preferences import PreferenceStore
from notifier.templates.rendering import get_renderer

_QUEUE_ID = re.compile(r"queued as ([\w.-]+)|\bid=([\w.-]+)|^2\.\d\.\d ([\w.-]{6,}) ", re.IGNORECASE)
"""The queue id in a server's answer to DATA: Postfix and most others ``2.0.0 Ok: queued as
4F2D81``, Exim ``OK id=1uXyZ-000abc-De``, Sendmail ``2.0.0 4AB12cd34 Message accepted``."""

POLICY = email.policy.SMTP.clone(max_line_length=998)
"""CRLF line ends as SMTP wants; headers folded only past RFC 5322's hard limit, so the long
unsubscribe URL stays one unbroken ``<...>`` (folding inside it would break the link)."""


class Email(Channel):
    name = "email"
    needs_address = "email"

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()

    def build_payload(self, delivery: Delivery, name: str | None = None) -> EmailMessage:
        """The email for ``delivery``; ``name`` is the user's display name for ``To``."""
        n = delivery.notification
        rendered = delivery.rendered or get_renderer().plain_email(n)
        sender = self.settings.sender(n.type)
        msg = EmailMessage(policy=POLICY)
        msg["Subject"] = rendered.subject  # one line: the renderer joins a title's lines
        msg["From"] = sender
        msg["To"] = recipient(delivery.target, name)
        msg["Date"] = formatdate(localtime=False)
        msg["Message-ID"] = message_id(n.id, delivery.target, sender.domain)
        msg["X-Notification-Id"] = n.id
        if self.settings.public_url:
            link = self.settings.unsubscribe_url(tokens.issue_unsubscribe(
                delivery.user_id, n.type, self.name, now=n.timestamp.timestamp()))
            msg["List-Unsubscribe"] = f"<{link}>"
            msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        msg.set_content(rendered.text)
        msg.add_alternative(rendered.html, subtype="html")
        return msg

    def send(self, deliveries: Sequence[Delivery], on_outcome: OnOutcome | None = None) -> list[Outcome]:
        if not deliveries:
            return []
        try:
            smtp = self._connect()
        except DeliveryError as exc:
            return [Outcome(d, exc) for d in deliveries]
        outcomes = []
        users = sorted({d.user_id for d in deliveries})
        names = {u: p.name for u, p in zip(users, PreferenceStore().get_many(users), strict=True)}
        try:
            for d in deliveries:
                error, queue_id = self._send_one(smtp, d, names.get(d.user_id))
                outcomes.append(reported(Outcome(d, error, provider_id=queue_id), on_outcome))
        finally:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                smtp.quit()
        return outcomes

    def _connect(self) -> _SMTP | _SMTPSSL:
        s = self.settings
        try:
            if s.smtp_tls == "ssl":
                smtp: _SMTP | _SMTPSSL = _SMTPSSL(s.smtp_host, s.smtp_port, timeout=s.smtp_timeout_seconds,
                                                  context=ssl.create_default_context())
            else:
                smtp = _SMTP(s.smtp_host, s.smtp_port, timeout=s.smtp_timeout_seconds)
                if s.smtp_tls == "starttls":
                    smtp.starttls(context=ssl.create_default_context())
            if s.smtp_user:
                smtp.login(s.smtp_user, s.smtp_password)
            return smtp
        except smtplib.SMTPAuthenticationError as exc:
            raise PermanentError(f"SMTP login refused ({exc.smtp_code}): check NOTIFIER_SMTP_USER and "
                                 "NOTIFIER_SMTP_PASSWORD") from None
        except smtplib.SMTPNotSupportedError as exc:
            raise PermanentError(f"SMTP server does not support what NOTIFIER_SMTP_TLS asks: {exc}") from None
        except ssl.SSLError as exc:
            raise PermanentError(f"TLS with {s.smtp_host}:{s.smtp_port} failed ({exc.reason}): check "
                                 "NOTIFIER_SMTP_TLS and the server certificate") from None
        except (TimeoutError, smtplib.SMTPException, OSError) as exc:
            raise RetryableError(f"SMTP server {s.smtp_host}:{s.smtp_port} unavailable: {exc}") from None

    def _send_one(self, smtp: _SMTP | _SMTPSSL, delivery: Delivery,
                  name: str | None) -> tuple[DeliveryError | None, str | None]:
        """The send's error, or None and the server's queue id (when its answer names one)."""
        try:
            smtp.send_message(self.build_payload(delivery, name), to_addrs=[delivery.target])
            return None, queue_id(smtp.data_reply)
        except smtplib.SMTPRecipientsRefused as exc:
            code, reason = next(iter(exc.recipients.values()))
            return _by_code(code, f"recipient {delivery.target} refused: {code} {reason!r}"), None
        except smtplib.SMTPResponseException as exc:
            return _by_code(exc.smtp_code, f"SMTP error {exc.smtp_code}: {exc.smtp_error!r}"), None
        except (smtplib.SMTPException, OSError) as exc:
            return RetryableError(f"SMTP connection lost: {exc}"), None


class _SMTP(smtplib.SMTP):
    """Keeps the server's answer to DATA (``smtplib`` drops it): it names the message's queue id."""

    data_reply: bytes = b""

    def data(self, msg: Any) -> tuple[int, bytes]:
        code, reply = super().data(msg)
        self.data_reply = reply
        return code, reply


class _SMTPSSL(_SMTP, smtplib.SMTP_SSL):
    pass


def queue_id(reply: bytes) -> str | None:
    """The queue id in an answer to DATA (:data:`_QUEUE_ID`); None when it names none."""
    match = _QUEUE_ID.search(reply.decode("utf-8", "replace"))
    return next((g for g in match.groups() if g), None) if match else None


def message_id(notification_id: str, address: str, domain: str) -> str:
    """The same Message-ID for every copy of one notification to one address.

    A worker killed after the SMTP server took a message but before its receipt was written sends it
    again (SMTP cannot be asked whether it arrived); with the same Message-ID, mail stores and clients
    treat the second copy as the message they already have. (So not ``email.utils.make_msgid``,
    which is random; the domain is the sender's, as it suggests.)
    """
    digest = hashlib.sha256(address.encode()).hexdigest()[:16]
    return f"<{notification_id}.{digest}@{domain or 'notifier.invalid'}>"


def _by_code(code: int, message: str) -> DeliveryError:
    return RetryableError(message) if 400 <= code < 500 else PermanentError(message)
