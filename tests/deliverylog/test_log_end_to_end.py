"""The delivery log end to end, on PostgreSQL and SQLite: a notification sent through real workers on
three channels (one retry, one pruned device) reaches the database through the drain, reads back as
its timeline (``notifier status``), and its events reach a Standard Webhooks receiver."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from notifier.deliverylog import queries
from notifier.deliverylog.subscriptions import Subscriptions
from tests.deliverylog.logdb import LogDatabase, log_database
from tests.deliverylog.test_emission import three_channels
from tests.peers.apns import ApnsPeer
from tests.peers.broker import Isolated, isolated
from tests.peers.fcm import FcmPeer
from tests.peers.smtp import SmtpPeer
from tests.peers.webhook import WebhookReceiver
from tests.support.helpers import ROOT, Worker, uid, wait_for

log_db = log_database


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    peer = WebhookReceiver().start()
    yield peer
    peer.stop()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, smtp: SmtpPeer, log_db: LogDatabase) -> Iterator[dict[str, Any]]:
    fcm, apns = FcmPeer().start(), ApnsPeer(tmp_path_factory.mktemp("apns")).start()
    settings = {**fcm.env(fcm.service_account(Path(tmp_path_factory.mktemp("fcm")) / "sa.json")), **apns.env(),
                **smtp.env(), "NOTIFIER_DATABASE_URL": log_db.url, "NOTIFIER_WEBHOOK_ALLOW_PRIVATE": "true"}
    yield {"fcm": fcm, "apns": apns, "settings": settings}
    fcm.stop()
    apns.stop()


@pytest.fixture(scope="module")
def stack(env: dict[str, Any]) -> Iterator[Isolated]:
    yield from isolated(env["settings"])


@pytest.fixture(scope="module")
def worker(stack: Isolated, env: dict[str, Any]) -> Worker:
    return stack.worker(env["settings"], "router,realtime,fcm,apns,email,log,event_webhooks")


def test_a_notifications_timeline_reaches_the_database_and_the_webhooks(
        worker: Worker, env: dict[str, Any], smtp: SmtpPeer, receiver: WebhookReceiver, log_db: LogDatabase) -> None:
    fcm, apns = env["fcm"], env["apns"]
    path = f"/events/{uid('hook')}"
    subscription = Subscriptions().add(receiver.url(path), "sent,retried,pruned")
    receiver.accept(path, subscription.secret)
    t = three_channels(fcm, apns)
    nid, kept, gone, apple, address = t.nid, t.kept, t.gone, t.apple, t.address

    def written() -> queries.Timeline | None:
        found = queries.timeline(nid, engine=log_db.engine)
        return found if found and sum(e.event.kind in ("sent", "pruned") for e in found.events) == 4 else None

    timeline = wait_for(written, timeout=30, message="every target's outcome in the log's database")
    states = {(d.channel, d.target): [e.event.kind for e in d.events] for d in timeline.deliveries}
    assert states == {("fcm", None): ["queued"], ("fcm", kept): ["sent"], ("fcm", gone): ["pruned"],
                      ("apns", None): ["queued"], ("apns", apple): ["retried", "sent"],
                      ("email", None): ["queued"], ("email", address): ["sent"]}
    assert [e.event.kind for e in timeline.events if e.event.channel is None] == ["accepted"]

    shown = subprocess.run([sys.executable, "-m", "notifier.cli", "status", nid, "--json"], cwd=ROOT, check=False,
                           capture_output=True, text=True, timeout=60, env={**os.environ})
    assert shown.returncode == 0, shown.stderr
    assert {(d["channel"], d["target"]): d["state"] for d in json.loads(shown.stdout)["deliveries"]} == {
        ("fcm", None): "queued", ("fcm", kept): "sent", ("fcm", gone): "pruned", ("apns", None): "queued",
        ("apns", apple): "sent", ("email", None): "queued", ("email", address): "sent"}

    def posted() -> list[tuple[str, str | None]]:
        got = [(e["kind"], e["target"]) for request in receiver.processed(path)
               for e in request.event["data"]["events"] if e["notification_id"] == nid]
        return got if len(got) == 5 else []

    got = wait_for(posted, timeout=30, message="the events the subscription wants, verified by the receiver")
    assert sorted(got, key=str) == sorted([("sent", kept), ("pruned", gone), ("retried", apple), ("sent", apple),
                                           ("sent", address)], key=str)
    Subscriptions().remove(subscription.id)
