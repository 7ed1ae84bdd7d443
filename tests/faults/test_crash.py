"""A worker killed mid-delivery loses nothing and sends nothing twice."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Callable

import pytest

from notifier import send_notification
from notifier.pipeline.backlog import _size
from notifier.pipeline.producer import producer_app
from notifier.pipeline.queues import ROUTER_QUEUE, deliver_task
from notifier.state.deadletters import DeadLetters
from notifier.state.inbox import Inbox
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


@pytest.mark.timeout(180)
def test_a_worker_killed_mid_batch_loses_nothing_and_sends_nothing_twice(
        worker_factory: Callable[..., Worker], smtp: SmtpPeer) -> None:
    """A router task that took the sends waiting behind it (workers/take.py) is killed before it wrote
    them all: every send still arrives, once, in the inbox and by email."""
    env = {**own_broker_env(), **smtp.env(), "NOTIFIER_VISIBILITY_TIMEOUT_SECONDS": "5", "NOTIFIER_CLAIM_SECONDS": "2",
           "NOTIFIER_COUNTDOWN_MAX_SECONDS": "2", "NOTIFIER_PREFETCH_MULTIPLIER": "1",
           "NOTIFIER_RATE_LIMITS": "realtime=100000/60,email=100000/60,fcm=1/60,apns=1/60,webpush=1/60"}
    with use_env(env):
        users = [uid() for _ in range(20)]
        for user in users:
            PreferenceStore().set(user, {"email": f"{user}@example.test"})
        sent = {send_notification.delay(users[n % 20], {"type": "alert", "title": f"#{n}",
                                                         "channels": ["realtime", "email"]}).id: users[n % 20]
                for n in range(3000)}
        worker_factory(env, queues="email")
        router = worker_factory(env, queues="router,realtime", concurrency=1)

        def in_inbox() -> Counter[str]:
            ids: Counter[str] = Counter()
            for user in users:
                ids.update(item["id"] for item in Inbox().list(user, limit=200).items if item["id"] in sent)
            return ids

        def held() -> int:
            """Frozen, the sends the worker holds, neither waiting nor written: more than its one prefetched
            message (NOTIFIER_PREFETCH_MULTIPLIER=1, -c 1) means a taken batch, not yet written."""
            with producer_app().connection_for_read() as conn:
                waiting = _size(conn, ROUTER_QUEUE)
            return len(sent) - waiting - len(in_inbox())

        for _ in range(500):
            os.killpg(router.proc.pid, signal.SIGSTOP)
            if (holding := held()) > 2:
                router.kill()
                print(f"killed holding {holding} unwritten sends")
                break
            os.killpg(router.proc.pid, signal.SIGCONT)
            time.sleep(0.005)
        else:
            pytest.fail("never froze the worker in the middle of a batch")
        assert len(in_inbox()) < len(sent), "killed before the backlog was routed"

        second = worker_factory(env, queues="router,realtime")
        wait_for(lambda: len(in_inbox()) == len(sent), timeout=60, interval=0.5, message="every send in an inbox")
        wait_for(lambda: len(_mailed(smtp, sent)) == len(sent), timeout=60, interval=0.5, message="every email")
        wait_idle(second)
        assert [nid for nid, n in in_inbox().items() if n > 1] == [], "twice in an inbox"
        assert [nid for nid, n in _mailed(smtp, sent).items() if n > 1] == [], "mailed twice"


def _mailed(smtp: SmtpPeer, sent: dict[str, str]) -> Counter[str]:
    """How many times each sent notification was mailed."""
    return Counter(nid for m in list(smtp.messages) if (nid := str(m["X-Notification-Id"])) in sent)
