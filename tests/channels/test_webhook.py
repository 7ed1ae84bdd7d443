"""Webhooks end to end: register through the gateway, send -> router -> webhook task -> a Standard
Webhooks receiver on 127.0.0.1 that verifies every request; plus the pure mapping and signing."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from notifier import send_notification
from notifier.channels import egress
from notifier.channels.base import Delivery, Outcome
from notifier.channels.webhook import WebhookChannel, WebhookMessage, message_id, origin, sign
from notifier.config import Settings
from notifier.errors import PermanentError, RetryableError, ValidationError
from notifier.models import Notification, validate
from notifier.pipeline.producer import producer_app
from notifier.pipeline.queues import deliver_task
from notifier.state.devices import Devices, Registration
from notifier.state.preferences import PreferenceStore
from tests.peers.broker import Isolated, isolated, task_summary
from tests.peers.webhook import Answer, WebhookReceiver
from tests.support.gateway_support import Gateway, token
from tests.support.helpers import Worker, dead_letters_naming, quiet_hours_around_now, uid, wait_for, wait_idle

ALLOW = {"NOTIFIER_WEBHOOK_ALLOW_PRIVATE": "true"}
"""The receiver is on 127.0.0.1, which webhooks may reach only when private addresses are allowed."""


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    peer = WebhookReceiver().start()
    yield peer
    peer.stop()


@pytest.fixture(scope="module")
def stack() -> Iterator[Isolated]:
    yield from isolated(ALLOW)


@pytest.fixture(scope="module")
def worker(stack: Isolated) -> Worker:
    return stack.worker({**ALLOW, "NOTIFIER_RETRY_BACKOFF_MAX_SECONDS": "3"}, "router,realtime,webhook")


@pytest.fixture(scope="module")
def gateway(stack: Isolated) -> Iterator[Gateway]:
    gw = Gateway({**stack.env, **ALLOW}).wait_ready()
    yield gw
    gw.stop()


def note(**extra: object) -> dict[str, object]:
    return {"type": "order_update", "title": "Order Shipped", "body": "Your order #12345 has shipped",
            "data": {"order_id": "12345", "items": 3}, "channels": ["webhook"], **extra}


def endpoint(receiver: WebhookReceiver, user: str, secret: str | None = None) -> tuple[str, str, str]:
    """Register a webhook for ``user`` at a path of its own; the receiver verifies with its secret.
    Returns the path, the target id and the secret."""
    path = f"/hooks/{user}"
    given = {"secret": secret} if secret else {}
    device = Devices().register(user, {"platform": "webhook", "url": receiver.url(path), **given})
    assert device.secret is not None
    receiver.accept(path, device.secret.get_secret_value())
    return path, device.id, device.secret.get_secret_value()



# End to end ------------------------------------------------------------------------------------------
def test_a_registered_webhook_receives_the_signed_event_and_the_secret_is_shown_once(
        worker: Worker, gateway: Gateway, receiver: WebhookReceiver) -> None:
    user, path = uid(), "/hooks/registered-through-the-api"
    with gateway.client(token(user)) as http:
        created = http.post("/v1/devices", json={"platform": "webhook", "url": receiver.url(path)})
        assert created.status_code == 201, created.text
        device = created.json()
        secret = device["secret"]
        assert secret.startswith("whsec_") and device["url"] == receiver.url(path)
        again = http.post("/v1/devices", json={"platform": "webhook", "url": receiver.url(path)}).json()
        assert again["id"] == device["id"] and again["secret"] == secret, "registering again keeps the secret"
        listed = http.get("/v1/devices")
        assert listed.json()["devices"][0]["id"] == device["id"]
        assert "secret" not in listed.json()["devices"][0] and secret not in listed.text
    cli = subprocess.run([sys.executable, "-m", "notifier.cli", "devices", "list", user, "--json"],
                         capture_output=True, text=True, env=os.environ.copy(), timeout=60, check=True)
    assert device["id"] in cli.stdout and secret not in cli.stdout
    receiver.accept(path, secret)
    sent = send_notification.delay(user, note(action_url="https://shop.test/orders/12345", priority="high"))
    [got] = wait_for(lambda: receiver.processed(path), message="the webhook")
    assert got.verified and got.headers["webhook-id"] == message_id(sent.id, device["id"])
    assert got.event == {"type": "notification", "timestamp": got.event["data"]["timestamp"], "data": {
        "id": sent.id, "type": "order_update", "title": "Order Shipped", "body": "Your order #12345 has shipped",
        "data": {"order_id": "12345", "items": 3}, "priority": "high", "action_url": "https://shop.test/orders/12345",
        "timestamp": got.event["data"]["timestamp"], "user_id": user}}
    assert got.headers["content-type"] == "application/json"
    wait_idle(worker, sent.id)
    assert secret not in worker.log() and secret not in gateway.log()


def test_cli_registers_a_webhook_and_prints_its_secret_once(stack: Isolated, receiver: WebhookReceiver) -> None:
    user = uid()

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "notifier.cli", "devices", *args], capture_output=True,
                              text=True, env=os.environ.copy(), timeout=60, check=False)

    added = cli("add", user, "--platform", "webhook", "--url", receiver.url("/hooks/cli"))
    assert added.returncode == 0, added.stderr
    device_id, secret_line = added.stdout.splitlines()
    secret = secret_line.split()[1]
    assert device_id.startswith("webhook-") and secret.startswith("whsec_")
    [stored] = Devices().list(user)
    assert stored.secret is not None and stored.secret.get_secret_value() == secret
    listed = cli("list", user)
    assert device_id in listed.stdout and "/hooks/cli" in listed.stdout and secret not in listed.stdout
    wrong = cli("add", user, "--platform", "webhook", "--url", receiver.url("/hooks/cli"), "--secret", "whsec_x")
    assert wrong.returncode == 1 and "whsec_" in wrong.stderr and "Traceback" not in wrong.stderr


def test_a_failing_receiver_is_retried_with_the_same_id_and_processes_it_once(
        worker: Worker, receiver: WebhookReceiver) -> None:
    user = uid()
    path, target, _ = endpoint(receiver, user)
    receiver.fail(path, Answer(500), Answer(503))
    sent = send_notification.delay(user, note())
    wait_for(lambda: receiver.processed(path), timeout=15, message="the webhook after two failures")
    wait_idle(worker, sent.id)
    attempts = receiver.requests(path)
    assert [r.status for r in attempts] == [500, 503, 200] and all(r.verified for r in attempts)
    assert {r.headers["webhook-id"] for r in attempts} == {message_id(sent.id, target)}
    assert len({r.body for r in attempts}) == 1, "every attempt carries the same body"
    assert len(receiver.processed(path)) == 1 and dead_letters_naming(user) == []


def test_a_retry_after_the_receiver_processed_it_carries_the_same_id(worker: Worker,
                                                                      receiver: WebhookReceiver) -> None:
    """The receiver did its work but answered 500: the retry comes with the id it already saw."""
    user = uid()
    path, _, _ = endpoint(receiver, user)
    receiver.fail(path, Answer(500, after_processing=True))
    sent = send_notification.delay(user, note())
    wait_for(lambda: len(receiver.processed(path)) == 2, timeout=15, message="the retry")
    wait_idle(worker, sent.id)
    first, second = receiver.processed(path)
    assert first.headers["webhook-id"] == second.headers["webhook-id"] and first.body == second.body
    assert [r.status for r in receiver.requests(path)] == [500, 200]


def test_429_is_retried_after_retry_after(worker: Worker, receiver: WebhookReceiver) -> None:
    user = uid()
    path, _, _ = endpoint(receiver, user)
    receiver.fail(path, Answer(429, retry_after=2))
    send_notification.delay(user, note())
    wait_for(lambda: receiver.processed(path), timeout=15, message="the webhook after 429")
    first, second = receiver.requests(path)
    assert second.at - first.at >= 2.0, "the retry waited less than the receiver's Retry-After"


def test_410_prunes_the_endpoint_and_the_next_send_does_not_post(worker: Worker,
                                                                  receiver: WebhookReceiver) -> None:
    user = uid()
    path, _, _ = endpoint(receiver, user)
    receiver.fail(path, Answer(410))
    send_notification.delay(user, note())
    wait_for(lambda: Devices().list(user) == [], message="the endpoint pruned")
    later = send_notification.delay(user, note())
    wait_idle(worker, later.id)
    assert [r.status for r in receiver.requests(path)] == [410]
    assert dead_letters_naming(user) == []


def test_a_redelivered_task_does_not_post_twice(worker: Worker, receiver: WebhookReceiver) -> None:
    user = uid()
    path, target, _ = endpoint(receiver, user)
    n = Notification(**note()).to_dict()
    app = producer_app()
    first = app.send_task(deliver_task("webhook"), args=[{n["id"]: n}, [[user, n["id"], "*"]]], queue="webhook")
    assert wait_for(lambda: task_summary(worker, first.id), message="first delivery")["delivered"] == 1
    again = app.send_task(deliver_task("webhook"), args=[{n["id"]: n}, [[user, n["id"], target]]], queue="webhook")
    assert wait_for(lambda: task_summary(worker, again.id), message="redelivery")["already"] == 1
    assert len(receiver.requests(path)) == 1


def test_a_receiver_with_another_secret_rejects_it_and_it_is_dead_lettered_without_the_secret(
        worker: Worker, receiver: WebhookReceiver) -> None:
    user, ours = uid(), WebhookChannel.new_secret()
    path, _, secret = endpoint(receiver, user, ours)
    assert secret == ours
    receiver.accept(path, WebhookChannel.new_secret())
    send_notification.delay(user, note())
    [entry] = wait_for(lambda: dead_letters_naming(user), message="dead letter")
    assert entry["error_type"] == "PermanentError" and "answered 401" in entry["error"]
    assert [r.verified for r in receiver.requests(path)] == [False] and receiver.processed(path) == []
    assert ours not in json.dumps(entry) and ours not in worker.log()
    assert len(Devices().list(user)) == 1


def test_a_channel_turned_off_gets_nothing(worker: Worker, receiver: WebhookReceiver) -> None:
    user = uid()
    path, _, _ = endpoint(receiver, user)
    PreferenceStore().update(user, channels={"webhook": False})
    sent = send_notification.delay(user, note())
    wait_idle(worker, sent.id)
    assert receiver.requests(path) == []
    PreferenceStore().update(user, channels={"webhook": True})
    send_notification.delay(user, note())
    wait_for(lambda: receiver.processed(path), message="the webhook once turned on again")


def test_quiet_hours_hold_it_until_they_end(worker: Worker, receiver: WebhookReceiver) -> None:
    user = uid()
    path, _, _ = endpoint(receiver, user)
    PreferenceStore().update(user, quiet_hours=quiet_hours_around_now())
    sent = send_notification.delay(user, note())
    wait_idle(worker, sent.id)
    assert receiver.requests(path) == []
    urgent = send_notification.delay(user, note(priority="critical"))
    wait_for(lambda: receiver.processed(path), message="the critical event, which quiet hours let through")
    wait_idle(worker, urgent.id)
    assert len(receiver.requests(path)) == 1


def test_private_addresses_are_refused_at_connect_unless_allowed(stack: Isolated, receiver: WebhookReceiver) -> None:
    """A host name resolving to a loopback address is caught on the connected address, not its spelling."""
    user, path = uid(), "/hooks/by-name"
    device = Devices().register(user, {"platform": "webhook", "url": f"http://localhost{receiver.base[16:]}{path}"})
    assert device.secret is not None
    receiver.accept(path, device.secret.get_secret_value())
    d = Delivery(user, Notification(**note()), device.id)
    refused = WebhookChannel(Settings(webhook_allow_private=False))
    [outcome] = refused.send([d])
    refused.close()
    assert isinstance(outcome.error, PermanentError) and "NOTIFIER_WEBHOOK_ALLOW_PRIVATE" in str(outcome.error)
    assert "127.0.0.1" in str(outcome.error) and receiver.requests(path) == []
    allowed = WebhookChannel(Settings(webhook_allow_private=True))
    [ok] = allowed.send([d])
    allowed.close()
    assert ok.ok, ok.error
    assert len(receiver.processed(path)) == 1


def test_https_redirects_and_unreachable_receivers(stack: Isolated, tmp_path: Path) -> None:
    """Over HTTPS with a private CA (NOTIFIER_CA_FILE) the guard still checks the connected address; a
    redirect is not followed; a receiver that is down is retried."""
    secure = WebhookReceiver(tls=tmp_path).start()
    try:
        user, path = uid(), "/hooks/tls"
        device = Devices().register(user, {"platform": "webhook", "url": secure.url(path)})
        assert device.secret is not None and secure.ca_file is not None
        secure.accept(path, device.secret.get_secret_value())
        d = Delivery(user, Notification(**note()), device.id)

        def outcome(**settings: object) -> Outcome:
            channel = WebhookChannel(Settings(ca_file=str(secure.ca_file), **settings))
            try:
                [result] = channel.send([d])
            finally:
                channel.close()
            return result

        refused = outcome(webhook_allow_private=False)
        assert isinstance(refused.error, PermanentError) and "NOTIFIER_WEBHOOK_ALLOW_PRIVATE" in str(refused.error)
        assert secure.requests(path) == []
        assert outcome(webhook_allow_private=True).ok and len(secure.processed(path)) == 1
        untrusted = WebhookChannel(Settings(webhook_allow_private=True)).send([d])[0]
        assert isinstance(untrusted.error, PermanentError) and "NOTIFIER_CA_FILE" in str(untrusted.error)
        secure.fail(path, Answer(302, location="https://elsewhere.example/hook"))
        redirected = outcome(webhook_allow_private=True)
        assert isinstance(redirected.error, PermanentError) and "redirect" in str(redirected.error)
        assert len(secure.requests(path)) == 2, "the redirect was not followed"
    finally:
        secure.stop()
    down = outcome(webhook_allow_private=True)
    assert isinstance(down.error, RetryableError) and "unreachable" in str(down.error)


def test_worker_logged_no_unexpected_errors(worker: Worker) -> None:
    assert "Traceback" not in worker.log(), worker.log()[-3000:]


# Pure ----------------------------------------------------------------------------------------------
def delivery(target: str = "webhook-" + "a" * 32, **extra: object) -> Delivery:
    n = Notification(id="n1", timestamp=dt.datetime(2026, 12, 1, 9, 30, tzinfo=dt.UTC), **{**note(), **extra})
    return Delivery("alice", n, target)


def test_build_payload_is_the_documented_event() -> None:
    message = WebhookChannel(Settings()).build_payload(delivery(ttl=60, collapse_key="order-1", send_at=None))
    assert isinstance(message, WebhookMessage) and message.id == message_id("n1", "webhook-" + "a" * 32)
    assert json.loads(message.body) == {"type": "notification", "timestamp": "2026-12-01T09:30:00Z", "data": {
        "id": "n1", "type": "order_update", "title": "Order Shipped", "body": "Your order #12345 has shipped",
        "data": {"order_id": "12345", "items": 3}, "priority": "normal", "ttl": 60, "collapse_key": "order-1",
        "timestamp": "2026-12-01T09:30:00Z", "user_id": "alice"}}
    assert WebhookChannel(Settings()).build_payload(delivery()).body == WebhookChannel(Settings()).build_payload(
        delivery()).body, "the same bytes every time (retries carry the same body)"


def test_message_id_is_stable_per_notification_and_target() -> None:
    assert message_id("n1", "webhook-a") == message_id("n1", "webhook-a")
    assert len({message_id("n1", "webhook-a"), message_id("n1", "webhook-b"), message_id("n2", "webhook-a")}) == 3
    assert message_id("n1", "webhook-a").startswith("msg_")


def test_the_signature_binds_id_timestamp_body_and_secret() -> None:
    secret, now = WebhookChannel.new_secret(), dt.datetime.now(dt.UTC)
    message = WebhookMessage("msg_1", b'{"type":"notification"}')
    headers = sign(message, secret, now)
    assert headers["webhook-signature"].startswith("v1,") and headers["webhook-timestamp"] == str(int(now.timestamp()))
    assert Webhook(secret).verify(message.body, headers) == {"type": "notification"}
    forgeries = [
        (b'{"type":"other"}', headers),
        (message.body, {**headers, "webhook-id": "msg_2"}),
        (message.body, {**headers, "webhook-timestamp": str(int(now.timestamp()) - 1)}),
    ]
    for body, forged in forgeries:
        with pytest.raises(WebhookVerificationError):
            Webhook(secret).verify(body, forged)
    with pytest.raises(WebhookVerificationError):
        Webhook(WebhookChannel.new_secret()).verify(message.body, headers)
    stale = sign(message, secret, now - dt.timedelta(minutes=10))
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(secret).verify(message.body, stale)


def test_registration_checks_url_and_secret() -> None:
    def refused(platform: str = "webhook", **registration: object) -> str:
        """The one-line reason the API and the CLI answer with."""
        with pytest.raises(ValidationError) as caught:
            validate(Registration, {"platform": platform, **registration})
        return str(caught.value)

    assert "https" in refused(url="http://example.com/hook")
    assert "https" in refused(url="ftp://example.com/hook")
    assert "no user or password" in refused(url="https://user:pw@example.com/hook")
    assert "needs a url" in refused(token="abc")
    assert "whsec_" in refused(url="https://example.com/hook", secret="whsec_dG9vIHNob3J0")
    assert "whsec_" in refused(url="https://example.com/hook", secret="not-a-secret-at-all-but-long-enough")
    assert "secret-at-all" not in refused(url="https://example.com/hook", secret="not-a-secret-at-all-but-long")
    assert "takes no secret" in refused("fcm", token="fcm-token-0123456789abcdef", secret=WebhookChannel.new_secret())
    Registration(platform="webhook", url="https://example.com/hook", secret=WebhookChannel.new_secret())
    WebhookChannel.check_secret(WebhookChannel.new_secret())


def test_private_hosts_written_in_the_url_are_refused_at_registration() -> None:
    for host in ("10.1.2.3", "192.168.0.1", "169.254.169.254", "[::1]", "[::ffff:127.0.0.1]", "localhost"):
        with pytest.raises(ValueError, match="NOTIFIER_WEBHOOK_ALLOW_PRIVATE"):
            egress.check_host(host, allow_private=False)
        egress.check_host(host, allow_private=True)
    egress.check_host("example.com", allow_private=False)
    egress.check_host("93.184.216.34", allow_private=False)
    assert egress.is_public("8.8.8.8") and not egress.is_public("100.64.0.1") and not egress.is_public("224.0.0.1")


def test_errors_name_the_origin_only() -> None:
    assert origin("https://user:pw@hooks.example.com:8443/secret/path?token=x") == "https://hooks.example.com:8443"
