"""SMS through Twilio end to end: send -> router -> sms task -> the fake Twilio Messages API
(``tests/peers/twilio.py``), through one real worker shared by the module; Twilio's status callbacks
to the real gateway."""

from __future__ import annotations

import datetime as dt
import time
import zoneinfo
from collections.abc import Iterator
from typing import Any

import pytest

from notifier import send_notification
from notifier.models import Notification
from notifier.pipeline.producer import producer_app
from notifier.pipeline.queues import deliver_task
from notifier.redis.store import get_keys, get_redis
from notifier.state.inbox import Inbox
from notifier.state.preferences import PreferenceStore
from notifier.state.sms_status import SmsStatuses
from tests.peers.broker import Isolated, isolated, task_summary
from tests.peers.twilio import TwilioPeer
from tests.support.gateway_support import Gateway, token
from tests.support.helpers import (
    ROOT,
    Worker,
    dead_letters_naming,
    overnight_window_around_now,
    uid,
    wait_for,
    wait_idle,
)
from tests.support.processes import free_port

_numbers = iter(range(1000, 10000))


@pytest.fixture(scope="module")
def twilio() -> Iterator[TwilioPeer]:
    peer = TwilioPeer().start()
    yield peer
    peer.stop()


@pytest.fixture(scope="module")
def gateway_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def env(twilio: TwilioPeer, gateway_port: int) -> dict[str, str]:
    return {**twilio.env(), "NOTIFIER_PUBLIC_URL": f"http://127.0.0.1:{gateway_port}",
            "NOTIFIER_TEMPLATES_DIR": str(ROOT / "tests" / "support" / "templates"),
            "NOTIFIER_RETRY_BACKOFF_MAX_SECONDS": "3"}


@pytest.fixture(scope="module")
def stack(env: dict[str, str]) -> Iterator[Isolated]:
    yield from isolated(env)


@pytest.fixture(scope="module")
def worker(stack: Isolated, env: dict[str, str]) -> Worker:
    return stack.worker(env, "router,realtime,sms")


def user_with_phone(**prefs: Any) -> tuple[str, str]:
    """A user whose number was given the way people write it; returns it as E.164."""
    n = next(_numbers)
    user = uid()
    PreferenceStore().set(user, {"phone": f"+49 (151) 2345-{n}", **prefs})
    return user, f"+491512345{n}"


def note(**extra: object) -> dict[str, object]:
    return {"type": "order_update", "title": "Order shipped", "body": "Your order #12345 is on its way",
            "channels": ["sms"], **extra}



def test_the_sms_arrives_with_the_e164_number_and_the_text(worker: Worker, twilio: TwilioPeer,
                                                          gateway_port: int) -> None:
    user, number = user_with_phone()
    sent = send_notification.delay(user, note())
    [got] = wait_for(lambda: twilio.to(number), message="the SMS at Twilio")
    assert got.form["To"] == number and number.startswith("+491512345")
    assert got.form["Body"] == "Order shipped\nYour order #12345 is on its way"
    assert got.form["From"] == "+15017122661"
    assert got.form["StatusCallback"] == f"http://127.0.0.1:{gateway_port}/v1/sms/twilio/status"
    status = wait_for(lambda: SmsStatuses().get("twilio", got.sid), message="the accepted message's state")
    assert status["state"] == "accepted" and status["notification_id"] == sent.id and status["user_id"] == user

    templated = send_notification.delay(user, {"type": "comment", "channels": ["sms"], "data": {
        "text": "Looks good", "actor": {"name": "Bob"}, "posted_at": "2026-12-01T09:30:00Z"}})
    wait_for(lambda: len(twilio.to(number)) == 2, message="the templated SMS")
    assert twilio.to(number)[1].form["Body"] == "Bob commented: Looks good", templated.id


def test_429_and_5xx_are_retried_after_retry_after_then_delivered(worker: Worker, twilio: TwilioPeer) -> None:
    (busy, busy_number), (down, down_number) = user_with_phone(), user_with_phone()
    twilio.fail(busy_number, ("too_many", 2))
    twilio.fail(down_number, "server", "server")
    send_notification.delay(busy, note())
    send_notification.delay(down, note())
    wait_for(lambda: twilio.to(busy_number) and twilio.to(down_number), timeout=15, message="both SMS")
    assert len(twilio.to(busy_number)) == 1 and len(twilio.to(down_number)) == 1
    first, second = twilio.attempts(busy_number)
    assert second - first >= 2.0, "the retry came sooner than Twilio's Retry-After"
    assert len(twilio.attempts(down_number)) == 3
    assert dead_letters_naming(busy) == [] and dead_letters_naming(down) == []


def test_an_invalid_number_is_removed_and_the_next_sms_skipped(worker: Worker, twilio: TwilioPeer) -> None:
    user, number = user_with_phone()
    twilio.refuse(number, "invalid_number")
    send_notification.delay(user, note())
    prefs = wait_for(lambda: (p := PreferenceStore().get(user)).phone is None and p, message="the number removed")
    assert prefs.phone_invalid is not None
    assert number in prefs.phone_invalid and "21211" in prefs.phone_invalid
    assert PreferenceStore().get(user).to_dict()["phone_invalid"] == prefs.phone_invalid, "shown in prefs"

    later = send_notification.delay(user, note(channels=["sms", "realtime"]))
    wait_for(lambda: Inbox().get(user, later.id), message="the later notification in the inbox")
    wait_idle(worker, later.id)
    assert any(f"[{later.id}]: " in line and "sms skipped: no address" in line for line in worker.output)
    assert len(twilio.attempts(number)) == 1 and dead_letters_naming(user) == []

    PreferenceStore().update(user, phone=number)
    assert PreferenceStore().get(user).phone_invalid is None, "a new number clears the note"


def test_a_recipient_who_replied_stop_gets_sms_turned_off_with_the_reason(worker: Worker,
                                                                         twilio: TwilioPeer) -> None:
    user, number = user_with_phone()
    twilio.refuse(number, "unsubscribed")
    send_notification.delay(user, note())
    prefs = wait_for(lambda: (p := PreferenceStore().get(user)).channels.get("sms") is False and p,
                     message="SMS turned off")
    assert "STOP" in prefs.channel_off_reasons["sms"] and "21610" in prefs.channel_off_reasons["sms"]
    assert prefs.phone == number, "the number itself is fine"

    later = send_notification.delay(user, note(channels=["sms", "realtime"]))
    wait_for(lambda: Inbox().get(user, later.id), message="the later notification in the inbox")
    wait_idle(worker, later.id)
    assert len(twilio.attempts(number)) == 1 and dead_letters_naming(user) == []
    assert PreferenceStore().update(user, channels={"sms": True}).channel_off_reasons == {}


def test_another_refusal_is_dead_lettered_and_not_retried(worker: Worker, twilio: TwilioPeer) -> None:
    user, number = user_with_phone()
    twilio.refuse(number, "region")
    send_notification.delay(user, note())
    [entry] = wait_for(lambda: dead_letters_naming(user), message="the dead letter")
    assert entry["error_type"] == "PermanentError" and "21408" in entry["error"]
    assert len(twilio.attempts(number)) == 1
    assert PreferenceStore().get(user).phone == number and PreferenceStore().get(user).channels == {}


def test_a_redelivered_task_does_not_send_a_second_sms(worker: Worker, twilio: TwilioPeer) -> None:
    user, number = user_with_phone()
    n = Notification(**note()).to_dict()  # type: ignore[arg-type]
    app = producer_app()
    first = app.send_task(deliver_task("sms"), args=[{n["id"]: n}, [[user, n["id"], "*"]]], queue="sms")
    assert wait_for(lambda: task_summary(worker, first.id), message="the first delivery")["delivered"] == 1
    again = app.send_task(deliver_task("sms"), args=[{n["id"]: n}, [[user, n["id"], "*"]]], queue="sms")
    assert wait_for(lambda: task_summary(worker, again.id), message="the redelivery")["already"] == 1
    retry = app.send_task(deliver_task("sms"), args=[{n["id"]: n}, [[user, n["id"], number]]], queue="sms")
    assert wait_for(lambda: task_summary(worker, retry.id), message="the retry")["already"] == 1
    assert len(twilio.to(number)) == 1



def test_quiet_hours_defer_the_sms_to_the_window_end(worker: Worker, twilio: TwilioPeer) -> None:
    zone, start, end = overnight_window_around_now()
    user, number = user_with_phone(quiet_hours={"start": start, "end": end}, timezone=zone)
    sent = send_notification.delay(user, note(channels=["sms", "realtime"]))
    wait_for(lambda: Inbox().get(user, sent.id), message="the inbox entry (not deferred)")
    r, schedule = get_redis(), get_keys().schedule()
    [(member, due)] = wait_for(lambda: [(m, s) for m, s in r.zrange(schedule, 0, -1, withscores=True)
                                        if sent.id in m], message="the deferred SMS in the schedule")
    assert dt.datetime.fromtimestamp(due, zoneinfo.ZoneInfo(zone)).strftime("%H:%M") == end
    wait_idle(worker, sent.id)
    assert twilio.attempts(number) == []
    r.zadd(schedule, {member: time.time() - 1})  # the window ends
    wait_for(lambda: twilio.to(number), message="the SMS after the quiet window")


def test_sms_turned_off_in_preferences_is_not_sent(worker: Worker, twilio: TwilioPeer) -> None:
    user, number = user_with_phone(channels={"sms": False})
    sent = send_notification.delay(user, note(channels=["sms", "realtime"]))
    wait_for(lambda: Inbox().get(user, sent.id), message="the inbox entry")
    wait_idle(worker, sent.id)
    assert twilio.attempts(number) == []


def test_twilio_status_callbacks_are_recorded_only_when_signed_by_twilio(
        worker: Worker, twilio: TwilioPeer, stack: Isolated, env: dict[str, str], gateway_port: int) -> None:
    gateway = Gateway({**stack.env, **env}, port=gateway_port).wait_ready()
    try:
        user, number = user_with_phone()
        send_notification.delay(user, note())
        [got] = wait_for(lambda: twilio.to(number), message="the SMS at Twilio")
        wait_for(lambda: SmsStatuses().get("twilio", got.sid), message="the accepted state")

        forged = twilio.report(got, "failed", error_code="30008", auth_token="not-the-auth-token")
        unsigned = twilio.report(got, "failed", error_code="30008", auth_token=None)
        assert forged.status_code == 403 and unsigned.status_code == 403, (forged.text, unsigned.text)
        assert forged.json()["error"] == "invalid_signature"
        assert SmsStatuses().get("twilio", got.sid)["state"] == "accepted", "a forged report changed nothing"

        assert twilio.report(got, "sent").status_code == 204
        answer = twilio.report(got, "undelivered", error_code="30003")
        assert answer.status_code == 204, answer.text
        status = SmsStatuses().get("twilio", got.sid)
        assert status is not None
        assert (status["state"], status["error_code"], status["to"]) == ("undelivered", "30003", number)
        assert status["user_id"] == user
        wait_for(lambda: f"SMS {got.sid} undelivered (error 30003)" in gateway.log(), message="the log line")

        with gateway.client(token(user)) as http:  # the number is the user's to change, like their email
            shown = http.get("/v1/preferences").json()
            assert shown["phone"] == number
            refused = http.put("/v1/preferences", json={**shown, "phone": "0151 2345 6789"})
            assert refused.status_code == 422 and "+COUNTRY" in refused.json()["message"]
            changed = http.put("/v1/preferences", json={**shown, "phone": "+49 151 2345 6789"})
        assert changed.status_code == 200 and changed.json()["phone"] == "+4915123456789"
    finally:
        gateway.stop()


def test_twilio_saw_only_authenticated_requests_and_the_worker_no_errors(worker: Worker,
                                                                        twilio: TwilioPeer) -> None:
    assert twilio.state.refused_auth == 0
    assert "Traceback" not in worker.log() and "ERROR" not in worker.log(), worker.log()[-3000:]

