"""With ``NOTIFIER_DELIVERY_LOG`` off, a worker delivers as before and records no event."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from notifier import send_notification
from notifier.redis.store import get_keys, get_redis
from notifier.state.inbox import Inbox
from notifier.state.preferences import PreferenceStore
from tests.peers.smtp import SmtpPeer
from tests.support.helpers import Worker, private_env, start_worker, uid, wait_for, wait_idle


@pytest.fixture(scope="module")
def env(smtp: SmtpPeer) -> dict[str, str]:
    return {**private_env(), **smtp.env(), "NOTIFIER_DELIVERY_LOG": "false"}


@pytest.fixture(autouse=True)
def _use_env(env: dict[str, str], settings_env: object) -> None:
    settings_env(env)  # type: ignore[operator]


@pytest.fixture(scope="module")
def quiet_worker(env: dict[str, str]) -> Iterator[Worker]:
    w = start_worker(env, "router,realtime,email")
    yield w
    w.stop()


def test_log_off_records_nothing(quiet_worker: Worker, smtp: SmtpPeer) -> None:
    user = uid()
    address = f"{user}@example.test"
    PreferenceStore().set(user, {"email": address, "channels": {"fcm": False}})
    sent = send_notification.delay(user, {"type": "plain", "title": "Quiet", "channels": ["realtime", "email", "fcm"]})
    wait_for(lambda: smtp.to(address) and Inbox().get(user, sent.id), message="delivered on both channels")
    wait_idle(quiet_worker, sent.id)
    assert get_redis().xlen(get_keys().events()) == 0
