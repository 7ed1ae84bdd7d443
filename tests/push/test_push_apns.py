"""APNs end to end: send -> router -> APNs task -> a fake APNs over HTTP/2 + TLS, through a real worker."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from notifier import send_notification
from notifier.channels.apns import APNsChannel
from notifier.channels.base import Delivery
from notifier.config import Settings
from notifier.errors import PermanentError, RetryableError
from notifier.models import Notification
from notifier.pipeline.producer import producer_app
from notifier.pipeline.queues import deliver_task
from notifier.state.deadletters import DeadLetters
from notifier.state.devices import Devices
from notifier.state.inbox import Inbox
from tests.peers.apns import ApnsPeer, make_p8
from tests.peers.broker import Isolated, isolated, task_summary
from tests.support.helpers import Worker, uid, wait_for


@pytest.fixture(scope="module")
def apns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApnsPeer]:
    peer = ApnsPeer(tmp_path_factory.mktemp("apns")).start()
    yield peer
    peer.stop()


@pytest.fixture(scope="module")
def stack(apns: ApnsPeer) -> Iterator[Isolated]:
    yield from isolated(apns.env())


@pytest.fixture(scope="module")
def worker(stack: Isolated, apns: ApnsPeer) -> Worker:
    """One pool process, so "one connection per process" is visible as one connection."""
    return stack.worker({**apns.env(), "NOTIFIER_RETRY_BACKOFF_MAX_SECONDS": "3"}, "router,realtime,apns", concurrency=1)


def token() -> str:
    return secrets.token_hex(32)


def register(user: str, *tokens: str, topic: str | None = None) -> list[str]:
    return [Devices().register(user, {"platform": "apns", "token": t, "topic": topic}).id for t in tokens]


def note(**extra: object) -> dict[str, object]:
    return {"type": "order_update", "title": "Order Shipped", "body": "Your order #12345 has shipped",
            "data": {"order_id": "12345"}, "channels": ["apns"], **extra}


def dead_letters(user: str) -> list[dict]:
    return [e for e in DeadLetters().list(1000) if user in json.dumps(e["args"])]


def test_each_device_gets_the_alert_with_badge_and_headers(worker: Worker, apns: ApnsPeer) -> None:
    user, tokens = uid(), [token(), token()]
    register(user, *tokens)
    refused = len(apns.refusals)
    for i in range(2):
        Inbox().append(user, Notification(type="older", title=f"older {i}").to_dict(), publish=False)
    sent = send_notification.delay(user, note(priority="high", collapse_key="order-12345", ttl=600,
                                              action_url="/orders/12345"))
    for t in tokens:
        wait_for(lambda: apns.to(t), message=f"APNs push to {t[:8]}")
    for t in tokens:
        [got] = apns.to(t)
        assert got.alpn == "h2"
        assert got.headers["apns-topic"] == apns.topic
        assert got.headers["apns-push-type"] == "alert" and got.headers["apns-priority"] == "10"
        assert got.headers["apns-collapse-id"] == "order-12345"
        assert got.payload == {
            "aps": {"alert": {"title": "Order Shipped", "body": "Your order #12345 has shipped"}, "badge": 2,
                    "sound": "default", "thread-id": "order_update", "interruption-level": "time-sensitive"},
            "id": sent.id, "type": "order_update", "url": "/orders/12345", "data": {"order_id": "12345"}}
    assert len(apns.refusals) == refused


def test_critical_priority_and_per_device_topic(worker: Worker, apns: ApnsPeer) -> None:
    apns.state.topics.add("com.example.other")
    user, (t1, t2) = uid(), (token(), token())
    register(user, t1)
    register(user, t2, topic="com.example.other")
    send_notification.delay(user, note(priority="critical"))
    for t in (t1, t2):
        wait_for(lambda: apns.to(t), message=f"APNs push to {t[:8]}")
    assert apns.to(t1)[0].headers["apns-topic"] == apns.topic
    assert apns.to(t2)[0].headers["apns-topic"] == "com.example.other"
    aps = apns.to(t1)[0].payload["aps"]
    assert aps["interruption-level"] == "critical" and aps["sound"]["critical"] == 1


def test_one_persistent_connection_for_many_messages(worker: Worker, apns: ApnsPeer) -> None:
    user, t = uid(), token()
    register(user, t)
    for i in range(4):
        send_notification.delay(user, note(title=f"message {i}"))
    wait_for(lambda: len(apns.to(t)) == 4, message="four pushes")
    assert len({r.connection for r in apns.to(t)}) == 1
    assert apns.connections == 1, "the worker process should reuse its one HTTP/2 connection"


def test_dead_tokens_are_pruned_and_not_retried(worker: Worker, apns: ApnsPeer) -> None:
    user, (good, gone, bad) = uid(), (token(), token(), token())
    ids = register(user, good, gone, bad)
    apns.refuse(gone, "gone")
    apns.refuse(bad, "bad_token")
    send_notification.delay(user, note())
    wait_for(lambda: [d.id for d in Devices().list(user)] == ids[:1], message="pruned devices")
    wait_for(lambda: apns.to(good), message="push to the good device")
    assert len(apns.attempts(gone)) == 1 and len(apns.attempts(bad)) == 1
    assert dead_letters(user) == []


def test_only_the_failing_device_is_retried_after_retry_after(worker: Worker, apns: ApnsPeer) -> None:
    user, (a, b, c) = uid(), (token(), token(), token())
    register(user, a, b, c)
    apns.fail(b, ("too_many", 2))
    apns.fail(c, "unavailable")
    send_notification.delay(user, note())
    for t in (a, b, c):
        wait_for(lambda: apns.to(t), timeout=15, message=f"push to {t[:8]}")
    assert [len(apns.to(t)) for t in (a, b, c)] == [1, 1, 1]
    assert [len(apns.attempts(t)) for t in (a, b, c)] == [1, 2, 2]
    first, second = apns.attempts(b)
    assert second - first >= 2.0, "the retry waited less than the Retry-After APNs sent"
    assert dead_letters(user) == []


def test_an_expired_provider_token_is_renewed_before_the_retry(worker: Worker, apns: ApnsPeer) -> None:
    """After 403 ExpiredProviderToken the peer refuses that JWT for good: only a newly signed one gets
    the push through."""
    user, t = uid(), token()
    register(user, t)
    apns.fail(t, "expired_provider_token")
    send_notification.delay(user, note())
    wait_for(lambda: apns.to(t), timeout=15, message="the retried push delivered")
    stale, *retries = apns.jwts(t)
    assert retries and all(jwt != stale for jwt in retries), "the retry resent the expired provider token"
    assert apns.to(t)[0].headers["authorization"] == f"bearer {retries[-1]}"
    assert dead_letters(user) == []


def test_wrong_topic_is_dead_lettered_with_the_fix(worker: Worker, apns: ApnsPeer) -> None:
    user, t = uid(), token()
    register(user, t, topic="com.example.unknown")
    send_notification.delay(user, note())
    [entry] = wait_for(lambda: dead_letters(user), message="dead letter")
    assert entry["error_type"] == "PermanentError"
    assert "TopicDisallowed" in entry["error"] and "NOTIFIER_APNS_TOPIC" in entry["error"]
    assert len(Devices().list(user)) == 1


def test_redelivered_or_replayed_task_does_not_push_twice(worker: Worker, apns: ApnsPeer) -> None:
    user, tokens = uid(), [token(), token()]
    register(user, *tokens)
    n = Notification(**note()).to_dict()
    args = [{n["id"]: n}, [[user, n["id"], "*"]]]
    first = producer_app().send_task(deliver_task("apns"), args=args, queue="apns")
    assert wait_for(lambda: task_summary(worker, first.id), message="first delivery")["delivered"] == 2
    again = producer_app().send_task(deliver_task("apns"), args=args, queue="apns")
    assert wait_for(lambda: task_summary(worker, again.id), message="redelivery")["already"] == 2
    assert [len(apns.to(t)) for t in tokens] == [1, 1]


def test_auth_and_config_errors_name_the_setting(stack: Isolated, apns: ApnsPeer, tmp_path: Path) -> None:
    user, t = uid(), token()
    [device] = register(user, t)
    d = Delivery(user, Notification(**note()), device)
    env = {key[len("NOTIFIER_"):].lower(): value for key, value in apns.env().items()}

    def error(**changes: str) -> Exception:
        channel = APNsChannel(Settings(**{**env, **changes}))
        try:
            [outcome] = channel.send([d])
        finally:
            channel.close()
        assert outcome.error is not None
        return outcome.error

    missing = error(apns_key_id="", apns_team_id="")
    assert isinstance(missing, PermanentError)
    assert "set NOTIFIER_APNS_KEY_ID, NOTIFIER_APNS_TEAM_ID" in str(missing)
    make_p8(tmp_path / "other.p8")
    wrong_key = error(apns_key_file=str(tmp_path / "other.p8"))
    assert isinstance(wrong_key, PermanentError)
    assert "InvalidProviderToken" in str(wrong_key) and "NOTIFIER_APNS_KEY_FILE" in str(wrong_key)
    (tmp_path / "rsa.p8").write_text("not a key")
    assert "is not a PEM private key" in str(error(apns_key_file=str(tmp_path / "rsa.p8")))
    untrusted = error(apns_ca_file="")
    assert isinstance(untrusted, RetryableError) and "NOTIFIER_APNS_CA_FILE" in str(untrusted)
    assert apns.to(t) == []


def test_worker_logged_no_unexpected_errors(worker: Worker) -> None:
    assert "Traceback" not in worker.log() and "ERROR" not in worker.log(), worker.log()[-3000:]
