"""Workflow files and the model: what parses, and errors that name the file, line and step."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from notifier.cli import main as cli
from notifier.errors import WorkflowFileError
from notifier.workflows.files import load
from notifier.workflows.model import Condition, Workflow, duration

GOOD = """\
comment:
  steps:
    - channel: realtime
    - throttle: {limit: 3, window: 1h, key: data.post_id}
    - channel: push
    - delay: 15m
    - channel: email
      if: unread
password_reset:
  critical: true
  steps: [{channel: email}]
"""


def write(tmp_path: Path, text: str, name: str = "workflows.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_issue_example_without_digest_parses(tmp_path: Path) -> None:
    found = load(write(tmp_path, GOOD))
    comment = found["comment"]
    assert [s.kind for s in comment.steps] == ["channel", "throttle", "channel", "delay", "channel"]
    assert comment.steps[3].seconds == 900 and str(comment.steps[4].condition) == "unread"
    assert comment.steps[1].limit == 3 and comment.steps[1].seconds == 3600 and comment.steps[1].key == "data.post_id"
    assert found["password_reset"].critical and not comment.critical
    assert found.for_type("other").steps[0].channel == "*"  # no workflow: every channel at once


def test_toml_gives_the_same_model(tmp_path: Path) -> None:
    toml = """\
[comment]
steps = [{channel = "realtime"}, {throttle = {limit = 3, window = "1h", key = "data.post_id"}},
         {channel = "push"}, {delay = "15m"}, {channel = "email", if = "unread"}]
[password_reset]
critical = true
steps = [{channel = "email"}]
"""
    assert dict(load(write(tmp_path, toml, "workflows.toml"))) == dict(load(write(tmp_path, GOOD)))


@pytest.mark.parametrize(("text", "expected"), [
    ("comment:\n  steps:\n    - channel: realtime\n    - delay: soon\n",
     ":4: comment, step 2 (delay): delay must be a duration like 30s, 15m, 1h or 1d, not 'soon'"),
    ("comment:\n  steps:\n    - channel: pigeon\n", ":3: comment, step 1 (channel): channel 'pigeon' is not registered"),
    ("comment:\n  steps:\n    - channel: email\n      if: unseen\n", "unseen needs an inbox that records seen"),
    ("comment:\n  steps:\n    - channel: email\n      if: data.x ~ 3\n", "is not a condition"),
    ("comment:\n  steps:\n    - digest: {window: 1h, max: -1}\n", "digest max must be a whole number"),
    ("comment:\n  steps:\n    - digest: {window: 1h, by: x}\n", "unknown digest field 'by'"),
    ("comment:\n  steps:\n    - {channel: email, delay: 5m}\n", "exactly one of channel, delay, throttle, digest"),
    ("comment:\n  stepz: []\n", ":1: comment: a workflow is a mapping with steps"),
    ("Bad Type:\n  steps: [{channel: email}]\n", "is not a notification type"),
    ("comment:\n  steps: [{channel: email}\n", "not valid YAML"),
    ("comment:\n  steps:\n    - throttle: {limit: 0, window: 1h}\n", "throttle limit must be a whole number"),
])
def test_errors_name_the_file_line_and_step(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(WorkflowFileError) as caught:
        load(path)
    assert str(caught.value).startswith(str(path))
    assert expected in str(caught.value)
    checked = CliRunner().invoke(cli, ["workflows", "check", str(path)])
    assert checked.exit_code == 1 and expected in checked.output


def test_check_is_quiet_for_a_good_file_and_names_a_missing_one(tmp_path: Path) -> None:
    ok = CliRunner().invoke(cli, ["workflows", "check", str(write(tmp_path, GOOD))])
    assert ok.exit_code == 0 and ok.output == ""
    missing = CliRunner().invoke(cli, ["workflows", "check", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 1 and "cannot read the workflows file" in missing.output


def test_list_and_show_read_the_configured_file(tmp_path: Path, settings_env: object) -> None:
    from notifier.workflows import files

    settings_env({"NOTIFIER_WORKFLOWS": str(write(tmp_path, GOOD))})  # type: ignore[operator]
    files._cached.cache_clear()
    try:
        listed = CliRunner().invoke(cli, ["workflows", "list"])
        assert "comment: channel realtime -> throttle 3 per 3600s by data.post_id -> channel push -> delay 900s" \
            in listed.output
        assert "password_reset (critical): channel email" in listed.output
        shown = CliRunner().invoke(cli, ["workflows", "show", "comment"])
        assert "  5. channel email if unread" in shown.output
        assert "has no workflow" in CliRunner().invoke(cli, ["workflows", "show", "other"]).output
    finally:
        files._cached.cache_clear()


def test_durations_and_conditions() -> None:
    assert [duration(v, "d") for v in (90, "90s", "15m", "1.5h", "1d")] == [90, 90, 900, 5400, 86400]
    for bad in (0, "0s", "31d", True, "x"):
        with pytest.raises(ValueError, match=r"duration|more than 0"):
            duration(bad, "delay")
    big = Condition.parse("data.order.amount >= 100")
    assert big.holds({"order": {"amount": 100}}, {}, unread=False)
    assert not big.holds({"order": {"amount": 99}}, {}, unread=False)
    assert not big.holds({"order": {"amount": "lots"}}, {}, unread=False)  # no comparison across kinds
    assert not big.holds({}, {}, unread=False)
    off = Condition.parse('prefs.timezone == "Europe/Berlin"')
    assert off.holds({}, {"timezone": "Europe/Berlin"}, unread=True)
    assert Condition.parse("read").holds({}, {}, unread=False)
    with pytest.raises(ValueError, match="JSON value"):
        Condition.parse("data.x == banana")


def test_python_api_builds_the_same_model() -> None:
    built = Workflow.build("comment", [{"channel": "realtime"}, {"delay": "15m"},
                                       {"channel": "email", "if": "unread"}])
    assert [s.describe() for s in built.steps] == ["channel realtime", "delay 900s", "channel email if unread"]
    with pytest.raises(ValueError, match=r"step 2 \(delay\)"):
        Workflow.build("comment", [{"channel": "realtime"}, {"delay": -1}])


def test_a_bad_file_stops_the_worker_the_gateway_and_the_producer(tmp_path: Path, settings_env: object) -> None:
    """Each reads the file at start (the producer at its first send) and says where it is wrong."""
    import os
    import subprocess
    import sys

    from notifier import send_notification
    from notifier.workflows import files
    from tests.support.helpers import ROOT, base_env

    path = write(tmp_path, "comment:\n  steps:\n    - channel: realtime\n    - delay: soon\n")
    expected = f"{path}:4: comment, step 2 (delay)"
    env = {**os.environ, **base_env(), "NOTIFIER_WORKFLOWS": str(path)}
    worker = subprocess.run([sys.executable, "-m", "celery", "-A", "workers", "worker", "-Q", "router", "-P", "solo"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert worker.returncode != 0 and "worker not started" in worker.stderr and expected in worker.stderr
    gateway = subprocess.run([sys.executable, "-m", "notifier.cli", "gateway", "--port", "1"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=60, check=False)
    assert gateway.returncode == 1 and expected in gateway.stderr and "Traceback" not in gateway.stderr

    from notifier.pipeline.producer import producer_app

    settings_env({"NOTIFIER_WORKFLOWS": str(path)})  # type: ignore[operator]
    files._cached.cache_clear()
    producer_app.cache_clear()
    try:
        with pytest.raises(WorkflowFileError, match="step 2 \\(delay\\)"):
            send_notification.delay("alice", {"type": "comment", "title": "hi"})
    finally:
        files._cached.cache_clear()
        producer_app.cache_clear()
