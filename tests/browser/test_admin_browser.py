"""The admin page in headless Chromium: a search, a notification's timeline, a dead letter replayed,
the queues; everything through the admin API with the key typed in.

Uses the system Chromium (Debian's ``chromium``); skipped where it is not installed.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator

import pytest

from notifier.deliverylog.events import Event
from notifier.state.deadletters import DeadLetters
from notifier.state.inbox import Inbox
from tests.browser.test_gateway_browser import CHROMIUM, browser, screenshot, worker  # noqa: F401  fixtures
from tests.deliverylog.logdb import LogDatabase, database
from tests.support.gateway_support import API_KEY, Gateway
from tests.support.helpers import Worker, uid, wait_for

pytestmark = pytest.mark.skipif(not shutil.which(CHROMIUM), reason=f"no Chromium at {CHROMIUM}")
playwright_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def log_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LogDatabase]:
    """The page reads through the admin API, tested on both databases; SQLite is enough here."""
    yield from database("sqlite", tmp_path_factory)


def test_support_staff_find_a_notification_and_replay_its_dead_letter(
        log_db: LogDatabase, worker: Worker, browser: object) -> None:
    expect = playwright_api.expect
    nid, user = uid("n"), uid("alice")
    now = time.time() - 30
    log_db.write([Event("accepted", nid, user, at=now, type="order"),
                  Event("queued", nid, user, "realtime", at=now + 1, type="order"),
                  Event("failed", nid, user, "realtime", detail={"error": "<b>boom</b>"}, at=now + 2, type="order")])
    letter = DeadLetters().add(task="notifier.deliver.realtime", queue="realtime", error="<b>boom</b>",
                               error_type="RetryableError", attempts=5, kwargs={},
                               args=[{nid: {"id": nid, "type": "order", "title": "Order shipped", "body": "#1"}},
                                     [[user, nid, "*"]]])
    gateway = Gateway(env={"NOTIFIER_DATABASE_URL": log_db.url}).wait_ready()
    context = browser.new_context(viewport={"width": 1300, "height": 900})  # type: ignore[attr-defined]
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(f"{gateway.url}/admin")
        page.fill("#api-key", "wrong-key")
        page.click("#key-form button")
        expect(page.locator("#error")).to_contain_text("invalid API key")

        page.fill("#api-key", API_KEY)
        page.click("#key-form button")
        expect(page.locator("#error")).to_be_hidden()
        expect(page.locator("#queues tbody tr", has_text="router")).to_have_count(1)

        page.fill("#search-user", user)
        page.click("#search-form button")
        rows = page.locator("#log tbody tr")
        expect(rows).to_have_count(3)
        expect(rows.first).to_contain_text("failed")
        expect(rows.first.locator("td.detail")).to_have_text("error=<b>boom</b>")  # text, never HTML

        rows.first.locator("a.notification-link").click()
        expect(page.locator("#timeline-id")).to_have_text(nid)
        delivery = page.locator("#deliveries tbody tr")
        expect(delivery).to_have_count(1)
        expect(delivery).to_contain_text("failed")
        expect(page.locator("#timeline tbody tr")).to_have_count(3)

        row = page.locator("#dead-letters tbody tr", has_text=letter)
        expect(row).to_contain_text(nid)
        row.get_by_role("button", name="Replay").click()
        expect(row.get_by_role("button", name="Queued")).to_be_disabled()
        wait_for(lambda: Inbox().get(user, nid) is not None, timeout=20, message="the replayed delivery in the inbox")
        assert DeadLetters().get(letter) is None
        page.click("#refresh-dlq")
        expect(page.locator("#dead-letters tbody tr", has_text=letter)).to_have_count(0)
        screenshot(page, "admin-page.png")
        assert errors == []
    finally:
        context.close()
        gateway.stop()
