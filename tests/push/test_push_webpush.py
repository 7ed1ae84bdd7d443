"""Web push end to end: send -> router -> web push task -> a push service that decrypts like the browser."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from py_vapid import Vapid

from notifier import send_notification
from notifier.channels.base import Delivery
from notifier.channels.webpush import WebPushChannel, private_key, public_key
from notifier.config import Settings
from notifier.errors import PermanentError
from notifier.models import Notification
from notifier.pipeline.producer import producer_app
from notifier.pipeline.queues import deliver_task
from notifier.state.deadletters import DeadLetters
from notifier.state.devices import Devices
from tests.peers.broker import Isolated, isolated, task_summary
from tests.peers.webpush import WebPushPeer
from tests.support.helpers import Worker, uid, wait_for


def key_pair() -> Vapid:
    pair = Vapid()
    pair.generate_keys()
    return pair


VAPID = key_pair()


def vapid_env(pair: Vapid = VAPID) -> dict[str, str]:
    return {"NOTIFIER_VAPID_PRIVATE_KEY": private_key(pair), "NOTIFIER_VAPID_PUBLIC_KEY": public_key(pair),
            "NOTIFIER_VAPID_SUBJECT": "mailto:push@notifier.test"}


@pytest.fixture(scope="module")
def push() -> Iterator[WebPushPeer]:
    peer = WebPushPeer(public_key(VAPID)).start()
    yield peer
    peer.stop()


@pytest.fixture(scope="module")
def stack() -> Iterator[Isolated]:
    yield from isolated(vapid_env())


@pytest.fixture(scope="module")
def worker(stack: Isolated) -> Worker:
    return stack.worker({**vapid_env(), "NOTIFIER_RETRY_BACKOFF_MAX_SECONDS": "3"}, "router,realtime,webpush")


def register(user: str, *subscriptions: dict[str, Any]) -> list[str]:
    return [Devices().register(user, {"platform": "webpush", "subscription": s}).id for s in subscriptions]


def note(**extra: object) -> dict[str, object]:
    return {"type": "order_update", "title": "Order Shipped", "body": "Your order #12345 has shipped",
            "data": {"order_id": "12345"}, "channels": ["webpush"], **extra}


def dead_letters(user: str) -> list[dict]:
    return [e for e in DeadLetters().list(1000) if user in json.dumps(e["args"])]


def test_the_browser_can_read_each_push(worker: Worker, push: WebPushPeer) -> None:
    user, subs = uid(), [push.subscribe(), push.subscribe()]
    register(user, *subs)
    refused = len(push.refusals)
    sent = send_notification.delay(user, note(priority="high", ttl=900, collapse_key="order-12345",
                                              action_url="/orders/12345"))
    for s in subs:
        wait_for(lambda: push.to(s), message="push delivery")
    for s in subs:
        [got] = push.to(s)
        shown = got.json
        assert (shown["id"], shown["title"], shown["body"]) == (sent.id, "Order Shipped", "Your order #12345 has shipped")
        assert shown["data"] == {"order_id": "12345"} and shown["action_url"] == "/orders/12345"
        assert got.headers["urgency"] == "high" and got.headers["topic"] == "order-12345"
        assert 800 <= int(got.headers["ttl"]) <= 900
        assert got.claims["aud"] == push.origin and got.claims["sub"] == "mailto:push@notifier.test"
    assert len(push.refusals) == refused


def test_vapid_claims_follow_each_push_service(worker: Worker, push: WebPushPeer) -> None:
    """pywebpush writes ``aud`` into the claims it is given: a shared dict would send one service's
    audience to the next."""
    other = WebPushPeer(public_key(VAPID)).start()
    try:
        user, here, there = uid(), push.subscribe(), other.subscribe()
        register(user, here, there)
        send_notification.delay(user, note())
        wait_for(lambda: push.to(here) and other.to(there), message="pushes to two services")
        assert push.to(here)[0].claims["aud"] == push.origin
        assert other.to(there)[0].claims["aud"] == other.origin
    finally:
        other.stop()


def test_expired_subscriptions_are_pruned(worker: Worker, push: WebPushPeer) -> None:
    user, (good, gone, missing) = uid(), (push.subscribe(), push.subscribe(), push.subscribe())
    ids = register(user, good, gone, missing)
    push.fail(gone, "gone")
    push.fail(missing, "not_found")
    send_notification.delay(user, note())
    wait_for(lambda: [d.id for d in Devices().list(user)] == ids[:1], message="pruned devices")
    wait_for(lambda: push.to(good), message="push to the live subscription")
    assert len(push.attempts(gone)) == 1 and len(push.attempts(missing)) == 1
    assert dead_letters(user) == []


def test_only_the_failing_subscription_is_retried_after_retry_after(worker: Worker, push: WebPushPeer) -> None:
    user, (a, b, c) = uid(), (push.subscribe(), push.subscribe(), push.subscribe())
    register(user, a, b, c)
    push.fail(b, ("too_many", 2))
    push.fail(c, "unavailable")
    send_notification.delay(user, note())
    for s in (a, b, c):
        wait_for(lambda: push.to(s), timeout=15, message="push delivery")
    assert [len(push.to(s)) for s in (a, b, c)] == [1, 1, 1]
    assert [len(push.attempts(s)) for s in (a, b, c)] == [1, 2, 2]
    first, second = push.attempts(b)
    assert second - first >= 2.0, "the retry waited less than the push service's Retry-After"
    assert dead_letters(user) == []


def test_refused_vapid_key_is_dead_lettered_with_the_fix(worker: Worker) -> None:
    """A browser that subscribed with another applicationServerKey: the push service answers 403."""
    elsewhere = WebPushPeer(public_key(key_pair())).start()
    try:
        user, s = uid(), elsewhere.subscribe()
        register(user, s)
        send_notification.delay(user, note())
        [entry] = wait_for(lambda: dead_letters(user), message="dead letter")
    finally:
        elsewhere.stop()
    assert entry["error_type"] == "PermanentError"
    assert "403" in entry["error"] and "NOTIFIER_VAPID_PRIVATE_KEY" in entry["error"]
    assert len(Devices().list(user)) == 1


def test_oversized_data_is_dead_lettered_and_a_long_body_is_cut(worker: Worker, push: WebPushPeer) -> None:
    user, s = uid(), push.subscribe()
    register(user, s)
    refused = len(push.refusals)
    send_notification.delay(user, note(data={"blob": "y" * 3950}))
    [entry] = wait_for(lambda: dead_letters(user), message="dead letter")
    assert "webpush payload is" in entry["error"] and "limit is 3993" in entry["error"]
    assert push.attempts(s) == [] and len(push.refusals) == refused
    long = send_notification.delay(user, note(body="é" * 4000))  # 8000 bytes: cut to fit one record
    [got] = wait_for(lambda: push.to(s), message="the cut push")
    assert got.json["id"] == long.id and len(got.plaintext) <= 3993
    assert got.json["body"].endswith("é…") and set(got.json["body"][:-1]) == {"é"}


def test_redelivered_or_replayed_task_does_not_push_twice(worker: Worker, push: WebPushPeer) -> None:
    user, subs = uid(), [push.subscribe(), push.subscribe()]
    register(user, *subs)
    n = Notification(**note()).to_dict()
    args = [{n["id"]: n}, [[user, n["id"], "*"]]]
    first = producer_app().send_task(deliver_task("webpush"), args=args, queue="webpush")
    assert wait_for(lambda: task_summary(worker, first.id), message="first delivery")["delivered"] == 2
    again = producer_app().send_task(deliver_task("webpush"), args=args, queue="webpush")
    assert wait_for(lambda: task_summary(worker, again.id), message="redelivery")["already"] == 2
    assert [len(push.to(s)) for s in subs] == [1, 1]


def test_vapid_config_errors_name_the_setting(stack: Isolated, push: WebPushPeer) -> None:
    user, s = uid(), push.subscribe()
    [device] = register(user, s)
    d = Delivery(user, Notification(**note()), device)

    def error(**settings: str) -> PermanentError:
        [outcome] = WebPushChannel(Settings(**settings)).send([d])
        assert isinstance(outcome.error, PermanentError)
        return outcome.error

    assert "set NOTIFIER_VAPID_PRIVATE_KEY" in str(error(vapid_private_key=""))
    assert "is not a VAPID private key" in str(error(vapid_private_key="bm90IGEga2V5"))
    mismatch = error(vapid_private_key=private_key(VAPID), vapid_public_key=public_key(key_pair()))
    assert "does not belong to NOTIFIER_VAPID_PRIVATE_KEY" in str(mismatch)
    assert "NOTIFIER_VAPID_SUBJECT" in str(error(vapid_subject="ops"))
    assert push.to(s) == []


def test_worker_logged_no_unexpected_errors(worker: Worker) -> None:
    assert "Traceback" not in worker.log() and "ERROR" not in worker.log(), worker.log()[-3000:]
