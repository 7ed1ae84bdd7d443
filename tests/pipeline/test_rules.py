"""Preference rules, quiet hours, rate limits, end to end through a real worker."""

from __future__ import annotations

import datetime as dt
import time
import zoneinfo
from collections.abc import Callable

import httpx
import redis

from notifier import send_notification
from notifier.redis.store import get_keys
from notifier.state.inbox import Inbox
from notifier.state.preferences import PreferenceStore
from tests.peers.smtp import SmtpPeer
from tests.support.helpers import Worker, overnight_window_around_now, private_env, uid, wait_for, wait_idle
from tests.support.processes import free_port


def note(**extra: object) -> dict[str, object]:
    return {"type": "order_update", "title": "Order Shipped", "body": "on its way", **extra}


def user_with_email(**prefs: object) -> tuple[str, str]:
    user = uid()
    address = f"{user}@example.test"
    PreferenceStore().set(user, {"email": address, **prefs})
    return user, address


def test_disabled_channel_skips_it_but_inbox_still_gets_it(worker: Worker, smtp: SmtpPeer) -> None:
    user, address = user_with_email(channels={"email": False})
    sent = send_notification.delay(user, note(channels=["email", "realtime"]))
    wait_for(lambda: Inbox().get(user, sent.id), message="inbox entry")
    wait_idle(worker, sent.id)
    assert smtp.to(address) == []


def test_disabled_type_delivers_nothing(worker: Worker, smtp: SmtpPeer) -> None:
    user, address = user_with_email(disabled_types=["marketing"])
    marketing = send_notification.delay(user, note(type="marketing", channels=["email", "realtime"]))
    control = send_notification.delay(user, note(channels=["realtime"]))
    wait_for(lambda: Inbox().get(user, control.id), message="control notification")
    wait_idle(worker, marketing.id, control.id)
    assert [i["id"] for i in Inbox().list(user).items] == [control.id]
    assert smtp.to(address) == []



def test_quiet_hours_defer_email_to_window_end_then_deliver(worker: Worker, smtp: SmtpPeer,
                                                            redis_client: redis.Redis) -> None:
    zone, start, end = overnight_window_around_now()
    user, address = user_with_email(quiet_hours={"start": start, "end": end}, timezone=zone)
    sent = send_notification.delay(user, note(channels=["email", "realtime"]))

    wait_for(lambda: Inbox().get(user, sent.id), message="realtime is not deferred")
    scheduled = wait_for(lambda: [(m, s) for m, s in redis_client.zrange(get_keys().schedule(), 0, -1,
                                                                         withscores=True) if sent.id in m],
                         message="deferred email in the schedule")
    member, due = scheduled[0]
    local_end = dt.datetime.fromtimestamp(due, zoneinfo.ZoneInfo(zone))
    assert local_end.strftime("%H:%M") == end and local_end.second == 0
    assert 3000 < due - time.time() <= 3600 + 60
    wait_idle(worker, sent.id)
    assert smtp.to(address) == []

    redis_client.zadd(get_keys().schedule(), {member: time.time() - 1})  # the window ends
    wait_for(lambda: smtp.to(address), message="email after the quiet window")
    assert len(smtp.to(address)) == 1


def test_critical_bypasses_quiet_hours(worker: Worker, smtp: SmtpPeer) -> None:
    zone, start, end = overnight_window_around_now()
    user, address = user_with_email(quiet_hours={"start": start, "end": end}, timezone=zone)
    send_notification.delay(user, note(channels=["email"], priority="critical", title="Server down"))
    messages = wait_for(lambda: smtp.to(address), message="critical email")
    assert messages[0]["Subject"] == "Server down"


def test_rate_limit_at_the_edge_keeps_inbox(worker: Worker, smtp: SmtpPeer) -> None:
    """email=3/60 in the test settings: the 4th email is not sent, but the inbox has all 4."""
    user, address = user_with_email()
    ids = [send_notification.delay(user, note(channels=["email", "realtime"], title=f"n{i}")).id
           for i in range(4)]
    wait_for(lambda: len(Inbox().list(user).items) == 4, message="4 inbox entries")
    wait_for(lambda: len(smtp.to(address)) >= 3, message="3 emails")
    wait_idle(worker, *ids)
    assert len(smtp.to(address)) == 3
    only_email = send_notification.delay(user, note(channels=["email"], title="over"))
    wait_for(lambda: Inbox().get(user, only_email.id), message="over-limit email-only send lands in the inbox")
    wait_idle(worker, only_email.id)
    assert {i["id"] for i in Inbox().list(user).items} == {*ids, only_email.id}
    assert len(smtp.to(address)) == 3


def test_a_channel_without_an_address_or_device_is_logged_and_counted_as_skipped(
        worker_factory: Callable[..., Worker], settings_env: Callable[[dict[str, str]], None]) -> None:
    port = free_port()
    private = private_env()
    w = worker_factory({**private, "NOTIFIER_WORKER_METRICS_PORT": str(port)}, queues="router,realtime")
    settings_env(private)
    user = uid()
    sent = send_notification.delay(user, note(channels=["email", "fcm", "realtime"]))
    wait_for(lambda: Inbox().get(user, sent.id), message="inbox entry")

    def logged() -> list[str]:
        return [line.split(f"[{sent.id}]: ", 1)[1].strip() for line in w.output if f"[{sent.id}]: " in line]

    wait_for(lambda: "fcm skipped: no device" in logged(), message="the skipped channels logged")
    assert {"email skipped: no address", "fcm skipped: no device"} <= set(logged())

    def routed(channel: str, decision: str) -> float:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("notifier_routed_total{")
                   and f'channel="{channel}"' in line and f'decision="{decision}"' in line)

    wait_for(lambda: routed("email", "no_address") and routed("fcm", "no_device"), message="the routed counter")
    assert routed("email", "no_address") == 1 and routed("fcm", "no_device") == 1
