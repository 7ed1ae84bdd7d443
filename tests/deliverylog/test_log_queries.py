"""Reading the delivery log: ``notifier status`` / ``notifier log``, the admin API, a user's own
status, on PostgreSQL and SQLite, with events written as the drain writes them."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from notifier.deliverylog import queries
from notifier.deliverylog.events import Event
from notifier.errors import ValidationError
from tests.deliverylog.logdb import LogDatabase, log_database
from tests.support.gateway_support import API_KEY, Gateway, token
from tests.support.helpers import ROOT, uid

log_db = log_database


def story(nid: str, user: str, other: str, at: float) -> list[Event]:
    """A notification to two users: ``user`` gets it on realtime and fcm (one retry, then sent), the
    other has it skipped on email and read in the inbox."""
    return [
        Event("accepted", nid, user, detail={"idempotency": "new"}, at=at, type="comment"),
        Event("queued", nid, user, "realtime", at=at + 1, type="comment"),
        Event("queued", nid, user, "fcm", at=at + 1, type="comment"),
        Event("sent", nid, user, "realtime", at=at + 2, type="comment"),
        Event("retried", nid, user, "fcm", "fcm-1", {"attempt": 1, "delay": 2, "error": "503"}, at + 3, "comment"),
        Event("sent", nid, user, "fcm", "fcm-1", {"provider_id": "projects/p/messages/1"}, at + 5, "comment"),
        Event("accepted", nid, other, detail={"idempotency": "new"}, at=at, type="comment"),
        Event("skipped", nid, other, "email", detail={"reason": "no_address"}, at=at + 1, type="comment"),
        Event("sent", nid, other, "realtime", at=at + 2, type="comment"),
        Event("read", nid, other, "realtime", at=at + 6, type="comment"),
    ]


def cli(db: LogDatabase, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "notifier.cli", *args], check=False, cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "NOTIFIER_DATABASE_URL": db.url}, timeout=60)


def test_timeline_gives_each_channel_and_target_its_last_state(log_db: LogDatabase) -> None:
    nid, alice, bob = uid("n"), uid("alice"), uid("bob")
    log_db.write(story(nid, alice, bob, time.time() - 60))
    log_db.write([Event("sent", uid("other"), alice, "realtime", type="comment")])

    found = queries.timeline(nid, engine=log_db.engine)
    assert found is not None
    assert [e.event.kind for e in found.events] == ["accepted", "queued", "queued", "sent", "retried", "sent",
                                                    "accepted", "skipped", "sent", "read"]
    states = {(d.user_id, d.channel, d.target): d.state for d in found.deliveries}
    assert states == {(alice, "realtime", None): "sent", (alice, "fcm", None): "queued",
                      (alice, "fcm", "fcm-1"): "sent", (bob, "email", None): "skipped",
                      (bob, "realtime", None): "read"}
    device = next(d for d in found.deliveries if d.target == "fcm-1")
    assert [e.event.kind for e in device.events] == ["retried", "sent"]
    assert device.events[-1].event.detail == {"provider_id": "projects/p/messages/1"}

    mine = queries.timeline(nid, bob, engine=log_db.engine)
    assert mine is not None and {e.event.user_id for e in mine.events} == {bob}
    assert queries.timeline(nid, uid("stranger"), engine=log_db.engine) is None
    assert queries.timeline(uid("missing"), engine=log_db.engine) is None


def test_search_filters_and_pages_newest_first(log_db: LogDatabase) -> None:
    nid, alice, bob = uid("n"), uid("alice"), uid("bob")
    old = time.time() - 7200
    log_db.write(story(nid, alice, bob, old))
    log_db.write([Event("failed", uid("f"), alice, "email", "a@example.com", {"error": "550"}, type="digest")])

    def ids(filters: queries.Filters, limit: int = 50) -> list[int]:
        seen: list[int] = []
        before = None
        while True:
            page = queries.search(filters, limit, before, engine=log_db.engine)
            seen += [e.id for e in page.events]
            if page.next_cursor is None:
                return seen
            before = page.next_cursor

    everything = ids(queries.Filters(user_id=alice))
    assert len(everything) == 7 and everything == sorted(everything, reverse=True)
    assert ids(queries.Filters(user_id=alice), limit=2) == everything  # pages cut by id: none lost or repeated
    assert len(ids(queries.Filters(user_id=alice, channel="fcm"))) == 3
    assert len(ids(queries.Filters(user_id=alice, type="digest"))) == 1
    failed = queries.search(queries.Filters(user_id=alice, kind="failed"), engine=log_db.engine).events
    assert [(e.event.kind, e.event.detail) for e in failed] == [("failed", {"error": "550"})]
    recent = queries.Filters(user_id=alice, since=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    assert len(ids(recent)) == 1  # the story is two hours old
    with pytest.raises(ValidationError, match="unknown status"):
        queries.Filters(kind="lost")
    with pytest.raises(ValidationError, match="limit"):
        queries.search(queries.Filters(), limit=0, engine=log_db.engine)


def test_since_takes_a_duration_or_a_time() -> None:
    now = dt.datetime(2026, 1, 2, 12, 0, tzinfo=dt.UTC)
    assert queries.since("90m", now) == now - dt.timedelta(minutes=90)
    assert queries.since("2026-01-01T08:00:00+01:00") == dt.datetime(2026, 1, 1, 7, tzinfo=dt.UTC)
    assert queries.since("2026-01-01T08:00:00") == dt.datetime(2026, 1, 1, 8, tzinfo=dt.UTC)
    with pytest.raises(ValidationError, match="since must be"):
        queries.since("yesterday")


def test_cli_status_and_log(log_db: LogDatabase) -> None:
    nid, alice, bob = uid("n"), uid("alice"), uid("bob")
    log_db.write(story(nid, alice, bob, time.time() - 60))

    shown = cli(log_db, "status", nid)
    assert shown.returncode == 0, shown.stderr
    assert f"  {alice}  fcm/fcm-1: sent at" in shown.stdout
    assert f"  {bob}  email: skipped at" in shown.stdout
    assert "retried   fcm/fcm-1  attempt=1 delay=2 error=503" in shown.stdout
    as_json = orjson.loads(cli(log_db, "status", nid, "--user", bob, "--json").stdout)
    assert {d["channel"]: d["state"] for d in as_json["deliveries"]} == {"email": "skipped", "realtime": "read"}

    page = orjson.loads(cli(log_db, "log", "--user", alice, "--limit", "4", "--json").stdout)
    assert [e["kind"] for e in page["events"]] == ["sent", "retried", "sent", "queued"]
    older = orjson.loads(cli(log_db, "log", "--user", alice, "--before", str(page["next_cursor"]), "--json").stdout)
    assert [e["kind"] for e in older["events"]] == ["queued", "accepted"] and older["next_cursor"] is None
    text = cli(log_db, "log", "--user", alice, "--status", "retried", "--since", "1h")
    assert text.returncode == 0 and text.stdout.count("\n") == 1 and f"notification {nid}" in text.stdout

    for args, message in [(("status", uid("nope")), "has no notification"),
                          (("log", "--status", "lost"), "unknown status 'lost'"),
                          (("log", "--since", "last week"), "since must be a duration")]:
        failed = cli(log_db, *args)
        assert failed.returncode == 1 and message in failed.stderr and "Traceback" not in failed.stderr


def test_an_unreachable_log_database_is_one_clear_line() -> None:
    failed = subprocess.run([sys.executable, "-m", "notifier.cli", "log"], check=False, cwd=ROOT, capture_output=True,
                            text=True, timeout=60, env={**os.environ, "NOTIFIER_DATABASE_URL":
                                                        "postgresql+psycopg://postgres@127.0.0.1:1/none"})
    assert failed.returncode == 1 and "Traceback" not in failed.stderr
    assert "cannot reach the delivery log's database at postgresql+psycopg://postgres@127.0.0.1:1/none" in failed.stderr


@pytest.fixture
def gateway(log_db: LogDatabase) -> Iterator[Gateway]:
    gw = Gateway(env={"NOTIFIER_DATABASE_URL": log_db.url}).wait_ready()
    yield gw
    gw.stop()


def test_admin_api_and_a_users_own_status(log_db: LogDatabase, gateway: Gateway) -> None:
    nid, alice, bob = uid("n"), uid("alice"), uid("bob")
    log_db.write(story(nid, alice, bob, time.time() - 60))
    admin = gateway.client()
    admin.headers["X-API-Key"] = API_KEY

    assert gateway.client().get(f"/v1/admin/notifications/{nid}").status_code == 401
    assert gateway.client(token(alice)).get("/v1/admin/log").status_code == 401  # a user token is not the key
    timeline: dict[str, Any] = admin.get(f"/v1/admin/notifications/{nid}").json()
    assert len(timeline["events"]) == 10 and {d["user_id"] for d in timeline["deliveries"]} == {alice, bob}
    assert admin.get(f"/v1/admin/notifications/{uid('nope')}").json()["error"] == "not_found"

    first = admin.get("/v1/admin/log", params={"user": alice, "limit": 5}).json()
    rest = admin.get("/v1/admin/log", params={"user": alice, "before": first["next_cursor"]}).json()
    assert len(first["events"]) == 5 and len(rest["events"]) == 1 and rest["next_cursor"] is None
    failed = admin.get("/v1/admin/log", params={"status": "skipped", "since": "1h", "user": bob}).json()
    assert [e["channel"] for e in failed["events"]] == ["email"]
    bad = admin.get("/v1/admin/log", params={"status": "lost"})
    assert bad.status_code == 422 and "unknown status" in bad.json()["message"]

    own = gateway.client(token(bob)).get(f"/v1/notifications/{nid}/status").json()
    assert {e["user_id"] for e in own["events"]} == {bob}
    assert {d["channel"]: d["state"] for d in own["deliveries"]} == {"email": "skipped", "realtime": "read"}
    stranger = gateway.client(token(uid("mallory"))).get(f"/v1/notifications/{nid}/status")
    assert stranger.status_code == 404 and alice not in stranger.text and bob not in stranger.text
    assert gateway.client().get(f"/v1/notifications/{nid}/status").status_code == 401


def test_the_api_says_when_the_log_database_is_down() -> None:
    gw = Gateway(env={"NOTIFIER_DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:1/none"}).wait_ready()
    try:
        answer = httpx.get(f"{gw.url}/v1/admin/log", headers={"X-API-Key": API_KEY}, timeout=30)
        assert answer.status_code == 503 and answer.json()["error"] == "log_unavailable"
        assert answer.headers["Retry-After"]
    finally:
        gw.stop()
