"""What the CLI (and the HTTP API) say when something is wrong, or when there is nothing to show.

Every error names the real cause in one line, in the user's words (no pydantic class names, no
"Value error, "), and never a password; commands that find nothing say so instead of printing
nothing. Each command runs as a real ``notifier`` subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from notifier.errors import ValidationError
from notifier.models import check_user_id
from notifier.state.deadletters import DeadLetters
from tests.support.gateway_support import API_KEY, Gateway
from tests.support.helpers import ROOT, uid, use_env

PASSWORD = "s3cretPW"
CLASS_NAMES = ("QuietHours", "Preferences", "Notification", "Registration", "Value error")


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "notifier.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=60)


def run_all(cases: dict[str, tuple[tuple[str, ...], dict[str, str] | None]]) -> dict[str, subprocess.CompletedProcess[str]]:
    """The commands at once (they are independent), each outcome by name."""
    with ThreadPoolExecutor(4) as pool:
        futures = {name: pool.submit(cli, *args, env=env) for name, (args, env) in cases.items()}
        return {name: f.result() for name, f in futures.items()}


def error_line(res: subprocess.CompletedProcess[str], status: int = 1) -> str:
    """The one error line of a failed command (asserting it failed with ``status`` and no traceback)."""
    lines = res.stderr.strip().splitlines()
    assert res.returncode == status, (res.args, res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr and lines, res.stderr
    return lines[-1]


def test_errors_name_the_real_cause_in_the_users_words() -> None:
    user = uid()
    down = f"redis://admin:{PASSWORD}@127.0.0.1:1/0"
    results = run_all({
        "bad url": (("inbox", user), {"NOTIFIER_REDIS_URL": "notaurl"}),
        "bad broker url": (("send", user, "--type", "t", "--title", "x"), {"NOTIFIER_BROKER_URL": "notaurl"}),
        "control character": (("inbox", "bob\n"), None),
        "bad time": (("prefs", "set", user, "--quiet-hours", "25:00-07:00"), None),
        "empty window": (("prefs", "set", user, "--quiet-hours", "07:00-07:00"), None),
        "bad type": (("send", user, "--type", "Order Update", "--title", "x"), None),
        "bad token": (("devices", "add", user, "--platform", "fcm", "--token", "short"), None),
        "no such dead letter": (("dlq", "show", "nosuchid"), None),
        "well-formed unknown id": (("dlq", "show", "1-0"), None),
        "truncated --data": (("send", user, "--type", "t", "--title", "x", "--data", '{"a": 1, '), None),
        "truncated --subscription": (("devices", "add", user, "--platform", "webpush", "--subscription",
                                      '{"endpoint": '), None),
        "store password": (("inbox", user), {"NOTIFIER_REDIS_URL": down}),
        "broker password": (("send", user, "--type", "t", "--title", "x"), {"NOTIFIER_BROKER_URL": down}),
        "empty timezone": (("prefs", "set", user, "--timezone", ""), None),
    })
    line = {name: error_line(res) for name, res in results.items()}
    assert "'notaurl' is not a Redis URL" in line["bad url"] and "Cluster" not in line["bad url"]
    assert "NOTIFIER_BROKER_URL: 'notaurl' is not a URL" in line["bad broker url"]
    assert "user id 'bob\\n'" in line["control character"]
    assert "contains a control character (U+000A)" in line["control character"]
    assert line["bad time"] == "Error: invalid quiet hours: start: '25:00' is not a time as HH:MM (00:00 to 23:59)"
    assert line["empty window"] == "Error: invalid quiet hours: start and end must differ"
    assert "invalid notification: type: 'Order Update' does not match" in line["bad type"]
    assert "invalid device: an FCM registration token is" in line["bad token"]
    for name in ("bad time", "empty window", "bad type", "bad token", "empty timezone"):
        assert not any(word in line[name] for word in CLASS_NAMES), line[name]
    assert line["no such dead letter"].startswith("Error: no dead letter nosuchid")
    assert line["well-formed unknown id"].startswith("Error: no dead letter 1-0")
    assert "--data: invalid JSON at position 9" in line["truncated --data"]
    assert "--subscription: invalid JSON at position 13" in line["truncated --subscription"]
    assert "cannot reach Redis at redis://admin:***@127.0.0.1:1/0" in line["store password"]
    assert "cannot reach the broker at redis://admin:***@127.0.0.1:1/0" in line["broker password"]
    assert all(PASSWORD not in res.stderr + res.stdout for res in results.values())
    assert "time zone cannot be empty" in line["empty timezone"]


def test_stats_refuses_a_timeout_that_is_not_positive() -> None:
    for value in ("-1", "0"):
        assert "--timeout" in error_line(cli("stats", "--timeout", value), status=2)


def test_listings_say_when_there_is_nothing() -> None:
    fresh = {"NOTIFIER_KEY_PREFIX": uid("empty")}
    results = run_all({
        "groups": (("groups", "list"), fresh),
        "members": (("groups", "list", "nobody-here"), fresh),
        "devices": (("devices", "list", "alice"), fresh),
        "inbox": (("inbox", "alice"), fresh),
        "unread": (("inbox", "alice", "--unread"), fresh),
        "dlq": (("dlq", "list"), fresh),
    })
    assert all(res.returncode == 0 for res in results.values()), results
    said = {name: res.stdout.strip() for name, res in results.items()}
    assert said == {"groups": "no groups", "members": "group nobody-here has no members",
                    "devices": "alice has no devices", "inbox": "alice's inbox is empty",
                    "unread": "alice's inbox has no unread notifications", "dlq": "dead-letter queue is empty"}


def test_dead_letters_list_and_show_say_who_what_and_when() -> None:
    prefix = {"NOTIFIER_KEY_PREFIX": uid("dlq")}
    user, nid = uid(), uid("n")
    with use_env(prefix):
        entry_id = DeadLetters().add(
            task="notifier.deliver.email", args=[{nid: {"id": nid, "type": "t", "title": "x"}},
                                                 [[user, f"{user}@example.test"]]],
            kwargs={}, queue="email", error="550 5.1.1 mailbox\nunavailable", error_type="PermanentError",
            attempts=1, first_attempt_at=1_700_000_000.25)
    listed = cli("dlq", "list", env=prefix)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.startswith(f"{entry_id}  20")
    assert f"user {user}  channel email  notification {nid}  attempts=1  550 5.1.1 mailbox unavailable" in listed.stdout
    shown = cli("dlq", "show", entry_id, env=prefix)
    assert shown.returncode == 0, shown.stderr
    assert '"first_attempt_at": "2023-11-14T22:13:20.250+00:00"' in shown.stdout
    assert '"failed_at": "20' in shown.stdout and f'"users": [\n    "{user}"' in shown.stdout


def test_dlq_replay_checks_every_id_before_queueing_any() -> None:
    prefix = {"NOTIFIER_KEY_PREFIX": uid("dlq")}
    with use_env(prefix):
        letters = DeadLetters()
        known = letters.add(task="notifier.deliver.email", args=[{}, []], kwargs={}, queue="email",
                            error="test", error_type="PermanentError", attempts=1)
        refused = cli("dlq", "replay", known, "1-0", "nosuchid", env=prefix)
        assert error_line(refused).startswith("Error: no dead letter 1-0, nosuchid; nothing was queued")
        assert letters.get(known) is not None, "the known letter was not replayed"
        assert "queued" not in refused.stdout


def test_user_ids_and_ids_match_in_full() -> None:
    from notifier.state.idempotency import check_key
    from notifier.state.inbox import check_entry_id

    for bad in ("bob\n", "a\x00b", " ", "x" * 129):
        with pytest.raises(ValidationError):
            check_user_id(bad)
    for check, value in ((check_entry_id, "1700000000000-0\n"), (check_key, "key\n")):
        with pytest.raises(ValidationError):
            check(value)


@pytest.fixture(scope="module")
def gateway() -> Iterator[Gateway]:
    gw = Gateway().wait_ready()
    yield gw
    gw.stop()


def test_a_truncated_json_body_says_where_it_breaks(gateway: Gateway) -> None:
    with httpx.Client(base_url=gateway.url, timeout=10) as http:
        response = http.post("/v1/notify", content=b'{"user_id": "a", ',
                             headers={"X-API-Key": API_KEY, "Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.json()["message"].startswith("invalid request: body: invalid JSON at position 17 ("), response.text


@pytest.mark.parametrize("as_json", ["0", "1"])
def test_log_lines_never_show_a_url_password(as_json: str) -> None:
    script = ("import logging\nfrom notifier.logs import configure_logging\nconfigure_logging()\n"
              "log = logging.getLogger('notifier.test')\n"
              f"log.warning('cannot reach %s', 'redis://admin:{PASSWORD}@127.0.0.1:1/0')\n"
              "try:\n"
              f"    raise OSError('amqp://guest:{PASSWORD}@127.0.0.1:1// refused')\n"
              "except OSError:\n"
              "    log.exception('broker down')\n")
    res = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "NOTIFIER_LOG_JSON": as_json})
    assert "redis://admin:***@127.0.0.1:1/0" in res.stderr and "amqp://guest:***@127.0.0.1:1//" in res.stderr
    assert PASSWORD not in res.stderr, res.stderr
