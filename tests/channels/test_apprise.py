"""Apprise end to end: a user registers a ``gotify://`` URL, send -> router -> apprise task -> Apprise's
Gotify plugin -> a Gotify server on 127.0.0.1; plus the URL checks and the pure mapping."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from notifier import send_notification
from notifier.channels.apprise import AppriseChannel, shown
from notifier.channels.base import Delivery
from notifier.errors import ValidationError
from notifier.models import Notification, validate
from notifier.pipeline.producer import producer_app
from notifier.pipeline.queues import deliver_task
from notifier.state.devices import Devices, Registration
from notifier.state.preferences import PreferenceStore
from tests.peers.broker import Isolated, isolated, task_summary
from tests.peers.gotify import GotifyPeer
from tests.support.helpers import Worker, dead_letters_naming, quiet_hours_around_now, uid, use_env, wait_for, wait_idle

ALLOW = {"NOTIFIER_WEBHOOK_ALLOW_PRIVATE": "true"}
"""The Gotify peer is on 127.0.0.1: an Apprise URL may name it only when private addresses are allowed."""


@pytest.fixture(scope="module")
def gotify() -> Iterator[GotifyPeer]:
    peer = GotifyPeer().start()
    yield peer
    peer.stop()


@pytest.fixture(scope="module")
def stack() -> Iterator[Isolated]:
    yield from isolated(ALLOW)


@pytest.fixture(scope="module")
def worker(stack: Isolated) -> Worker:
    return stack.worker(ALLOW, "router,realtime,apprise")


def note(**extra: object) -> dict[str, object]:
    return {"type": "order_update", "title": "Order Shipped", "body": "Your order #12345 has shipped",
            "channels": ["apprise"], **extra}


def register(user: str, url: str) -> str:
    return Devices().register(user, {"platform": "apprise", "url": url}).id



def test_a_gotify_target_gets_the_notification(worker: Worker, gotify: GotifyPeer) -> None:
    user, (app_token, url) = uid(), gotify.app()
    register(user, url)
    sent = send_notification.delay(user, note(action_url="https://shop.test/orders/12345"))
    [message] = wait_for(lambda: gotify.messages(app_token), message="the Gotify message")
    assert message.title == "Order Shipped"
    assert message.message == "Your order #12345 has shipped\n\nhttps://shop.test/orders/12345"
    wait_idle(worker, sent.id)
    assert gotify.attempts(app_token) == 1 and dead_letters_naming(user) == []


def test_a_failing_service_is_retried_and_delivered_once(worker: Worker, gotify: GotifyPeer) -> None:
    user, (app_token, url) = uid(), gotify.app()
    register(user, url)
    gotify.fail(app_token, 2)
    sent = send_notification.delay(user, note())
    wait_for(lambda: gotify.messages(app_token), timeout=15, message="the message after two failures")
    wait_idle(worker, sent.id)
    assert gotify.attempts(app_token) == 3 and len(gotify.messages(app_token)) == 1
    assert dead_letters_naming(user) == []


def test_a_service_that_keeps_failing_is_dead_lettered_after_the_retries(worker: Worker, gotify: GotifyPeer) -> None:
    user, (app_token, url) = uid(), gotify.app()
    target = register(user, url)
    gotify.fail(app_token, -1)
    send_notification.delay(user, note())
    [entry] = wait_for(lambda: dead_letters_naming(user), timeout=20, message="dead letter")
    assert entry["error_type"] == "RetryableError" and entry["error"].startswith("gave up: Apprise could not notify")
    assert f"127.0.0.1:{gotify.port}" in entry["error"] and app_token not in json.dumps(entry)
    assert gotify.attempts(app_token) == 4, "the first try and NOTIFIER_MAX_RETRIES (3) retries"
    assert [d.id for d in Devices().list(user)] == [target], "an Apprise target is never pruned"


def test_quiet_hours_hold_it_until_they_end(worker: Worker, gotify: GotifyPeer) -> None:
    user, (app_token, url) = uid(), gotify.app()
    register(user, url)
    PreferenceStore().update(user, quiet_hours=quiet_hours_around_now())
    sent = send_notification.delay(user, note())
    wait_idle(worker, sent.id)
    assert gotify.attempts(app_token) == 0
    urgent = send_notification.delay(user, note(priority="critical"))
    wait_for(lambda: gotify.messages(app_token), message="the critical message, which quiet hours let through")
    wait_idle(worker, urgent.id)
    assert len(gotify.messages(app_token)) == 1


def test_a_redelivered_task_does_not_post_twice(worker: Worker, gotify: GotifyPeer) -> None:
    user, (app_token, url) = uid(), gotify.app()
    target = register(user, url)
    n = Notification(**note()).to_dict()
    app = producer_app()
    first = app.send_task(deliver_task("apprise"), args=[{n["id"]: n}, [[user, n["id"], "*"]]], queue="apprise")
    assert wait_for(lambda: task_summary(worker, first.id), message="first delivery")["delivered"] == 1
    again = app.send_task(deliver_task("apprise"), args=[{n["id"]: n}, [[user, n["id"], target]]], queue="apprise")
    assert wait_for(lambda: task_summary(worker, again.id), message="redelivery")["already"] == 1
    assert gotify.attempts(app_token) == 1 and len(gotify.messages(app_token)) == 1


def test_a_channel_turned_off_gets_nothing(worker: Worker, gotify: GotifyPeer) -> None:
    user, (app_token, url) = uid(), gotify.app()
    register(user, url)
    PreferenceStore().update(user, channels={"apprise": False})
    sent = send_notification.delay(user, note())
    wait_idle(worker, sent.id)
    assert gotify.attempts(app_token) == 0
    PreferenceStore().update(user, channels={"apprise": True})
    send_notification.delay(user, note())
    wait_for(lambda: gotify.messages(app_token), message="the message once apprise is on again")


def test_worker_logged_no_unexpected_errors(worker: Worker) -> None:
    assert "Traceback" not in worker.log(), worker.log()[-3000:]


# Registration checks ------------------------------------------------------------------------------
def refused(url: str) -> str:
    with pytest.raises(ValidationError) as caught:
        validate(Registration, {"platform": "apprise", "url": url})
    return str(caught.value)


def test_unknown_schemes_and_malformed_urls_are_refused_with_where_to_look(stack: Isolated) -> None:
    assert "carrier:// is not a scheme Apprise supports" in refused("carrier://pigeon/1")
    assert "apprise --details" in refused("carrier://pigeon/1")
    assert "apprise --details" in refused("no scheme at all")
    assert "cannot use this gotify:// URL" in refused("gotify://")
    Registration(platform="apprise", url="tgram://123456789:abcdefg_hijklmnop/12315544")


def test_an_address_written_in_the_url_must_be_public_unless_allowed(stack: Isolated, gotify: GotifyPeer) -> None:
    _, url = gotify.app()
    with use_env({"NOTIFIER_WEBHOOK_ALLOW_PRIVATE": "false"}):
        assert "NOTIFIER_WEBHOOK_ALLOW_PRIVATE" in refused(url)
        assert "NOTIFIER_WEBHOOK_ALLOW_PRIVATE" in refused("json://10.0.0.7/hook")
        Registration(platform="apprise", url="gotify://gotify.example.com/AbCdEf123")
    Registration(platform="apprise", url=url)


def test_errors_show_urls_without_their_tokens() -> None:
    assert shown("gotify://127.0.0.1:9/AbCdEfGh123") == "gotify://127.0.0.1:9/A...3/"
    assert "abcdefg_hijklmnop" not in shown("tgram://123456789:abcdefg_hijklmnop/12315544")


# Pure ----------------------------------------------------------------------------------------------
def test_build_payload() -> None:
    channel = AppriseChannel()

    def payload(**n: object) -> dict[str, str]:
        return channel.build_payload(Delivery("alice", Notification(**{**note(), **n})))

    assert payload() == {"title": "Order Shipped", "body": "Your order #12345 has shipped"}
    assert payload(body="", action_url="https://x.test/1") == {"title": "", "body": "Order Shipped\n\nhttps://x.test/1"}
