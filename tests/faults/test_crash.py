"""A worker killed mid-delivery loses nothing and sends nothing twice."""

from __future__ import annotations

import time
from collections.abc import Callable

from notifier import send_notification
from notifier.pipeline.producer import producer_app
from notifier.pipeline.queues import deliver_task
from notifier.state.deadletters import DeadLetters
from notifier.state.preferences import PreferenceStore
from tests.peers.smtp import SmtpPeer
from tests.support.helpers import Worker, own_broker_env, uid, use_env, wait_for, wait_idle


def test_killed_worker_task_is_redelivered_and_delivered_once(worker_factory: Callable[..., Worker],
                                                              smtp: SmtpPeer) -> None:
    env = {**own_broker_env(), **smtp.env(), "NOTIFIER_VISIBILITY_TIMEOUT_SECONDS": "5", "NOTIFIER_CLAIM_SECONDS": "2",
           "NOTIFIER_COUNTDOWN_MAX_SECONDS": "2"}
    with use_env(env):
        first = worker_factory(env, queues="email")
        user = uid()
        address = f"{user}@example.test"
        PreferenceStore().set(user, {"email": address})
        smtp.handler.slow[address] = 3.0
        send_notification.delay(user, {"type": "alert", "title": "mid-send", "channels": ["email"]})
        router = worker_factory(env, queues="router")
        wait_for(lambda: smtp.attempts(address) == 1, message="first attempt reaches the SMTP server")
        first.kill()
        router.stop()
        smtp.handler.slow.pop(address)
        time.sleep(0.5)
        assert smtp.to(address) == [], "the killed worker must not have completed the send"

        second = worker_factory(env, queues="email")
        wait_for(lambda: smtp.to(address), timeout=30, message="redelivered email")
        wait_idle(second)
        assert len(smtp.to(address)) == 1


def test_redelivered_delivery_task_does_not_send_twice(worker: Worker, smtp: SmtpPeer) -> None:
    user = uid()
    address = f"{user}@example.test"
    notification = {"id": uid("n").replace("-", ""), "type": "alert", "title": "once"}
    args = [{notification["id"]: notification}, [[user, notification["id"], address]]]
    for _ in range(3):
        producer_app().send_task(deliver_task("email"), args=args, queue="email")
    wait_for(lambda: smtp.to(address), message="email")
    wait_idle(worker)
    assert len(smtp.to(address)) == 1
    assert not [e for e in DeadLetters().list(1000) if notification["id"] in str(e["args"])]
