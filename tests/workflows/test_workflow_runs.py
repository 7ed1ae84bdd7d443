"""Workflows end to end: a real worker reading a workflows file, real Redis, the SMTP peer."""

from __future__ import annotations

import datetime as dt
import os
import signal
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from notifier import cancel, send_notification
from notifier.cli import main as cli
from notifier.pipeline.queues import ADVANCE, ROUTER_QUEUE
from notifier.state.inbox import Inbox
from notifier.state.preferences import PreferenceStore
from notifier.state.schedule import Schedule
from notifier.workflows.runs import Runs
from tests.peers.smtp import SmtpPeer
from tests.support.helpers import Worker, private_env, uid, wait_for, wait_idle

WORKFLOWS = """\
wf-comment:
  steps:
    - channel: realtime
    - delay: 2s
    - channel: email
      if: unread          # the in-app copy is still unread
wf-throttled:
  steps:
    - throttle: {limit: 2, window: 60s}
    - channel: realtime
wf-alert:
  critical: true
  steps: [{channel: email}]
wf-cond:
  steps:
    - channel: realtime
      if: data.amount > 100
    - channel: email
      if: prefs.channels.fcm == false
"""


@pytest.fixture(scope="module")
def flow_env(tmp_path_factory: pytest.TempPathFactory, smtp: SmtpPeer) -> dict[str, str]:
    path = Path(tmp_path_factory.mktemp("workflows")) / "workflows.yaml"
    path.write_text(WORKFLOWS)
    return {**private_env(), **smtp.env(), "NOTIFIER_WORKFLOWS": str(path)}


@pytest.fixture(autouse=True)
def _use_flow_env(flow_env: dict[str, str], settings_env: object) -> None:
    settings_env(flow_env)  # type: ignore[operator]


def user_with_email(**prefs: object) -> tuple[str, str]:
    user = uid()
    address = f"{user}@example.test"
    PreferenceStore().set(user, {"email": address, **prefs})
    return user, address


def note(type_: str, **extra: object) -> dict[str, object]:
    return {"type": type_, "title": f"{type_} title", "body": "body", **extra}


def test_in_app_now_then_email_only_to_who_did_not_read(flow_worker: Worker, smtp: SmtpPeer) -> None:
    reader, reader_address = user_with_email()
    other, other_address = user_with_email()
    read = send_notification.delay(reader, note("wf-comment"))
    unread = send_notification.delay(other, note("wf-comment"))
    wait_for(lambda: Inbox().get(reader, read.id) and Inbox().get(other, unread.id), message="in-app copies")
    assert smtp.to(reader_address) == [] and smtp.to(other_address) == []  # the delay holds the email
    Inbox().mark_read(reader, [read.id])

    messages = wait_for(lambda: smtp.to(other_address), timeout=15, message="email for the unread one")
    assert messages[0]["Subject"] == "wf-comment title"
    done = wait_for(lambda: (r := Runs().get(reader, read.id)) and r.status == "done" and r, message="reader's run")
    assert done.log[2]["outcome"] == "skipped" and "unread" in done.log[2]["detail"]
    wait_idle(flow_worker)
    assert smtp.to(reader_address) == []
    assert len(smtp.to(other_address)) == 1

    shown = CliRunner().invoke(cli, ["runs", "show", f"{other}/{unread.id}"])
    assert shown.exit_code == 0, shown.output
    assert '"status": "done"' in shown.output and "waited at" in shown.output and "sent at" in shown.output
    listed = CliRunner().invoke(cli, ["runs", "list", reader])
    assert f"{reader}/{read.id}" in listed.output and "wf-comment  done" in listed.output


def test_cancel_after_the_first_step_stops_the_rest(flow_worker: Worker, smtp: SmtpPeer) -> None:
    stopped, stopped_address = user_with_email()
    control, control_address = user_with_email()
    key = f"order-{uid()}"
    sent = send_notification.delay(stopped, note("wf-comment", cancel_key=key))
    send_notification.delay(control, note("wf-comment"))
    wait_for(lambda: Inbox().get(stopped, sent.id), message="first step")
    wait_for(lambda: (r := Runs().get(stopped, sent.id)) and r.status == "waiting", message="waiting run")
    assert cancel(key) == 1
    assert cancel(key) == 0  # already cancelled

    wait_for(lambda: smtp.to(control_address), timeout=15, message="the control's email")
    wait_idle(flow_worker)
    assert smtp.to(stopped_address) == []
    run = Runs().get(stopped, sent.id)
    assert run is not None and run.status == "cancelled"
    shown = CliRunner().invoke(cli, ["runs", "show", f"{stopped}/{sent.id}"])
    assert "cancelled at" in shown.output and f"cancel_key {key}" in shown.output


def test_send_at_waits_and_cancel_before_the_first_step(flow_worker: Worker) -> None:
    user = uid()
    key = f"promo-{uid()}"
    at = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=3)).astimezone(dt.timezone(dt.timedelta(hours=5)))
    kept = send_notification.delay(user, note("plain", channels=["realtime"], send_at=at.isoformat()))
    dropped = send_notification.delay(user, note("plain", channels=["realtime"], send_at=at.isoformat(),
                                                 cancel_key=key))
    now = send_notification.delay(user, note("plain", channels=["realtime"]))
    wait_for(lambda: Inbox().get(user, now.id), message="the immediate send")
    wait_for(lambda: (r := Runs().get(user, dropped.id)) and r.status == "waiting", message="waiting run")
    assert Inbox().get(user, kept.id) is None  # not before send_at
    assert CliRunner().invoke(cli, ["runs", "cancel", key]).output.strip() == "cancelled 1 run(s)"

    wait_for(lambda: Inbox().get(user, kept.id), timeout=15, message="the send_at one at its time")
    assert time.time() >= at.timestamp()
    wait_idle(flow_worker)
    assert Inbox().get(user, dropped.id) is None


def test_a_send_cancelled_while_still_queued_never_starts(flow_worker: Worker) -> None:
    """The cancel comes before the worker took the send (it is frozen): its run starts cancelled."""
    user = uid()
    key = f"late-{uid()}"
    os.killpg(flow_worker.proc.pid, signal.SIGSTOP)
    try:
        sent = send_notification.delay(user, note("wf-comment", cancel_key=key))
        assert cancel(key) == 0  # nothing started yet
        control = send_notification.delay(user, note("wf-comment"))
    finally:
        os.killpg(flow_worker.proc.pid, signal.SIGCONT)
    wait_for(lambda: Inbox().get(user, control.id), message="the control send")
    wait_idle(flow_worker)
    run = Runs().get(user, sent.id)
    assert run is not None and run.status == "cancelled"
    assert Inbox().get(user, sent.id) is None


def test_send_at_in_quiet_hours_defers_the_interruptive_channel(flow_worker: Worker, smtp: SmtpPeer) -> None:
    from tests.support.helpers import overnight_window_around_now

    zone, start, end = overnight_window_around_now()
    user, address = user_with_email(quiet_hours={"start": start, "end": end}, timezone=zone)
    at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)
    sent = send_notification.delay(user, note("plain", channels=["realtime", "email"], send_at=at.isoformat()))
    wait_for(lambda: Inbox().get(user, sent.id), timeout=15, message="in-app copy at send_at")
    wait_for(lambda: any(sent.id in m for m in Schedule().r.zrange(Schedule().keys.schedule(), 0, -1)),
             message="email deferred to the end of the quiet hours")
    wait_idle(flow_worker)
    assert smtp.to(address) == []


def test_throttle_lets_the_first_through_and_ends_the_rest(flow_worker: Worker) -> None:
    user = uid()
    ids = [send_notification.delay(user, note("wf-throttled", title=f"t{i}")).id for i in range(5)]
    wait_for(lambda: all((r := Runs().get(user, i)) and r.status == "done" for i in ids), message="5 runs done")
    wait_idle(flow_worker)
    delivered = [i for i in ids if Inbox().get(user, i)]
    outcomes = sorted(Runs().get(user, i).log[0]["outcome"] for i in ids)  # type: ignore[union-attr]
    assert len(delivered) == 2
    assert outcomes == ["passed", "passed", "throttled", "throttled", "throttled"]


def test_critical_workflow_bypasses_type_opt_out_and_quiet_hours(flow_worker: Worker, smtp: SmtpPeer) -> None:
    from tests.support.helpers import overnight_window_around_now

    zone, start, end = overnight_window_around_now()
    user, address = user_with_email(quiet_hours={"start": start, "end": end}, timezone=zone,
                                    disabled_types=["wf-alert"])
    send_notification.delay(user, note("wf-alert"))
    assert wait_for(lambda: smtp.to(address), message="critical email")[0]["Subject"] == "wf-alert title"


def test_conditions_on_data_and_preferences(flow_worker: Worker, smtp: SmtpPeer) -> None:
    big, big_address = user_with_email(channels={"fcm": False})
    small, small_address = user_with_email()
    large = send_notification.delay(big, note("wf-cond", data={"amount": 250}))
    little = send_notification.delay(small, note("wf-cond", data={"amount": 5}))
    wait_for(lambda: smtp.to(big_address), message="email when FCM is off")
    wait_for(lambda: all((r := Runs().get(u, i)) and r.status == "done" for u, i in
                         [(big, large.id), (small, little.id)]), message="both runs done")
    wait_idle(flow_worker)
    assert Inbox().get(big, large.id) is not None and Inbox().get(small, little.id) is None
    assert smtp.to(small_address) == []


def test_a_timer_that_fires_twice_takes_its_step_once(flow_worker: Worker, smtp: SmtpPeer) -> None:
    user, address = user_with_email()
    sent = send_notification.delay(user, note("wf-comment"))
    wait_for(lambda: (r := Runs().get(user, sent.id)) and r.status == "waiting", message="waiting run")
    for _ in range(3):  # the same timer again, as a redelivered or repeated advance would be
        Schedule().add(time.time(), ADVANCE, [[[user, sent.id, 2]]], {}, ROUTER_QUEUE)
    wait_for(lambda: smtp.to(address), message="the email")
    wait_for(lambda: (r := Runs().get(user, sent.id)) and r.status == "done", message="run done")
    time.sleep(2.5)  # the run's own timer fires too
    wait_idle(flow_worker)
    assert len(smtp.to(address)) == 1
    ours = [line for line in flow_worker.log().splitlines() if sent.id in line]
    assert sum("email: sent 1" in line for line in ours) == 1
    assert not [line for line in ours if "email: already" in line]  # the step was not even tried again


def test_cancel_over_http_needs_the_api_key_and_a_valid_key(flow_worker: Worker, flow_env: dict[str, str],
                                                            smtp: SmtpPeer) -> None:
    from tests.support.gateway_support import API_KEY, Gateway

    user, address = user_with_email()
    key = f"ship-{uid()}"
    gateway = Gateway(flow_env).wait_ready()
    try:
        with httpx.Client(base_url=gateway.url, timeout=10) as http:
            sent = http.post("/v1/notify", headers={"X-API-Key": API_KEY},
                             json={"user_id": user, "notification": note("wf-comment", cancel_key=key)})
            assert sent.status_code == 202, sent.text
            run_id = sent.json()["id"]
            wait_for(lambda: (r := Runs().get(user, run_id)) and r.status == "waiting", message="waiting run")
            assert http.post("/v1/notify/cancel", json={"cancel_key": key}).status_code == 401
            bad = http.post("/v1/notify/cancel", json={"cancel_key": "no spaces"}, headers={"X-API-Key": API_KEY})
            assert bad.status_code == 422 and "cancel_key" in bad.json()["message"]
            done = http.post("/v1/notify/cancel", json={"cancel_key": key}, headers={"X-API-Key": API_KEY})
            assert done.status_code == 200 and done.json() == {"cancelled": 1}
    finally:
        gateway.stop()
    control, control_address = user_with_email()
    send_notification.delay(control, note("wf-comment"))
    wait_for(lambda: smtp.to(control_address), timeout=15, message="the control's email")
    wait_idle(flow_worker)
    assert smtp.to(address) == []


def test_step_tasks_read_well_and_their_dead_letters_name_the_run(flow_worker: Worker) -> None:
    from notifier.pipeline.producer import producer_app
    from notifier.pipeline.queues import args_summary, subjects
    from notifier.state.deadletters import DeadLetters, readable

    user = uid()
    refs = [[user, "run-1", 2], ["bob", "run-2", 0]]
    assert args_summary(ADVANCE, [refs]) == f"2 workflow runs, first {user}: run run-1 from step 3"
    assert subjects(ADVANCE, [refs]) == ([user, "bob"], ["run-1", "run-2"])
    producer_app().send_task(ADVANCE, args=[[[user, "run-1", "2"]]], queue=ROUTER_QUEUE)  # step must be a number
    letter = wait_for(lambda: [e for e in map(readable, DeadLetters().list(1000)) if user in e["users"]],
                      message="the malformed step task's dead letter")[0]
    assert letter["notification_ids"] == ["run-1"] and "refs must be" in letter["error"]


def test_a_user_whose_only_send_waits_in_a_run_is_known_to_broadcasts(flow_worker: Worker) -> None:
    from notifier.redis import store

    user = uid()
    at = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)).isoformat()
    sent = send_notification.delay(user, note("plain", channels=["realtime"], send_at=at))
    wait_for(lambda: (r := Runs().get(user, sent.id)) and r.status == "waiting", message="the waiting run")
    assert store.get_redis().sismember(store.get_keys().users(), user)
