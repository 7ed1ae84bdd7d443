"""The SMTP queue id (the ``sent`` event's provider id) read from the answers real servers give to DATA."""

from __future__ import annotations

import pytest

from notifier.channels.email import queue_id


@pytest.mark.parametrize(("reply", "expected"), [
    (b"2.0.0 Ok: queued as 4F2D81A3B", "4F2D81A3B"),                   # Postfix
    (b"OK id=1uXyZ7-000abc-De", "1uXyZ7-000abc-De"),                   # Exim
    (b"2.0.0 4AB12cd34 Message accepted for delivery", "4AB12cd34"),   # Sendmail
    (b"Message accepted", None),                                       # names none
    (b"2.0.0 OK  1700000000 a1-20020a05600c gsmtp", None),             # Gmail: no queue id given
])
def test_queue_id_from_the_servers_answer(reply: bytes, expected: str | None) -> None:
    assert queue_id(reply) == expected
