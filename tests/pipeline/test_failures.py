"""Retries, dead letters, replay from the CLI, poison messages, through a real worker."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import redis

from notifier import send_bulk, send_notification
from notifier.pipeline.producer import producer_app
from notifier.state.deadletters import DeadLetters
from notifier.state.inbox import Inbox
from notifier.state.preferences import PreferenceStore
from tests.peers.smtp import SmtpPeer
from tests.support.helpers import Worker, dead_letters_naming, uid, wait_for


def note(**extra: object) -> dict[str, object]:
    return {"type": "alert", "title": "Disk almost full", "body": "92% used", **extra}


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "notifier.cli", *args], capture_output=True, text=True,
                          env=os.environ.copy(), timeout=60)



def test_retryable_failure_succeeds_on_retry_only_for_that_target(worker: Worker, smtp: SmtpPeer) -> None:
    users = [uid() for _ in range(3)]
    addresses = [f"{u}@example.test" for u in users]
    for u, a in zip(users, addresses):
        PreferenceStore().set(u, {"email": a})
    smtp.fail(addresses[1], "451 4.3.0 try again later", "421 4.7.0 busy")
    send_bulk([(u, note(channels=["email"])) for u in users])
    for a in addresses:
        wait_for(lambda: smtp.to(a), timeout=15, message=f"email to {a}")
    assert [len(smtp.to(a)) for a in addresses] == [1, 1, 1]
    assert smtp.attempts(addresses[0]) == 1 and smtp.attempts(addresses[2]) == 1
    assert smtp.attempts(addresses[1]) == 3
    assert dead_letters_naming(addresses[1]) == []


def test_permanent_failure_dead_letters_and_cli_replay_delivers_once(worker: Worker, smtp: SmtpPeer) -> None:
    user = uid()
    address = f"{user}@example.test"
    PreferenceStore().set(user, {"email": address})
    smtp.refuse(address, "550 5.1.1 mailbox unavailable")
    sent = send_notification.delay(user, note(channels=["email"]))
    entry = wait_for(lambda: dead_letters_naming(address), message="dead letter")[0]
    assert entry["task"] == "notifier.deliver.email"
    assert "550" in entry["error"] and entry["error_type"] == "PermanentError"
    assert entry["attempts"] == 1 and entry["failed_at"] >= entry["first_attempt_at"]
    assert smtp.attempts(address) == 1

    listed = json.loads(cli("dlq", "list", "--json").stdout)
    assert entry["id"] in [e["id"] for e in listed]
    shown = json.loads(cli("dlq", "show", entry["id"]).stdout)
    assert shown["args"][0][sent.id]["title"] == "Disk almost full"

    smtp.refuse(address, None)
    replay = cli("dlq", "replay", entry["id"])
    assert replay.returncode == 0, replay.stderr
    assert "queued 1 for replay" in replay.stdout
    wait_for(lambda: smtp.to(address), message="replayed email")
    assert DeadLetters().get(entry["id"]) is None
    again = cli("dlq", "replay", entry["id"])
    assert again.returncode == 1 and f"no dead letter {entry['id']}" in again.stderr
    assert len(smtp.to(address)) == 1


def test_exhausted_retries_dead_letter(worker: Worker, smtp: SmtpPeer) -> None:
    user = uid()
    address = f"{user}@example.test"
    PreferenceStore().set(user, {"email": address})
    smtp.refuse(address, "452 4.2.2 mailbox full")
    sent = send_notification.delay(user, note(channels=["email"]))
    entry = wait_for(lambda: dead_letters_naming(address), timeout=20, message="dead letter after retries")[0]
    assert entry["error"].startswith("gave up: ") and "452" in entry["error"]
    assert entry["attempts"] == 4 and smtp.attempts(address) == 4  # NOTIFIER_MAX_RETRIES=3
    smtp.refuse(address, None)

    def outcomes() -> list[str]:
        marker = f"[{sent.id}]: email: "
        return [line.split(marker, 1)[1].strip() for line in worker.log().splitlines() if marker in line]

    wait_for(lambda: "failed 1" in outcomes(), message="the last attempt logged as failed")
    assert outcomes() == ["retried 1"] * 3 + ["failed 1"], "a dead-lettered target was logged as retried"


def test_poison_messages_go_to_dlq_and_worker_keeps_working(worker: Worker) -> None:
    app = producer_app()
    marker = uid("poison")
    app.send_task("notifier.route", args=[marker], queue="router")
    app.send_task("notifier.route", args=[[[marker, {"title": 5}, None]]], queue="router")
    app.send_task("notifier.deliver.realtime", args=[marker], queue="realtime")
    app.send_task("notifier.deliver.email", args=[{"x": marker}, [[marker]]], queue="email")
    app.send_task("notifier.no_such_task", args=[marker], queue="router")
    entries = wait_for(lambda: (lambda es: es if len(es) >= 5 else None)(
        [e for e in DeadLetters().list(1000) if marker in json.dumps(e)]), message="5 dead letters")
    by_task = {e["task"]: e for e in entries}
    assert "items must be a list" in entries[0]["error"] or any("items must be a list" in e["error"] for e in entries)
    assert any("invalid notification" in e["error"] for e in entries)
    assert "malformed task message" in by_task["notifier.deliver.realtime"]["error"]
    assert "malformed target row" in by_task["notifier.deliver.email"]["error"]
    assert by_task["notifier.no_such_task"]["error_type"] == "UnknownTask"
    user = uid()
    ok = send_notification.delay(user, note(channels=["realtime"]))
    wait_for(lambda: Inbox().get(user, ok.id), message="normal delivery after poison")


def test_cli_send_inbox_prefs(worker: Worker, redis_client: redis.Redis) -> None:
    user = uid()
    out = cli("send", user, "--type", "order_update", "--title", "Hi", "--body", "there", "--data", '{"a": 1}',
              "--idempotency-key", f"k-{user}")
    assert out.returncode == 0, out.stderr
    nid = out.stdout.strip()
    wait_for(lambda: Inbox().get(user, nid), message="CLI send delivered")
    dup = cli("send", user, "--type", "order_update", "--title", "Hi", "--idempotency-key", f"k-{user}")
    assert dup.stdout.strip() == nid
    items = json.loads(cli("inbox", user, "--json").stdout)
    assert [(i["id"], i["title"], i["body"], i["data"], i["read"]) for i in items] == [(nid, "Hi", "there", {"a": 1}, False)]
    assert "timestamp" in items[0] and items[0]["type"] == "order_update"
    Inbox().mark_read(user, [nid])
    assert json.loads(cli("inbox", user, "--unread", "--json").stdout) == []

    setp = cli("prefs", "set", user, "--channel", "email=off", "--disable-type", "promo", "--quiet-hours",
               "22:00-07:00", "--timezone", "Europe/Berlin", "--email", "a@b.test", "--json")
    assert setp.returncode == 0, setp.stderr
    got = json.loads(cli("prefs", "get", user, "--json").stdout)
    assert got == {"channels": {"email": False}, "disabled_types": ["promo"],
                   "quiet_hours": {"start": "22:00", "end": "07:00"}, "timezone": "Europe/Berlin",
                   "email": "a@b.test"}
    cleared = json.loads(cli("prefs", "set", user, "--no-quiet-hours", "--enable-type", "promo", "--json").stdout)
    assert cleared["quiet_hours"] is None and cleared["disabled_types"] == []

    for bad, expect in [(("prefs", "set", user, "--timezone", "Mars/Base"), "IANA"),
                        (("prefs", "set", user, "--quiet-hours", "25:00-07:00"), "HH:MM"),
                        (("prefs", "set", user, "--channel", "pigeon=on"), "unknown channel"),
                        (("send", "", "--type", "t", "--title", "x"), "user id"),
                        (("dlq", "show", "nope"), "no dead letter nope")]:
        res = cli(*bad)
        assert res.returncode != 0 and expect in res.stderr and "Traceback" not in res.stderr, (bad, res.stderr)


def test_dlq_purge_and_replay_all(worker: Worker, smtp: SmtpPeer) -> None:
    DeadLetters().add(task="notifier.deliver.email", args=[{}, []], kwargs={}, queue="email",
                      error="test entry", error_type="PermanentError", attempts=1)
    assert DeadLetters().size() >= 1
    refused = cli("dlq", "purge")
    assert refused.returncode != 0 and DeadLetters().size() >= 1
    purged = cli("dlq", "purge", "--yes")
    assert purged.returncode == 0 and "purged" in purged.stdout
    assert DeadLetters().size() == 0 and "empty" in cli("dlq", "list").stdout

    users = [uid() for _ in range(3)]
    for u in users:
        PreferenceStore().set(u, {"email": f"{u}@example.test"})
        smtp.refuse(f"{u}@example.test", "550 5.1.1 unknown")
    send_bulk([(u, note(channels=["email"])) for u in users])
    wait_for(lambda: DeadLetters().size() == 3, message="3 dead letters")
    for u in users:
        smtp.refuse(f"{u}@example.test", None)
    out = cli("dlq", "replay", "--all")
    assert out.returncode == 0 and "queued 3 for replay" in out.stdout, out.stderr
    for u in users:
        wait_for(lambda: smtp.to(f"{u}@example.test"), message="replayed email")
    assert DeadLetters().size() == 0
    assert cli("dlq", "replay").returncode != 0
