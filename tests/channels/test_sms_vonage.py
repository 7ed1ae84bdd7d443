"""SMS through Vonage end to end: send -> router -> sms task -> the fake Vonage SMS API
(``tests/peers/vonage.py``), through one real worker shared by the module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from notifier import send_notification
from notifier.state.preferences import PreferenceStore
from notifier.state.sms_status import SmsStatuses
from tests.peers.broker import Isolated, isolated
from tests.peers.vonage import VonagePeer
from tests.support.helpers import Worker, dead_letters_naming, uid, wait_for

_numbers = iter(range(1000, 10000))


@pytest.fixture(scope="module")
def vonage() -> Iterator[VonagePeer]:
    peer = VonagePeer().start()
    yield peer
    peer.stop()


@pytest.fixture(scope="module")
def env(vonage: VonagePeer) -> dict[str, str]:
    return {**vonage.env(), "NOTIFIER_SMS_DEFAULT_REGION": "GB", "NOTIFIER_RETRY_BACKOFF_MAX_SECONDS": "3"}


@pytest.fixture(scope="module")
def stack(env: dict[str, str]) -> Iterator[Isolated]:
    yield from isolated(env)


@pytest.fixture(scope="module")
def worker(stack: Isolated, env: dict[str, str]) -> Worker:
    return stack.worker(env, "router,realtime,sms")


def user_with_phone() -> tuple[str, str]:
    """A user whose UK number was written the national way (NOTIFIER_SMS_DEFAULT_REGION=GB); returns the
    number as Vonage takes it (E.164 digits)."""
    user, n = uid(), next(_numbers)
    assert PreferenceStore().set(user, {"phone": f"07911 12{n}"}).phone == f"+44791112{n}"
    return user, f"44791112{n}"


def note(**extra: object) -> dict[str, object]:
    return {"type": "order_update", "title": "Order shipped", "body": "Your order is on its way",
            "channels": ["sms"], **extra}



def test_the_sms_arrives_at_vonage_with_the_key_and_unicode_when_needed(worker: Worker, vonage: VonagePeer) -> None:
    user, number = user_with_phone()
    plain = send_notification.delay(user, note())
    [got] = wait_for(lambda: vonage.to(number), message="the SMS at Vonage")
    assert got.form["text"] == "Order shipped\nYour order is on its way" and got.form["from"] == "Notifier"
    assert got.form["client-ref"] == plain.id and "type" not in got.form
    status = wait_for(lambda: SmsStatuses().get("vonage", got.message_id), message="the accepted state")
    assert status["notification_id"] == plain.id and status["to"] == f"+{number}"

    send_notification.delay(user, note(title="Заказ отправлен", body="👍"))
    wait_for(lambda: len(vonage.to(number)) == 2, message="the unicode SMS")
    unicode = vonage.to(number)[1].form
    assert unicode["type"] == "unicode" and unicode["text"] == "Заказ отправлен\n👍"


def test_throttling_is_retried_and_a_barred_number_turns_sms_off(worker: Worker, vonage: VonagePeer) -> None:
    (busy, busy_number), (barred, barred_number) = user_with_phone(), user_with_phone()
    vonage.fail(busy_number, "throttled")
    vonage.fail(barred_number, "barred")
    send_notification.delay(busy, note())
    send_notification.delay(barred, note())
    wait_for(lambda: vonage.to(busy_number), timeout=15, message="the throttled SMS, retried")
    assert len(vonage.attempts(busy_number)) == 2
    prefs = wait_for(lambda: (p := PreferenceStore().get(barred)).channels.get("sms") is False and p,
                     message="SMS off for the barred number")
    assert "status 7" in prefs.channel_off_reasons["sms"]
    assert len(vonage.attempts(barred_number)) == 1
    assert dead_letters_naming(barred) == [] and dead_letters_naming(busy) == []


def test_the_worker_logged_no_errors(worker: Worker) -> None:
    assert "Traceback" not in worker.log() and "ERROR" not in worker.log(), worker.log()[-3000:]
