"""Templated notifications end to end: a real worker renders them per user's locale into the inbox
and an email to the SMTP peer; a template error is dead-lettered; a broken folder stops the worker;
the gateway previews a template."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from notifier import broadcast, send_notification
from notifier.state.deadletters import DeadLetters
from notifier.state.inbox import Inbox
from notifier.state.preferences import PreferenceStore
from tests.peers.smtp import SmtpPeer
from tests.support.gateway_support import API_KEY, Gateway
from tests.support.helpers import ROOT, Worker, private_env, start_worker, uid, wait_for

FOLDER = ROOT / "tests" / "support" / "templates"
DATA = {"text": "Sieht gut aus", "posted_at": "2026-12-01T09:30:00Z", "actor": {"name": "Ada"}}


@pytest.fixture(scope="module")
def templated_env(smtp: SmtpPeer) -> dict[str, str]:
    return {**private_env(), **smtp.env(), "NOTIFIER_TEMPLATES_DIR": str(FOLDER)}


@pytest.fixture(scope="module")
def templated_worker(templated_env: dict[str, str]) -> Iterator[Worker]:
    w = start_worker(templated_env)
    yield w
    w.stop()


@pytest.fixture(autouse=True)
def _use_templated_env(templated_env: dict[str, str], settings_env: Any) -> None:
    settings_env(templated_env)


def test_a_comment_reaches_the_inbox_and_email_rendered_in_german(templated_worker: Worker, smtp: SmtpPeer) -> None:
    user = uid()
    address = f"{user}@example.test"
    PreferenceStore().set(user, {"email": address, "locale": "de-AT", "timezone": "Europe/Vienna", "name": "Grete"})
    sent = send_notification.delay(user, {"type": "comment", "data": DATA, "channels": ["realtime", "email"]})
    items = wait_for(lambda: Inbox().list(user).items, message="inbox item")
    assert (items[0]["id"], items[0]["title"], items[0]["body"]) == (
        sent.id, "1 neuer Kommentar", "Ada hat kommentiert: Sieht gut aus")
    msg = wait_for(lambda: smtp.to(address), message="email")[0]
    assert msg["Subject"] == "Hallo Grete: 1 neuer Kommentar"
    assert msg.get_content_type() == "multipart/alternative"
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    assert "Ada hat kommentiert: Sieht gut aus" in text and "Sie erhalten diese Nachricht" in text
    assert '<html lang="de-AT"' in html and "Geschrieben am 01.12.26, 10:30" in html


def test_a_broadcast_reaches_each_user_in_their_own_language(templated_worker: Worker) -> None:
    users = {uid(): "pl", uid(): "ar", uid(): "de"}
    for user, locale in users.items():
        PreferenceStore().set(user, {"locale": locale})
    nid = broadcast({"type": "comment", "data": DATA, "channels": ["realtime"]}, list(users))

    def titles() -> dict[str, str]:
        found = {u: Inbox().list(u).items for u in users}
        return {u: items[0]["title"] for u, items in found.items() if items and items[0]["id"] == nid}

    got = wait_for(lambda: len(titles()) == 3 and titles(), message="three inboxes")
    assert sorted(got.values()) == sorted(["1 nowy komentarz", "تعليق جديد واحد", "1 neuer Kommentar"])


def test_a_template_error_is_dead_lettered_unsent(templated_worker: Worker, smtp: SmtpPeer) -> None:
    user = uid()
    address = f"{user}@example.test"
    PreferenceStore().set(user, {"email": address})
    sent = send_notification.delay(user, {"type": "comment", "data": {"text": "who wrote this?"},
                                          "channels": ["realtime", "email"]})

    def letters() -> list[dict[str, Any]]:
        return [e for e in DeadLetters().all() if sent.id in str(e["args"])]

    found = wait_for(lambda: len(letters()) == 2 and letters(), timeout=15, message="two dead letters")
    assert {e["queue"] for e in found} == {"realtime", "email"}
    for entry in found:
        assert entry["error_type"] == "TemplateRenderError"
        assert "template comment/body.txt line 1: 'actor' is undefined (variable 'actor')" in entry["error"]
    assert Inbox().list(user).items == [] and smtp.to(address) == []


def test_the_gateway_previews_a_template(templated_env: dict[str, str]) -> None:
    gw = Gateway(templated_env).wait_ready()
    try:
        with httpx.Client(base_url=gw.url, timeout=10, headers={"X-API-Key": API_KEY}) as http:
            answer = http.get("/v1/templates/comment/preview", params={"channel": "email", "locale": "pl"})
            assert answer.status_code == 200, answer.text
            assert answer.json()["subject"] == "Hello Grace: 1 nowy komentarz"
            missing = http.get("/v1/templates/comment/preview", params={"data": '{"text": "x"}'})
            assert missing.status_code == 422 and "'actor' is undefined" in missing.json()["message"]
            sms = http.get("/v1/templates/comment/preview", params={"channel": "sms"}).json()
            assert sms["text"] == "Ada commented: Looks good" and sms["sms"] == {
                "encoding": "GSM-7", "units": 25, "segments": 1, "per_segment": 160}
            assert http.get("/v1/templates/nope/preview").status_code == 404
        assert httpx.get(gw.url + "/v1/templates/comment/preview").status_code == 401
    finally:
        gw.stop()


def test_a_worker_refuses_to_start_on_a_broken_template_folder(tmp_path: Path) -> None:
    root = tmp_path / "templates"
    shutil.copytree(FOLDER, root)
    (root / "comment" / "body.txt").write_text("{{ actor.name }}\n{% for x in data %}\n")
    result = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "workers", "worker", "-Q", "router", "-c", "1", "--without-gossip",
         "--without-mingle", "-n", f"tpl{os.getpid()}@%h"], check=False, cwd=ROOT, capture_output=True, text=True,
        timeout=60, env={**os.environ, **private_env(), "NOTIFIER_TEMPLATES_DIR": str(root)})
    assert result.returncode != 0
    assert f"worker not started: templates folder {root} is invalid: {root}/comment/body.txt:2:" in result.stderr
    assert "Traceback" not in result.stderr and "ready" not in result.stdout
