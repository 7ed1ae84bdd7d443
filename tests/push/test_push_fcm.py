"""FCM end to end: send -> router -> FCM task -> the fake FCM HTTP v1 server, through a real worker."""

from __future__ import annotations

import json
import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from notifier import send_notification
from notifier.channels.base import Delivery
from notifier.channels.fcm import FCMChannel
from notifier.channels.push import tls_context
from notifier.config import Settings
from notifier.errors import InvalidTarget, PermanentError
from notifier.models import Notification
from notifier.pipeline.producer import producer_app
from notifier.pipeline.queues import deliver_task
from notifier.state.deadletters import DeadLetters
from notifier.state.devices import Devices
from tests.peers.broker import Isolated, isolated, task_summary
from tests.peers.fcm import FcmPeer
from tests.support.helpers import Worker, uid, wait_for


@pytest.fixture(scope="module")
def credentials(fcm: FcmPeer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fcm.service_account(tmp_path_factory.mktemp("fcm") / "service-account.json")


@pytest.fixture(scope="module")
def stack(fcm: FcmPeer, credentials: Path) -> Iterator[Isolated]:
    yield from isolated(fcm.env(credentials))


@pytest.fixture(scope="module")
def worker(stack: Isolated, fcm: FcmPeer, credentials: Path) -> Worker:
    return stack.worker({**fcm.env(credentials), "NOTIFIER_RETRY_BACKOFF_MAX_SECONDS": "3"}, "router,realtime,fcm")


def token() -> str:
    return f"fcm-{uuid.uuid4().hex}:APA91b{uuid.uuid4().hex}"


def register(user: str, *tokens: str) -> list[str]:
    return [Devices().register(user, {"platform": "fcm", "token": t}).id for t in tokens]


def note(**extra: object) -> dict[str, object]:
    return {"type": "order_update", "title": "Order Shipped", "body": "Your order #12345 has shipped",
            "data": {"order_id": "12345", "items": 3}, "channels": ["fcm"], **extra}


def dead_letters(user: str) -> list[dict]:
    return [e for e in DeadLetters().list(1000) if user in json.dumps(e["args"])]


def test_each_device_gets_what_the_user_should_see(worker: Worker, fcm: FcmPeer) -> None:
    user, tokens = uid(), [token(), token()]
    register(user, *tokens)
    Devices().register(user, {"platform": "apns", "token": "ab" * 32})
    sent = send_notification.delay(user, note(priority="high", collapse_key="order-12345", ttl=3600,
                                              action_url="https://shop.test/orders/12345"))
    for t in tokens:
        wait_for(lambda: fcm.to(t), message=f"FCM push to {t[:12]}")
    for t in tokens:
        [got] = fcm.to(t)
        m = got.message
        assert m["token"] == t
        assert m["notification"] == {"title": "Order Shipped", "body": "Your order #12345 has shipped"}
        assert m["data"] == {"order_id": "12345", "items": "3", "notification_id": sent.id,
                             "notification_type": "order_update", "action_url": "https://shop.test/orders/12345"}
        assert m["android"]["priority"] == "HIGH" and m["android"]["collapse_key"] == "order-12345"
        assert 3500 <= int(m["android"]["ttl"][:-1]) <= 3600
        assert m["webpush"]["fcm_options"] == {"link": "https://shop.test/orders/12345"}
    assert fcm.problems == []
    assert fcm.state.token_requests <= 2, "one access token per worker process, not one per message"


def test_dead_tokens_are_pruned_and_not_retried(worker: Worker, fcm: FcmPeer) -> None:
    user, (good, gone, invalid) = uid(), (token(), token(), token())
    ids = register(user, good, gone, invalid)
    fcm.refuse(gone, "unregistered")
    fcm.refuse(invalid, "invalid_token")
    send_notification.delay(user, note())
    wait_for(lambda: [d.id for d in Devices().list(user)] == ids[:1], message="pruned devices")
    wait_for(lambda: fcm.to(good), message="push to the good device")
    assert len(fcm.attempts(gone)) == 1 and len(fcm.attempts(invalid)) == 1
    assert dead_letters(user) == []


def test_rejected_payload_is_dead_lettered_and_device_kept(worker: Worker, fcm: FcmPeer) -> None:
    user, t = uid(), token()
    register(user, t)
    fcm.refuse(t, "invalid_payload")
    send_notification.delay(user, note())
    [entry] = wait_for(lambda: dead_letters(user), message="dead letter")
    assert entry["error_type"] == "PermanentError" and "INVALID_ARGUMENT" in entry["error"]
    assert "message was rejected" in entry["error"]
    assert len(Devices().list(user)) == 1 and len(fcm.attempts(t)) == 1


def test_only_the_failing_device_is_retried_after_retry_after(worker: Worker, fcm: FcmPeer) -> None:
    user, (a, b, c) = uid(), (token(), token(), token())
    register(user, a, b, c)
    fcm.fail(b, ("quota", 2))
    fcm.fail(c, "unavailable", "unavailable")
    send_notification.delay(user, note())
    for t in (a, b, c):
        wait_for(lambda: fcm.to(t), timeout=15, message=f"push to {t[:12]}")
    assert [len(fcm.to(t)) for t in (a, b, c)] == [1, 1, 1]
    assert len(fcm.attempts(a)) == 1 and len(fcm.attempts(b)) == 2 and len(fcm.attempts(c)) == 3
    first, second = fcm.attempts(b)
    assert second - first >= 2.0, "the retry waited less than FCM's Retry-After"
    assert dead_letters(user) == []


def test_redelivered_or_replayed_task_does_not_push_twice(worker: Worker, fcm: FcmPeer) -> None:
    user, tokens = uid(), [token(), token()]
    ids = register(user, *tokens)
    n = Notification(**note()).to_dict()
    app = producer_app()
    first = app.send_task(deliver_task("fcm"), args=[{n["id"]: n}, [[user, n["id"], "*"]]], queue="fcm")
    assert wait_for(lambda: task_summary(worker, first.id), message="first delivery")["delivered"] == 2
    again = app.send_task(deliver_task("fcm"), args=[{n["id"]: n}, [[user, n["id"], "*"]]], queue="fcm")
    assert wait_for(lambda: task_summary(worker, again.id), message="redelivery")["already"] == 2
    retry = app.send_task(deliver_task("fcm"), args=[{n["id"]: n}, [[user, n["id"], ids[1]]]], queue="fcm")
    assert wait_for(lambda: task_summary(worker, retry.id), message="retry")["already"] == 1
    assert [len(fcm.to(t)) for t in tokens] == [1, 1]


def test_refused_credentials_dead_letter_with_the_fix(worker: Worker, fcm: FcmPeer) -> None:
    user, t = uid(), token()
    register(user, t)
    fcm.reject_credentials()
    revoked = set(fcm.state.access_tokens)
    fcm.state.access_tokens.clear()
    try:
        send_notification.delay(user, note())
        [entry] = wait_for(lambda: dead_letters(user), message="dead letter")
    finally:
        fcm.reject_credentials(False)
    assert entry["error_type"] == "PermanentError"
    assert "invalid_grant" in entry["error"] and "NOTIFIER_FCM_CREDENTIALS" in entry["error"]
    assert fcm.to(t) == [] and revoked


def test_config_errors_name_the_setting(stack: Isolated, fcm: FcmPeer, credentials: Path,
                                        tmp_path: Path) -> None:
    user, t = uid(), token()
    [device] = register(user, t)
    d = Delivery(user, Notification(**note()), device)

    def error(**settings: str) -> PermanentError:
        given = {"fcm_endpoint": fcm.url, "fcm_credentials": "", "fcm_project_id": "", **settings}
        [outcome] = FCMChannel(Settings(**given)).send([d])
        assert isinstance(outcome.error, PermanentError)
        return outcome.error

    assert "set NOTIFIER_FCM_CREDENTIALS" in str(error())
    assert "cannot read NOTIFIER_FCM_CREDENTIALS" in str(error(fcm_credentials=str(tmp_path / "missing.json")))
    (tmp_path / "bad.json").write_text("{not json")
    assert "is not JSON" in str(error(fcm_credentials=str(tmp_path / "bad.json")))
    wrong = error(fcm_credentials=str(credentials), fcm_project_id="someone-elses-project")
    assert "403" in str(wrong) and "NOTIFIER_FCM_PROJECT_ID" in str(wrong)
    [ok] = FCMChannel(Settings(fcm_endpoint=fcm.url, fcm_credentials=str(credentials))).send([d])
    assert ok.ok and len(fcm.to(t)) == 1
    gone = Delivery(user, d.notification, "fcm-" + "0" * 32)
    [missing] = FCMChannel(Settings(fcm_endpoint=fcm.url, fcm_credentials=str(credentials))).send([gone])
    assert isinstance(missing.error, InvalidTarget)


def test_a_private_ca_is_trusted_for_the_token_and_the_send_besides_the_system_cas(
        stack: Isolated, tmp_path: Path) -> None:
    """NOTIFIER_CA_FILE reaches the OAuth token request too, and adds to the system's CAs."""
    peer = FcmPeer(tls=tmp_path).start()
    try:
        assert peer.ca_file is not None and peer.url.startswith("https://")
        credentials = peer.service_account(tmp_path / "service-account.json")
        user, t = uid(), token()
        [device] = register(user, t)
        channel = FCMChannel(Settings(fcm_endpoint=peer.url, fcm_credentials=str(credentials),
                                      ca_file=str(peer.ca_file)))
        try:
            [outcome] = channel.send([Delivery(user, Notification(**note()), device)])
        finally:
            channel.close()
        assert outcome.ok, outcome.error
        assert peer.state.token_requests == 1 and len(peer.to(t)) == 1
        [untrusted] = FCMChannel(Settings(fcm_endpoint=peer.url, fcm_credentials=str(credentials))).send(
            [Delivery(user, Notification(**note()), device)])
        assert isinstance(untrusted.error, PermanentError) and "NOTIFIER_CA_FILE" in str(untrusted.error)
    finally:
        peer.stop()
    system = ssl.create_default_context().cert_store_stats()["x509_ca"]
    assert system > 0, "this machine has no system CAs to keep"
    assert tls_context(str(peer.ca_file)).cert_store_stats()["x509_ca"] == system + 1


def test_worker_logged_no_unexpected_errors(worker: Worker) -> None:
    assert "Traceback" not in worker.log() and "ERROR" not in worker.log(), worker.log()[-3000:]
