"""Email headers (From per type, To with the user's name, Message-ID, List-Unsubscribe), the signed
unsubscribe token, and the settings and preferences behind them; pure, no SMTP server."""

from __future__ import annotations

import time
from collections.abc import Callable
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import parsedate_to_datetime

import pytest

from notifier import tokens
from notifier.channels.base import Delivery
from notifier.channels.email import Email
from notifier.config import get_settings
from notifier.errors import ConfigError, InvalidLink, InvalidToken, ValidationError
from notifier.models import Notification, Preferences, validate

PUBLIC = {"NOTIFIER_PUBLIC_URL": "https://notify.example.com/base/",
          "NOTIFIER_SMTP_FROM": "Alerts <alerts@example.com>",
          "NOTIFIER_SMTP_FROM_BY_TYPE": 'comment="Comments, Team" <comments@mail.example.com>,'
                                        'billing=bills@pay.example'}


def email_for(ntype: str = "comment", name: str | None = None, title: str = "New comment") -> bytes:
    n = Notification(type=ntype, title=title, body="Someone replied", action_url="https://app.test/c/1")
    return Email().build_payload(Delivery("user-1", n, "ada@example.com"), name).as_bytes()


def parsed(raw: bytes) -> EmailMessage:
    return message_from_bytes(raw, policy=policy.default)


def test_headers_name_the_sender_of_the_type_and_the_user(settings_env: Callable[[dict[str, str]], None]) -> None:
    settings_env(PUBLIC)
    msg = parsed(email_for(name='Lovelace, Ada "Countess"'))
    assert msg["From"] == '"Comments, Team" <comments@mail.example.com>'
    assert msg["To"].addresses[0].display_name == 'Lovelace, Ada "Countess"'
    assert msg["To"].addresses[0].addr_spec == "ada@example.com"
    assert msg["Message-ID"].endswith("@mail.example.com>")
    assert abs(parsedate_to_datetime(msg["Date"]).timestamp() - time.time()) < 60
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    other = parsed(email_for("order_update"))
    assert other["From"] == "Alerts <alerts@example.com>" and other["To"] == "ada@example.com"
    assert other["Message-ID"].endswith("@example.com>")
    assert parsed(email_for("billing"))["From"] == "bills@pay.example"


def test_a_name_or_title_cannot_add_a_header(settings_env: Callable[[dict[str, str]], None]) -> None:
    settings_env(PUBLIC)
    raw = email_for(name="Ünïcode Name", title="Hi\r\nBcc: evil@example.com")
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert b"\r\nBcc:" not in head and b"\nBcc:" not in head
    assert parsed(raw)["To"].addresses[0].display_name == "Ünïcode Name"
    for bad in ["Ada\r\nBcc: evil@example.com", "Ada\nBcc: x", "x" * 101, "   "]:
        with pytest.raises(ValidationError, match="name"):
            validate(Preferences, {"name": bad})
    assert validate(Preferences, {"name": "  Ada  "}).name == "Ada"


def test_list_unsubscribe_is_a_signed_https_link_for_this_type(settings_env: Callable[[dict[str, str]], None]) -> None:
    settings_env(PUBLIC)
    raw = email_for()
    msg = parsed(raw)
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    header = msg["List-Unsubscribe"]
    assert header.startswith("<https://notify.example.com/base/v1/unsubscribe/") and header.endswith(">")
    assert f"List-Unsubscribe: {header}\r\n".encode() in raw, "the link is one unbroken line"
    link = tokens.verify_unsubscribe(header[1:-1].rsplit("/", 1)[1])
    assert (link.user_id, link.type, link.channel) == ("user-1", "comment", "email")


def test_without_a_public_url_no_unsubscribe_headers() -> None:
    assert get_settings().public_url == ""
    msg = parsed(email_for())
    assert msg["List-Unsubscribe"] is None and msg["List-Unsubscribe-Post"] is None


def test_unsubscribe_and_login_tokens_are_never_taken_for_each_other() -> None:
    link = tokens.issue_unsubscribe("user-1", "comment")
    with pytest.raises(InvalidToken, match="unsubscribe"):
        tokens.verify(link)
    with pytest.raises(InvalidLink, match="another purpose"):
        tokens.verify_unsubscribe(tokens.issue("user-1", 600))
    head, _, signature = link.split(".")
    other = tokens.issue_unsubscribe("user-2", "comment").split(".")[1]
    for bad in [f"{head}.{other}.{signature}", link[:-2] + ("AA" if link[-2:] != "AA" else "BB"), "x.y", "",
                tokens.issue_unsubscribe("user-1", "comment", key=b"k" * 40)]:
        with pytest.raises(InvalidLink):
            tokens.verify_unsubscribe(bad)
    years_old = tokens.issue_unsubscribe("user-1", "comment", now=time.time() - 5 * 366 * 86400)
    assert tokens.verify_unsubscribe(years_old).type == "comment", "links keep working (no expiry)"


@pytest.mark.parametrize(("env", "says"), [
    ({"NOTIFIER_PUBLIC_URL": "http://notify.example.com"}, "must use https"),
    ({"NOTIFIER_PUBLIC_URL": "notify.example.com"}, "not an https URL"),
    ({"NOTIFIER_PUBLIC_URL": "https://notify.example.com/?a=1"}, "no query"),
    ({"NOTIFIER_PUBLIC_URL": "https://notify.example.com", "NOTIFIER_SECRET_KEY": ""}, "needs NOTIFIER_SECRET_KEY"),
    ({"NOTIFIER_SMTP_FROM": "Alerts\r\nBcc: x@example.com <a@example.com>"}, "control character"),
    ({"NOTIFIER_SMTP_FROM": "a@example.com, b@example.com"}, "not one email address"),
    ({"NOTIFIER_SMTP_FROM_BY_TYPE": "comment"}, "not TYPE=ADDRESS"),
    ({"NOTIFIER_SMTP_FROM_BY_TYPE": "comment=a@x.example,comment=b@x.example"}, "named twice"),
    ({"NOTIFIER_SMTP_FROM_BY_TYPE": "comment=Comments\nBcc: y@x.example <a@x.example>"}, "control character"),
])
def test_bad_email_settings_stop_the_start_naming_the_variable(monkeypatch: pytest.MonkeyPatch,
                                                               env: dict[str, str], says: str) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    try:
        with pytest.raises(ConfigError, match=says) as info:
            get_settings()
        assert next(iter(env)) in str(info.value)
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000", "http://localhost:8000/", "http://[::1]:8000",
                                 "https://notify.example.com"])
def test_loopback_may_use_http(settings_env: Callable[[dict[str, str]], None], url: str) -> None:
    settings_env({"NOTIFIER_PUBLIC_URL": url})
    assert get_settings().unsubscribe_url("T") == url.rstrip("/") + "/v1/unsubscribe/T"


def test_a_type_can_have_one_channel_off() -> None:
    p = validate(Preferences, {"type_channels": {"comment": {"email": False}}})
    assert not p.channel_enabled("email", "comment")
    assert p.channel_enabled("email", "order_update") and p.channel_enabled("realtime", "comment")
    off = validate(Preferences, {"channels": {"email": False}, "type_channels": {"comment": {"email": True}}})
    assert not off.channel_enabled("email", "comment"), "the channel's own switch wins"
    assert "type_channels" not in Preferences().to_dict() and "name" not in Preferences().to_dict()
    with pytest.raises(ValidationError, match="slug"):
        validate(Preferences, {"type_channels": {"Bad Type": {"email": False}}})
    with pytest.raises(ValidationError, match="unknown channel"):
        validate(Preferences, {"type_channels": {"comment": {"pigeon": False}}})
