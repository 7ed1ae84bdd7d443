"""Event webhooks end to end: subscriptions (library, CLI, gateway API), fan_out of delivery events to
a real ``event_webhooks`` worker, and a Standard Webhooks receiver on 127.0.0.1 that verifies every
request with ``standardwebhooks.Webhook.verify``."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from notifier.deliverylog.events import Event
from notifier.deliverylog.subscriptions import Subscription, Subscriptions
from notifier.deliverylog.webhooks import fan_out, producer_enqueue
from notifier.pipeline.queues import EVENT_WEBHOOK
from notifier.redis import store
from notifier.state.deadletters import DeadLetters, iso
from tests.peers.broker import Isolated, isolated
from tests.peers.webhook import Answer, WebhookReceiver
from tests.support.gateway_support import API_KEY, Gateway
from tests.support.helpers import Worker, uid, wait_for, wait_idle
from tests.support.processes import free_port

ALLOW = {"NOTIFIER_WEBHOOK_ALLOW_PRIVATE": "true"}
"""The receiver is on 127.0.0.1, which webhooks may reach only when private addresses are allowed."""
DAY = 86400


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
    return stack.worker(ALLOW, "event_webhooks,router")


@pytest.fixture(autouse=True)
def no_subscriptions(stack: Isolated) -> None:
    """Each test sees only its own subscriptions (fan_out goes to every active one)."""
    subs = Subscriptions()
    for s in subs.list():
        subs.remove(s.id)


def subscribe(receiver: WebhookReceiver, kinds: str) -> tuple[Subscription, str]:
    """A subscription to ``kinds`` at a path of its own, which the receiver verifies with its secret."""
    path = f"/events/{uid('hook')}"
    sub = Subscriptions().add(receiver.url(path), kinds)
    receiver.accept(path, sub.secret)
    return sub, path


def events(*kinds: str) -> list[Event]:
    nid = uid("n")
    return [Event(kind, nid, "alice", "email" if kind != "read" else None, "alice@example.com",
                  {"attempt": 1} if kind == "retried" else {}, time.time(), "comment") for kind in kinds]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "notifier.cli", *args], capture_output=True, text=True,
                          env=os.environ.copy(), timeout=60, check=False)


# Delivery ---------------------------------------------------------------------------------------------
def test_a_batch_reaches_each_subscription_as_one_signed_request_with_the_kinds_it_wants(
        worker: Worker, receiver: WebhookReceiver) -> None:
    failures, failures_path = subscribe(receiver, "sent,failed")
    reads, reads_path = subscribe(receiver, "read")
    everything, everything_path = subscribe(receiver, "*")
    batch = events("sent", "retried", "failed", "read", "sent")
    assert fan_out(batch, producer_enqueue) == {failures.id: 3, reads.id: 1, everything.id: 5}
    [got] = wait_for(lambda: receiver.processed(failures_path), message="the failures webhook")
    wait_for(lambda: receiver.processed(reads_path) and receiver.processed(everything_path), message="the others")
    wait_idle(worker)
    assert len(receiver.requests(failures_path)) == 1, "one request per subscription and batch, not per event"
    assert got.verified and got.headers["webhook-id"].startswith("msg_")
    assert got.headers["content-type"] == "application/json"
    shown = [{"kind": e.kind, "notification_id": e.notification_id, "user_id": "alice", "type": "comment",
              "channel": e.channel, "target": "alice@example.com", "detail": e.detail, "at": iso(e.at)}
             for e in batch]
    assert got.event == {"type": "delivery_events", "timestamp": shown[-1]["at"],
                         "data": {"events": [shown[0], shown[2], shown[4]]}}
    [read] = receiver.requests(reads_path)
    assert read.verified and read.event["data"]["events"] == [shown[3]]
    [every] = receiver.requests(everything_path)
    assert every.verified and every.event["data"]["events"] == shown
    assert len({got.headers["webhook-id"], read.headers["webhook-id"], every.headers["webhook-id"]}) == 3
    assert fan_out(events("queued", "seen"), producer_enqueue) == {everything.id: 2}, "kinds no one wants go nowhere"


def test_a_receiver_failing_for_a_while_gets_the_batch_after_retries_and_its_failures_are_forgotten(
        worker: Worker, receiver: WebhookReceiver) -> None:
    sub, path = subscribe(receiver, "sent")
    receiver.fail(path, Answer(500), Answer(503), Answer(429, retry_after=0))
    fan_out(events("sent"), producer_enqueue)
    wait_for(lambda: receiver.processed(path), timeout=20, message="the webhook after three failures")
    attempts = receiver.requests(path)
    assert [r.status for r in attempts] == [500, 503, 429, 200] and all(r.verified for r in attempts)
    assert len({r.headers["webhook-id"] for r in attempts}) == 1 and len({r.body for r in attempts}) == 1
    wait_idle(worker)
    stored = Subscriptions().require(sub.id)
    assert stored.state == "active" and stored.failing_since is None, "a success clears the failure time"
    assert [e for e in DeadLetters().list(1000) if e["task"] == EVENT_WEBHOOK] == []


def test_a_receiver_that_always_fails_is_dead_lettered_after_the_retries_and_replays(
        worker: Worker, receiver: WebhookReceiver) -> None:
    sub, path = subscribe(receiver, "failed")
    receiver.fail(path, *[Answer(500)] * 4)
    started = time.time()
    fan_out(events("failed"), producer_enqueue)
    [letter] = wait_for(lambda: [e for e in DeadLetters().list(1000) if e["args"][0] == sub.id], timeout=20,
                        message="the dead letter")
    assert [r.status for r in receiver.requests(path)] == [500] * 4, "the first try and NOTIFIER_MAX_RETRIES=3"
    assert letter["task"] == EVENT_WEBHOOK and letter["queue"] == "event_webhooks" and letter["attempts"] == 4
    assert letter["error"] == f"gave up: event webhook {receiver.base} answered 500"
    stored = Subscriptions().require(sub.id)
    assert stored.state == "active" and stored.failing_since is not None and stored.failing_since >= started
    shown = cli("dlq", "list")
    assert letter["id"] in shown.stdout and "alice" in shown.stdout, shown.stdout + shown.stderr
    replayed = cli("dlq", "replay", letter["id"])
    assert replayed.returncode == 0, replayed.stderr
    [done] = wait_for(lambda: receiver.processed(path), timeout=20, message="the replayed webhook")
    assert done.headers["webhook-id"] == receiver.requests(path)[0].headers["webhook-id"]
    wait_for(lambda: Subscriptions().require(sub.id).failing_since is None, message="the failures forgotten")


def test_an_endpoint_nobody_listens_on_is_retried_then_dead_lettered(worker: Worker) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    sub = Subscriptions().add(f"{down}/events", "sent")
    fan_out(events("sent"), producer_enqueue)
    [letter] = wait_for(lambda: [e for e in DeadLetters().list(1000) if e["args"][0] == sub.id], timeout=20,
                        message="the dead letter")
    assert letter["error"] == f"gave up: event webhook {down} unreachable (ConnectionError)"
    assert letter["attempts"] == 4


def test_an_endpoint_failing_for_the_disable_days_is_disabled_with_a_log_line_and_enabled_again(
        worker: Worker, receiver: WebhookReceiver, stack: Isolated) -> None:
    sub, path = subscribe(receiver, "sent")
    store.get_redis().hset(store.get_keys().event_webhook(sub.id), "failing_since", repr(time.time() - 5 * DAY - 60))
    receiver.fail(path, Answer(503), Answer(503))
    fan_out(events("sent"), producer_enqueue)
    [letter] = wait_for(lambda: [e for e in DeadLetters().list(1000) if e["args"][0] == sub.id], timeout=20,
                        message="the dead letter of the disabling attempt")
    assert len(receiver.requests(path)) == 1, "a disabled endpoint is not retried"
    stored = Subscriptions().require(sub.id)
    assert stored.state == "disabled" and stored.disabled_reason is not None
    assert stored.disabled_reason.startswith("failing for 5 day(s)") and "answered 503" in stored.disabled_reason
    assert f"disabled event webhook {sub.id}" in worker.log()
    assert letter["error"] == f"gave up: event webhook {receiver.base} answered 503"
    assert fan_out(events("sent"), producer_enqueue) == {}, "a disabled subscription gets nothing"
    listed = cli("webhooks", "list")
    assert f"{sub.id}  disabled since" in listed.stdout, listed.stdout
    enabled = cli("webhooks", "enable", sub.id)
    assert enabled.returncode == 0 and sub.id in enabled.stdout, enabled.stderr
    again = Subscriptions().require(sub.id)
    assert again.state == "active" and again.failing_since is None and again.disabled_at is None
    fan_out(events("sent"), producer_enqueue)
    wait_for(lambda: len(receiver.requests(path)) == 3, timeout=20, message="the webhook once enabled")
    assert [r.status for r in receiver.requests(path)] == [503, 503, 200]


def test_an_endpoint_failing_for_less_than_the_disable_days_is_retried_not_disabled(
        worker: Worker, receiver: WebhookReceiver) -> None:
    sub, path = subscribe(receiver, "sent")
    store.get_redis().hset(store.get_keys().event_webhook(sub.id), "failing_since", repr(time.time() - 4 * DAY))
    receiver.fail(path, Answer(500))
    fan_out(events("sent"), producer_enqueue)
    wait_for(lambda: receiver.processed(path), timeout=20, message="the retried webhook")
    wait_idle(worker)
    stored = Subscriptions().require(sub.id)
    assert stored.state == "active" and stored.failing_since is None


# Managing subscriptions --------------------------------------------------------------------------------
def test_cli_adds_lists_removes_and_refuses_what_it_cannot_use(stack: Isolated, receiver: WebhookReceiver) -> None:
    url = receiver.url("/events/cli")
    added = cli("webhooks", "add", url, "--events", "sent,failed,read")
    assert added.returncode == 0, added.stderr
    sub_id, secret_line = added.stdout.splitlines()
    secret = secret_line.split()[1]
    assert sub_id.startswith("wh_") and secret.startswith("whsec_")
    assert Subscriptions().require(sub_id).secret == secret
    listed = cli("webhooks", "list")
    assert f"{sub_id}  active  events sent,failed,read  {url}" in listed.stdout and secret not in listed.stdout
    as_json = cli("webhooks", "list", "--json")
    assert '"failing_since": null' in as_json.stdout and secret not in as_json.stdout
    for args, says in [(("add", "ftp://example.com/hook", "--events", "sent"), "must use https"),
                       (("add", "https://example.com/hook", "--events", "sent,sen"), "unknown event kind(s) 'sen'"),
                       (("add", "https://example.com/hook", "--events", ","), "name the event kinds"),
                       (("remove", "wh_0000000000000000"), "no event webhook 'wh_0000000000000000'"),
                       (("enable", "nonsense"), "no event webhook 'nonsense'")]:
        refused = cli("webhooks", *args)
        assert refused.returncode == 1 and says in refused.stderr, (args, refused.stderr)
        assert "Traceback" not in refused.stderr
    removed = cli("webhooks", "remove", sub_id)
    assert removed.returncode == 0 and Subscriptions().get(sub_id) is None
    assert "no event webhooks" in cli("webhooks", "list").stdout


def test_api_adds_lists_removes_with_the_api_key_and_answers_errors_from_the_catalogue(
        stack: Isolated, receiver: WebhookReceiver) -> None:
    gateway = Gateway({**stack.env, **ALLOW}).wait_ready()
    try:
        with gateway.client(API_KEY) as http:
            url = receiver.url("/events/api")
            created = http.post("/v1/admin/webhooks", json={"url": url, "events": ["sent", "read"]})
            assert created.status_code == 201, created.text
            sub = created.json()
            assert sub["secret"].startswith("whsec_") and sub["events"] == ["sent", "read"]
            assert sub["state"] == "active" and sub["url"] == url and sub["failing_since"] is None
            assert Subscriptions().require(sub["id"]).secret == sub["secret"]
            listed = http.get("/v1/admin/webhooks")
            assert listed.status_code == 200 and [w["id"] for w in listed.json()["webhooks"]] == [sub["id"]]
            assert sub["secret"] not in listed.text
            bad_kind = http.post("/v1/admin/webhooks", json={"url": url, "events": ["sent", "opened"]})
            assert bad_kind.status_code == 422 and bad_kind.json()["error"] == "invalid_webhook"
            assert "'opened'" in bad_kind.json()["message"]
            bad_url = http.post("/v1/admin/webhooks", json={"url": "http://example.com/x", "events": ["sent"]})
            assert bad_url.status_code == 422 and "must use https" in bad_url.json()["message"]
            assert http.post(f"/v1/admin/webhooks/{sub['id']}/enable").json()["state"] == "active"
            assert http.delete(f"/v1/admin/webhooks/{sub['id']}").status_code == 204
            gone = http.delete(f"/v1/admin/webhooks/{sub['id']}")
            assert gone.status_code == 404 and gone.json()["error"] == "unknown_webhook"
            assert http.post("/v1/admin/webhooks/wh_x/enable").status_code == 404
        with gateway.client("not-the-key") as http:
            refused = http.get("/v1/admin/webhooks")
            assert refused.status_code == 401 and refused.json()["error"] == "unauthorized"
        with gateway.client() as http:
            assert http.post("/v1/admin/webhooks", json={"url": url, "events": ["sent"]}).status_code == 401
    finally:
        gateway.stop()
