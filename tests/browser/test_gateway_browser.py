"""The demo inbox in headless Chromium: live toast and badge, mark read, delete, preferences.

Uses the system Chromium (Debian's ``chromium``); the test is skipped where it is not installed.
Screenshots land in ``artifacts/`` for a human to look at.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from notifier import send_notification
from notifier.channels import registry
from notifier.state.inbox import Inbox
from tests.support.gateway_support import Gateway, token
from tests.support.helpers import ROOT, Worker, start_worker, uid, wait_for

CHROMIUM = os.environ.get("NOTIFIER_TEST_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = ROOT / "artifacts"

pytestmark = pytest.mark.skipif(not shutil.which(CHROMIUM), reason=f"no Chromium at {CHROMIUM}")
playwright_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def worker() -> Iterator[Worker]:
    w = start_worker(queues="router,realtime")
    yield w
    w.stop()


@pytest.fixture(scope="module")
def stack(worker: Worker) -> Iterator[Gateway]:
    gateway = Gateway().wait_ready()
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with playwright_api.sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield instance
        instance.close()


def screenshot(page: object, name: str, full_page: bool = True) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=full_page)  # type: ignore[attr-defined]
    return path


@pytest.mark.parametrize("transport", ["sse", "websocket"])
def test_demo_page_shows_live_notifications_and_tracks_unread(stack: Gateway, browser: object,
                                                              transport: str) -> None:
    expect = playwright_api.expect
    user = uid("browser")
    Inbox().append(user, {"id": uid("old"), "type": "welcome", "title": "Welcome aboard",
                          "body": "An older notification, already in the inbox."})
    context = browser.new_context(viewport={"width": 1200, "height": 800})  # type: ignore[attr-defined]
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(f"{stack.url}/?token={token(user)}")
        assert "token=" not in page.url, "the token must be removed from the address bar"
        if transport == "websocket":
            page.select_option("#transport", "websocket")
        expect(page.locator("#state")).to_have_text("live", timeout=10_000)
        badge = page.locator("#badge")
        expect(badge).to_have_text("1")
        expect(page.locator("#list .item")).to_have_count(1)

        nid = send_notification.delay(user, {"type": "order_update", "title": "Order shipped",
                                             "body": "Your order #1234 is on its way."}).id
        toast = page.locator(".toast", has_text="Order shipped")
        expect(toast).to_be_visible(timeout=15_000)
        expect(badge).to_have_text("2")
        item = page.locator(f'#list .item[data-id="{nid}"]')
        expect(item).to_have_class("item unread fresh")
        shot = screenshot(page, f"gateway-demo-{transport}-live.png")
        assert shot.stat().st_size > 10_000

        item.get_by_role("button", name="Mark read").click()
        expect(badge).to_have_text("1")
        expect(item).not_to_have_class("item unread fresh")
        assert Inbox().unread_count(user) == 1

        page.get_by_role("button", name="Mark all read").click()
        expect(badge).to_be_hidden()
        page.locator("#list .item").first.get_by_role("button", name="Delete").click()
        expect(page.locator("#list .item")).to_have_count(1)
        screenshot(page, f"gateway-demo-{transport}-read.png")
        assert errors == []
    finally:
        context.close()


def test_a_list_answered_after_a_live_notification_keeps_it(stack: Gateway, browser: object) -> None:
    """The inbox list is fetched, a notification arrives live, then the (older) list answer lands:
    the live one stays listed and highlighted instead of being replaced by the stale page."""
    expect = playwright_api.expect
    user = uid("browser")
    context = browser.new_context()  # type: ignore[attr-defined]
    page = context.new_page()
    held: list[tuple[object, object]] = []
    try:
        page.goto(f"{stack.url}/?token={token(user)}")
        expect(page.locator("#state")).to_have_text("live", timeout=10_000)
        expect(page.locator("#empty")).to_be_visible()

        def hold(route: object) -> None:
            held.append((route, route.fetch()))  # type: ignore[attr-defined]

        page.route(lambda url: "/v1/notifications?" in url, hold)
        page.locator("#only-unread").check()
        for _ in range(100):  # Playwright runs the handler while this thread is inside its calls
            if held:
                break
            page.wait_for_timeout(100)
        assert held, "the list request was not made"
        nid = uid("live")
        Inbox().append(user, {"id": nid, "type": "test", "title": "Arrived live"})
        item = page.locator(f'#list .item[data-id="{nid}"]')
        expect(item).to_have_class("item unread fresh", timeout=10_000)
        route, stale = held[0]
        route.fulfill(response=stale)  # type: ignore[attr-defined]
        expect(page.locator("#only-unread")).to_be_checked()
        page.wait_for_timeout(300)
        expect(item).to_have_class("item unread fresh")
        expect(page.locator("#list .item")).to_have_count(1)
    finally:
        context.close()


def test_unread_badge_follows_reads_made_elsewhere(stack: Gateway, browser: object) -> None:
    expect = playwright_api.expect
    user = uid("browser")
    context = browser.new_context()  # type: ignore[attr-defined]
    page = context.new_page()
    try:
        page.goto(f"{stack.url}/?token={token(user)}")
        expect(page.locator("#state")).to_have_text("live", timeout=10_000)
        send_notification.delay(user, {"type": "test", "title": "Elsewhere"})
        expect(page.locator("#badge")).to_have_text("1", timeout=15_000)
        Inbox().mark_read(user)
        expect(page.locator("#badge")).to_be_hidden()
        expect(page.locator("#list .item.unread")).to_have_count(0)
    finally:
        context.close()


def open_demo(page: object, gateway: Gateway, user: str, transport: str) -> None:
    """The demo page signed in as ``user`` on ``transport``, once it is live."""
    page.goto(f"{gateway.url}/?token={token(user)}")  # type: ignore[attr-defined]
    if transport == "websocket":
        page.select_option("#transport", "websocket")  # type: ignore[attr-defined]
    playwright_api.expect(page.locator("#state")).to_have_text("live", timeout=10_000)  # type: ignore[attr-defined]


@pytest.mark.parametrize("transport", ["sse", "websocket"])
def test_client_reconnects_and_resumes_after_the_gateway_restarts(worker: Worker, browser: object,
                                                                   transport: str) -> None:
    """What was sent while the gateway was down shows up once it is back, without a reload."""
    expect = playwright_api.expect
    gateway = Gateway().wait_ready()
    user = uid("browser")
    context = browser.new_context()  # type: ignore[attr-defined]
    page = context.new_page()
    try:
        open_demo(page, gateway, user, transport)
        gateway.stop()
        expect(page.locator("#state")).to_have_text("reconnecting…", timeout=10_000)
        send_notification.delay(user, {"type": "test", "title": "Sent while you were away"})
        wait_for(lambda: Inbox().unread_count(user) == 1, timeout=15, message="the worker to deliver")
        gateway = Gateway(port=gateway.port).wait_ready()
        expect(page.locator(".toast", has_text="Sent while you were away")).to_be_visible(timeout=20_000)
        expect(page.locator("#badge")).to_have_text("1")
        expect(page.locator("#state")).to_have_text("live")
        expect(page.locator("#list .item")).to_have_count(1)
    finally:
        context.close()
        gateway.stop()


@pytest.mark.parametrize("transport", ["sse", "websocket"])
def test_the_page_reloads_its_list_when_the_resume_was_not_recovered(browser: object, transport: str) -> None:
    """The inbox is lost and recreated while the page is away: the gateway answers the resume with
    ``recovered: false`` and the page shows the new inbox, not what it had kept from the old one."""
    expect = playwright_api.expect
    gateway = Gateway().wait_ready()
    user, box = uid("browser"), Inbox()
    box.append(user, {"id": uid("welcome"), "type": "test", "title": "Welcome"})
    context = browser.new_context()  # type: ignore[attr-defined]
    page = context.new_page()
    try:
        open_demo(page, gateway, user, transport)
        box.append(user, {"id": uid("before"), "type": "test", "title": "Arrived before the loss"})
        expect(page.locator("#list .item")).to_have_count(2, timeout=10_000)
        gateway.stop()
        expect(page.locator("#state")).to_have_text("reconnecting…", timeout=10_000)
        k = box.keys
        box.r.delete(k.inbox(user), k.inbox_ids(user), k.unread(user), k.inbox_epoch(user))
        box.append(user, {"id": uid("after"), "type": "test", "title": "After the loss"})
        gateway = Gateway(port=gateway.port).wait_ready()
        expect(page.locator("#state")).to_have_text("live", timeout=20_000)
        expect(page.locator("#list .item", has_text="After the loss")).to_have_count(1, timeout=10_000)
        expect(page.locator("#list .item")).to_have_count(1)
        expect(page.locator("#badge")).to_have_text("1")
    finally:
        context.close()
        gateway.stop()


def test_preferences_panel_saves_and_shows_errors(stack: Gateway, browser: object) -> None:
    expect = playwright_api.expect
    user = uid("browser")
    context = browser.new_context()  # type: ignore[attr-defined]
    page = context.new_page()
    from notifier.state.preferences import PreferenceStore

    PreferenceStore().set(user, {"name": "Ada", "type_channels": {"comment": {"email": False}},
                                 "channels": {"sms": False}, "channel_off_reasons": {"sms": "replied STOP"}})
    try:
        page.goto(f"{stack.url}/?token={token(user)}")
        expect(page.locator("#channels input")).to_have_count(len(registry.names()))
        expect(page.locator("#prefs-notes")).to_have_text("sms is off: replied STOP")
        page.locator('#channels input[data-channel="email"]').uncheck()
        page.fill("#disabled-types", "marketing, digest")
        page.fill("#quiet-start", "22:00")
        page.fill("#quiet-end", "07:00")
        page.fill("#timezone", "Europe/Berlin")
        page.fill("#phone", "+49 151 1234 5678")
        page.get_by_role("button", name="Save").click()
        expect(page.locator("#prefs-status")).to_have_text("Saved.")
        expect(page.locator("#phone")).to_have_value("+4915112345678")
        saved = PreferenceStore().get(user)
        assert saved.phone == "+4915112345678" and saved.channel_off_reasons == {"sms": "replied STOP"}
        assert saved.channels["email"] is False and saved.disabled_types == ("digest", "marketing")
        assert saved.name == "Ada" and saved.type_channels == {"comment": {"email": False}}, \
            "fields the panel does not show (an unsubscribe, the name) survive a save"
        assert saved.quiet_hours is not None and saved.quiet_hours.start == "22:00"
        page.fill("#timezone", "Mars/Olympus")
        page.get_by_role("button", name="Save").click()
        expect(page.locator("#prefs-status")).to_contain_text("time zone")
        screenshot(page, "gateway-demo-preferences-error.png")
    finally:
        context.close()


def test_a_refused_token_brings_back_the_login_form(stack: Gateway, browser: object) -> None:
    expect = playwright_api.expect
    context = browser.new_context()  # type: ignore[attr-defined]
    page = context.new_page()
    try:
        page.goto(f"{stack.url}/?token=not-a-valid-token")
        expect(page.locator("#login")).to_be_visible(timeout=10_000)
        expect(page.locator(".toast.error", has_text="Token refused")).to_be_visible()
        expect(page.locator(".toast.error")).to_have_count(1)
        page.fill("#token-input", token(uid("browser")))
        page.get_by_role("button", name="Connect").click()
        expect(page.locator("#state")).to_have_text("live", timeout=10_000)
    finally:
        context.close()


REDOC_BADGE = "https://cdn.redoc.ly/redoc/logo-mini.svg"
"""ReDoc's "API docs by Redocly" sidebar image: it tries it, and hides it when it does not load."""


@pytest.fixture(scope="module")
def docs_gateway() -> Iterator[Gateway]:
    gateway = Gateway().wait_ready()
    yield gateway
    gateway.stop()


def test_api_docs_render_with_no_network_beyond_the_gateway(docs_gateway: Gateway, browser: object) -> None:
    """/docs (Swagger UI) and /redoc (ReDoc) load every script and style from the gateway itself:
    each request for another host is refused, as on a machine without Internet access."""
    expect = playwright_api.expect
    context = browser.new_context(viewport={"width": 1200, "height": 900})  # type: ignore[attr-defined]
    refused: list[str] = []

    def offline(route: object) -> None:
        url = route.request.url  # type: ignore[attr-defined]
        if url.startswith(docs_gateway.url + "/") or url.startswith("data:"):
            route.continue_()  # type: ignore[attr-defined]
        else:
            refused.append(url)
            route.abort()  # type: ignore[attr-defined]

    context.route("**/*", offline)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(f"{docs_gateway.url}/docs")
        operation = page.locator(".opblock-summary-path", has_text="/v1/notifications/read")
        expect(operation).to_be_visible(timeout=15_000)
        expect(page.locator(".opblock-summary-path", has_text="/v1/notify/bulk")).to_be_visible()
        screenshot(page, "gateway-docs-swagger.png", full_page=False)

        page.goto(f"{docs_gateway.url}/redoc")
        expect(page.get_by_role("heading", name="List Notifications")).to_be_visible(timeout=15_000)
        expect(page.get_by_role("heading", name="Mark Read")).to_be_attached()
        expect(page.locator("img[alt='redocly logo']")).to_have_count(0)
        screenshot(page, "gateway-docs-redoc.png", full_page=False)
        assert errors == []
        outside = [url for url in refused if url != REDOC_BADGE]
        assert outside == [], f"the docs need outside resources: {outside}"
    finally:
        context.close()
