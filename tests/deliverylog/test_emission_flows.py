"""Delivery events of workflows, cancels and dead-letter replays, from a real worker, read back from
the delivery log's buffer stream."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from notifier import cancel, send_notification
from notifier.cli import main as cli
from notifier.deliverylog.events import Event, decode_entry
from notifier.pipeline.queues import LOG_QUEUE, QUEUES
from notifier.redis.store import get_keys, get_redis
from notifier.state.preferences import PreferenceStore
from tests.peers.smtp import SmtpPeer
from tests.support.helpers import Worker, private_env, start_worker, uid, wait_for

WORKFLOWS = """\
wf-log:
  steps:
    - channel: realtime
    - delay: 1s
    - channel: email
      if: unread
wf-later:
  steps:
    - delay: 60s
    - channel: email
"""


@pytest.fixture(scope="module")
def flow_env(tmp_path_factory: pytest.TempPathFactory, smtp: SmtpPeer) -> dict[str, str]:
    path = Path(tmp_path_factory.mktemp("workflows")) / "workflows.yaml"
    path.write_text(WORKFLOWS)
    return {**private_env(), **smtp.env(), "NOTIFIER_WORKFLOWS": str(path)}


@pytest.fixture(scope="module")
def flow_worker(flow_env: dict[str, str]) -> Iterator[Worker]:
    w = start_worker(flow_env, ",".join(q for q in QUEUES if q != LOG_QUEUE))  # no drain: events stay in the stream
    yield w
    w.stop()


@pytest.fixture(autouse=True)
def _use_flow_env(flow_env: dict[str, str], settings_env: object) -> None:
    settings_env(flow_env)  # type: ignore[operator]


def events_of(nid: str) -> list[Event]:
    """The notification's events in the order they happened (the stream has them in the order
    their tasks ended)."""
    return sorted((e for _, fields in get_redis().xrange(get_keys().events()) for e in decode_entry(fields)
                   if e.notification_id == nid), key=lambda e: e.at)


def user_with_email() -> tuple[str, str]:
    user = uid()
    address = f"{user}@example.test"
    PreferenceStore().set(user, {"email": address})
    return user, address


def test_a_workflow_run_logs_each_step_and_what_it_sent(flow_worker: Worker) -> None:
    user, address = user_with_email()
    nid = send_notification.delay(user, {"type": "wf-log", "title": "Comment", "body": "hi"}).id

    def done() -> list[Event]:
        found = events_of(nid)
        return found if any(e.kind == "sent" and e.channel == "email" for e in found) else []

    found = wait_for(done, timeout=15, message="the email step sent")
    steps = [(e.detail["step"], e.detail["outcome"]) for e in found if e.kind == "workflow"]
    assert steps == [(0, "sent"), (1, "waited"), (2, "sent")]
    waited = next(e for e in found if e.kind == "workflow" and e.detail["outcome"] == "waited")
    assert waited.detail["until"] == pytest.approx(waited.at + 1, abs=0.2)
    assert [(e.kind, e.channel) for e in found if e.kind != "workflow"] == [
        ("accepted", None), ("queued", "realtime"), ("sent", "realtime"), ("queued", "email"), ("sent", "email")]
    assert next(e for e in found if e.kind == "sent" and e.channel == "email").target == address


def test_a_cancel_logs_the_runs_it_stopped(flow_worker: Worker) -> None:
    user, _ = user_with_email()
    key = uid("cancel")
    nid = send_notification.delay(user, {"type": "wf-later", "title": "Later", "cancel_key": key}).id
    wait_for(lambda: any(e.kind == "workflow" for e in events_of(nid)), message="the run waiting")
    assert cancel(key) == 1
    stopped = [e for e in events_of(nid) if e.kind == "workflow" and e.detail["outcome"] == "cancelled"]
    assert [(e.user_id, e.detail["detail"]) for e in stopped] == [(user, f"cancel_key {key}")]


def test_a_dead_letter_and_its_replay(flow_worker: Worker, smtp: SmtpPeer) -> None:
    user, address = user_with_email()
    smtp.refuse(address, "550 no such user")
    try:
        nid = send_notification.delay(user, {"type": "plain", "title": "Bill", "channels": ["email"]}).id
        failed = wait_for(lambda: [e for e in events_of(nid) if e.kind == "failed"], message="the failure")
    finally:
        smtp.refuse(address, None)
    letter = failed[0].detail["dead_letter"]
    assert (failed[0].channel, failed[0].target) == ("email", address) and "550" in failed[0].detail["error"]
    result = CliRunner().invoke(cli, ["dlq", "replay", letter])
    assert result.exit_code == 0, result.output
    found = wait_for(lambda: (f := events_of(nid)) and f[-1].kind == "sent" and f, message="sent after the replay")
    assert [(e.kind, e.target) for e in found if e.channel == "email"] == [
        ("queued", None), ("failed", address), ("replayed", address), ("sent", address)]
    assert next(e for e in found if e.kind == "replayed").detail == {"dead_letter": letter}
