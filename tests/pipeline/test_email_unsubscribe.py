"""End to end: a templated send (type and data only) through real workers becomes an email in the
user's language with one-click unsubscribe headers (received by the SMTP peer), the mail provider's
POST to that link at the real gateway turns the type's email off, and the next send of that type is
not emailed."""

from __future__ import annotations

from collections.abc import Callable
from email.message import EmailMessage

import httpx

from notifier import send_notification
from notifier.state.inbox import Inbox
from notifier.state.preferences import PreferenceStore
from tests.peers.smtp import SmtpPeer
from tests.support.gateway_support import Gateway, token
from tests.support.helpers import ROOT, Worker, own_broker_env, uid, wait_for
from tests.support.processes import free_port


def emails(smtp: SmtpPeer, notification_id: str) -> list[EmailMessage]:
    return [m for m in smtp.messages if m["X-Notification-Id"] == notification_id]


def test_one_click_unsubscribe_turns_that_types_email_off(settings_env: Callable[[dict[str, str]], None],
                                                          worker_factory: Callable[..., Worker],
                                                          smtp: SmtpPeer) -> None:
    port = free_port()
    env = {**own_broker_env(), **smtp.env(), "NOTIFIER_PUBLIC_URL": f"http://127.0.0.1:{port}",
           "NOTIFIER_TEMPLATES_DIR": str(ROOT / "tests" / "support" / "templates"),
           "NOTIFIER_SMTP_FROM_BY_TYPE": "comment=Comments Team <comments@mail.notifier.test>"}
    settings_env(env)
    worker = worker_factory(env)
    gateway = Gateway(env, port=port).wait_ready()
    try:
        user = uid()
        address = f"{user}@example.test"
        PreferenceStore().set(user, {"email": address, "name": "Ada Lovelace", "locale": "de"})
        comment = {"type": "comment", "data": {"text": "Sieht gut aus", "actor": {"name": "Bob"},
                                               "posted_at": "2026-12-01T09:30:00Z"},
                   "channels": ["email", "realtime"]}

        first = send_notification.delay(user, comment)
        [msg] = wait_for(lambda: emails(smtp, first.id), timeout=20, message="the first comment's email")
        assert msg["From"] == "Comments Team <comments@mail.notifier.test>"
        assert msg["To"] == f"Ada Lovelace <{address}>"
        assert msg["Message-ID"].endswith("@mail.notifier.test>") and msg["Date"]
        assert msg["Subject"] == "Hallo Ada Lovelace: 1 neuer Kommentar"
        assert msg.get_content_type() == "multipart/alternative"
        assert "Bob hat kommentiert: Sieht gut aus" in msg.get_body(("plain",)).get_content()
        assert "Bob hat kommentiert" in msg.get_body(("html",)).get_content()
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        header = msg["List-Unsubscribe"]
        assert header.startswith(f"<http://127.0.0.1:{port}/v1/unsubscribe/") and header.endswith(">")
        link = header[1:-1]

        with httpx.Client(timeout=10) as browser:  # a scanner or a person opening the link: nothing changes
            page = browser.get(link)
        assert page.status_code == 200 and '<form method="post">' in page.text
        assert page.headers["referrer-policy"] == "no-referrer"
        assert PreferenceStore().get(user).channel_enabled("email", "comment")

        for _ in range(2):  # as a mail provider sends it (RFC 8058), twice: the second changes nothing
            with httpx.Client(timeout=10) as provider:
                answer = provider.post(link, content=b"List-Unsubscribe=One-Click",
                                       headers={"Content-Type": "application/x-www-form-urlencoded"})
            assert answer.status_code == 200, answer.text
            assert answer.json() == {"unsubscribed": True, "type": "comment", "channel": "email"}
        with gateway.client(token(user)) as http:
            prefs = http.get("/v1/preferences").json()
        assert prefs["type_channels"] == {"comment": {"email": False}}
        assert prefs["email"] == address and prefs["name"] == "Ada Lovelace", "nothing else changed"

        second = send_notification.delay(user, {**comment, "data": {**comment["data"], "text": "Noch einer"}})
        order = send_notification.delay(user, {"type": "order_update", "title": "Shipped", "channels": ["email"]})
        wait_for(lambda: Inbox().get(user, second.id), timeout=20, message="the second comment in the inbox")
        wait_for(lambda: emails(smtp, order.id), timeout=20, message="the later order email (other types still mail)")
        worker.wait_finished(second.id, order.id)
        assert emails(smtp, second.id) == [], "the unsubscribed type was emailed again"
    finally:
        gateway.stop()
