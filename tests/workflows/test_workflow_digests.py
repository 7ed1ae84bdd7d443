"""Digest steps end to end: a real worker, real Redis, the SMTP and FCM peers."""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from notifier import send_notification
from notifier.state.devices import Devices
from notifier.state.inbox import Inbox
from notifier.state.preferences import PreferenceStore
from notifier.workflows.runs import Runs
from tests.peers.fcm import FcmPeer
from tests.peers.smtp import SmtpPeer
from tests.support.helpers import Worker, private_env, uid, wait_for, wait_idle

WORKFLOWS = """\
comment:
  steps:
    - channel: realtime
    - digest: {window: 2s, key: data.post_id, max: 50}
    - channel: push
    - delay: 1s
    - channel: email
      if: unread
burst:
  steps:
    - digest: {window: 3s}
    - channel: email
gated:
  steps:
    - digest: {window: 2s}
      if: data.batch == true
    - channel: email
"""


@pytest.fixture(scope="module")
def flow_env(tmp_path_factory: pytest.TempPathFactory, smtp: SmtpPeer, fcm: FcmPeer) -> dict[str, str]:
    folder = Path(tmp_path_factory.mktemp("digests"))
    (folder / "workflows.yaml").write_text(WORKFLOWS)
    credentials = fcm.service_account(folder / "service-account.json")
    return {**private_env(), **smtp.env(), **fcm.env(credentials), "NOTIFIER_WORKFLOWS": str(folder / "workflows.yaml"),
            "NOTIFIER_VISIBILITY_TIMEOUT_SECONDS": "5", "NOTIFIER_CLAIM_SECONDS": "3",
            "NOTIFIER_RATE_LIMITS": "realtime=1000/60,email=3/60,fcm=3/3,apns=1000/60,webpush=1000/60"}


@pytest.fixture(autouse=True)
def _use_flow_env(flow_env: dict[str, str], settings_env: Any) -> None:
    settings_env(flow_env)


def member(fcm_token: str, **prefs: object) -> tuple[str, str]:
    user = uid()
    PreferenceStore().set(user, {"email": f"{user}@example.test", **prefs})
    Devices().register(user, {"platform": "fcm", "token": fcm_token})
    return user, f"{user}@example.test"


def fcm_token() -> str:
    return f"fcm-{uid()}:APA91b{uid()}"


def digest_of(received: Any) -> dict[str, Any]:
    return orjson.loads(received.message["data"]["digest"])


def test_the_issue_workflow_in_app_now_one_push_digest_email_for_who_did_not_read(
        flow_worker: Worker, smtp: SmtpPeer, fcm: FcmPeer) -> None:
    reader_token, other_token = fcm_token(), fcm_token()
    reader, reader_address = member(reader_token)
    other, other_address = member(other_token)
    sent = {u: [send_notification.delay(u, {"type": "comment", "title": f"comment {i}", "body": "nice",
                                            "data": {"post_id": "p1"}}).id for i in range(3)]
            for u in (reader, other)}
    wait_for(lambda: all(Inbox().get(u, i) for u, ids in sent.items() for i in ids), message="in-app now, each")
    Inbox().mark_read(reader)
    pushes = wait_for(lambda: fcm.to(reader_token) and fcm.to(other_token) and (fcm.to(reader_token),
                                                                                fcm.to(other_token)),
                      timeout=15, message="one push digest each")
    for received in pushes:
        assert len(received) == 1
        digest = digest_of(received[0])
        assert digest["count"] == 3 and [e["title"] for e in digest["first"]] == ["comment 0", "comment 1", "comment 2"]
    wait_for(lambda: smtp.to(other_address), timeout=15, message="email for the one who did not read")
    wait_for(lambda: all((r := Runs().get(u, i)) and r.status == "done" for u, ids in sent.items() for i in ids),
             message="every run done")
    for user, ids in sent.items():
        digest_steps = sorted((r.log[1]["outcome"], r.log[1]["detail"].split(" (")[0])
                              for i in ids if (r := Runs().get(user, i)))
        assert [o for o, _ in digest_steps] == ["closed", "joined", "joined"]
        assert digest_steps[0][1] == "3 events"
    wait_idle(flow_worker)
    assert smtp.to(reader_address) == [] and len(smtp.to(other_address)) == 1
    assert len(fcm.to(reader_token)) == 1 and len(fcm.to(other_token)) == 1


def _send_burst(env: dict[str, str], user: str, start: float, count: int, first: int) -> list[str]:
    os.environ.update(env)
    from notifier import send_notification as send

    while time.time() < start:
        time.sleep(0.001)
    return [send.delay(user, {"type": "burst", "title": f"event {first + i}"}).id for i in range(count)]


def test_200_events_from_4_processes_make_exactly_one_digest_of_200(flow_worker: Worker, flow_env: dict[str, str],
                                                                    smtp: SmtpPeer) -> None:
    user = uid()
    PreferenceStore().set(user, {"email": f"{user}@example.test"})
    start = time.time() + 2
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        batches = pool.starmap(_send_burst, [(flow_env, user, start, 50, 50 * p) for p in range(4)])
    ids = [i for batch in batches for i in batch]
    assert len(set(ids)) == 200
    wait_for(lambda: smtp.to(f"{user}@example.test"), timeout=20, message="the one digest email")
    wait_for(lambda: all((r := Runs().get(user, i)) and r.status == "done" for i in ids), message="200 runs done")
    wait_idle(flow_worker)
    runs = [Runs().get(user, i) for i in ids]
    outcomes = sorted(r.log[0]["outcome"] for r in runs if r is not None)
    assert outcomes == ["closed"] + ["joined"] * 199
    assert [r.log[0]["detail"] for r in runs if r is not None and r.log[0]["outcome"] == "closed"] == ["200 events"]
    assert len(smtp.to(f"{user}@example.test")) == 1


def test_a_rate_limited_burst_of_30_pushes_sends_the_first_3_then_one_summary(flow_worker: Worker,
                                                                             fcm: FcmPeer) -> None:
    """fcm=3/3 here: 3 pushes go out at once, the 27 held back wait in the user's push digest, which
    the first one's hold ending (3 s) closes into one summary."""
    token = fcm_token()
    user, _ = member(token)
    ids = [send_notification.delay(user, {"type": "plain", "title": f"push {i}", "channels": ["fcm"]}).id
           for i in range(30)]
    wait_for(lambda: len(fcm.to(token)) >= 3, message="the first pushes")
    summary = wait_for(lambda: len(fcm.to(token)) >= 4 and fcm.to(token)[3], timeout=20, message="the summary push")
    digest = digest_of(summary)
    assert digest["count"] == 27
    assert summary.message["notification"]["title"].endswith("(+26 more)")
    wait_idle(flow_worker)
    time.sleep(3.5)  # a second summary would come a hold later
    wait_idle(flow_worker)
    assert len(fcm.to(token)) == 4
    first_three = {r.message["data"]["notification_id"] for r in fcm.to(token)[:3]}
    assert first_three <= set(ids)


def test_quiet_hours_roll_emails_into_one_summary_at_their_end(flow_worker: Worker, smtp: SmtpPeer) -> None:
    from notifier.state.schedule import Schedule
    from tests.support.helpers import overnight_window_around_now

    zone, start, end = overnight_window_around_now()
    user, address = member(fcm_token(), quiet_hours={"start": start, "end": end}, timezone=zone)
    ids = [send_notification.delay(user, {"type": "plain", "title": f"mail {i}", "channels": ["email"]}).id
           for i in range(3)]
    schedule = Schedule()
    timers = wait_for(lambda: [(m, due) for m, due in schedule.r.zrange(schedule.keys.schedule(), 0, -1,
                                                                         withscores=True) if user in m],
                      message="the digest's timer at the end of the quiet hours")
    assert len(timers) == 1 and timers[0][1] - time.time() > 3000
    wait_for(lambda: sum(1 for i in ids if (r := Runs().get(user, i + "-remail")) and r.status == "done") == 2,
             message="two emails joined the first one's digest")
    wait_idle(flow_worker)
    assert smtp.to(address) == []
    schedule.r.zadd(schedule.keys.schedule(), {timers[0][0]: time.time() - 1})  # the quiet hours end
    mail = wait_for(lambda: smtp.to(address), timeout=15, message="one summary email")
    wait_idle(flow_worker)
    assert len(smtp.to(address)) == 1 and mail[0]["Subject"] == "mail 0 (+2 more)"


def test_a_user_sets_their_own_digest_window(flow_worker: Worker, smtp: SmtpPeer) -> None:
    """burst's digest is 3 s; this user set 1 s for it, the other keeps 3 s."""
    quick, slow = uid(), uid()
    PreferenceStore().set(quick, {"email": f"{quick}@example.test", "digests": {"burst": {"window": "1s"}}})
    PreferenceStore().set(slow, {"email": f"{slow}@example.test"})
    opened = time.time()
    for user in (quick, slow):
        for i in range(3):
            send_notification.delay(user, {"type": "burst", "title": f"{user} {i}"})
    wait_for(lambda: smtp.to(f"{quick}@example.test"), timeout=10, message="the quick user's digest")
    quick_at = time.time() - opened
    assert smtp.to(f"{slow}@example.test") == []  # the positive signal above came first
    wait_for(lambda: smtp.to(f"{slow}@example.test"), timeout=10, message="the other user's digest")
    slow_at = time.time() - opened
    assert quick_at < 2.8 <= slow_at, (quick_at, slow_at)


def test_a_daily_digest_window_closes_at_the_next_local_time() -> None:
    import datetime as dt

    from notifier.errors import ValidationError
    from notifier.models import DigestWindow, Preferences, validate

    nine = DigestWindow(at="09:00")
    before = dt.datetime(2026, 12, 1, 7, 30, tzinfo=dt.UTC)  # 08:30 in Berlin
    assert nine.seconds_from(before, "Europe/Berlin") == 30 * 60
    after = dt.datetime(2026, 12, 1, 8, 30, tzinfo=dt.UTC)  # 09:30 in Berlin: tomorrow's 09:00
    assert nine.seconds_from(after, "Europe/Berlin") == 23.5 * 3600
    assert DigestWindow(window="2h").seconds_from(before, "UTC") == 7200
    for bad in ({}, {"window": "1h", "at": "09:00"}, {"at": "9am"}, {"window": "forever"}):
        with pytest.raises(ValidationError):
            validate(Preferences, {"digests": {"comment": bad}})


def test_a_digest_step_whose_condition_is_false_is_skipped_not_joined(flow_worker: Worker, smtp: SmtpPeer) -> None:
    user = uid()
    address = f"{user}@example.test"
    PreferenceStore().set(user, {"email": address})
    batched = [send_notification.delay(user, {"type": "gated", "title": f"batched {i}", "data": {"batch": True}}).id
               for i in range(2)]
    alone = send_notification.delay(user, {"type": "gated", "title": "alone", "data": {"batch": False}}).id
    first = wait_for(lambda: smtp.to(address), message="the send that skips the digest, at once")
    assert [m["Subject"] for m in first] == ["alone"]
    wait_for(lambda: len(smtp.to(address)) == 2, timeout=15, message="the digest of the two")
    wait_idle(flow_worker)
    assert len(smtp.to(address)) == 2
    run = Runs().get(user, alone)
    assert run is not None and run.log[0]["outcome"] == "skipped"
    outcomes = sorted(r.log[0]["outcome"] for i in batched if (r := Runs().get(user, i)))
    assert outcomes == ["closed", "joined"]
