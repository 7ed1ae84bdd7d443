"""Inbox states over the gateway: HTTP, WebSocket frames, the live sync to a user's other connections,
resume, and a snooze woken by a real worker's scheduler loop."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import httpx
import pytest

from notifier.state.inbox import Inbox
from tests.gateway.test_gateway_api import seed_entries
from tests.support.gateway_support import SSE, Gateway, WsClient, token
from tests.support.helpers import Worker, start_worker, uid, wait_for


@pytest.fixture(scope="module")
def worker() -> Iterator[Worker]:
    w = start_worker(queues="router")
    yield w
    w.stop()


@pytest.fixture(scope="module")
def gateway() -> Iterator[Gateway]:
    gw = Gateway().wait_ready()
    yield gw
    gw.stop()


@contextlib.contextmanager
def connections(gateway: Gateway, user: str) -> Iterator[tuple[WsClient, WsClient, httpx.Client]]:
    """Two connected WebSockets of ``user`` (the one acting, the other watching) and an HTTP client."""
    with gateway.ws(token(user)) as mine, gateway.ws(token(user)) as other, gateway.client(token(user)) as http:
        mine.next("connected")
        other.next("connected")
        yield mine, other, http


def state_frame(ws: WsClient, state: str) -> dict[str, object]:
    frame = ws.next("state", 10)
    assert frame["state"] == state, frame
    return frame


def replayed(gateway: Gateway, user: str, count: int) -> dict[str, dict[str, object]]:
    """What a client resuming from the start is sent: notification id -> the notification frame's item."""
    with gateway.ws(token(user), last_event_id="0-0") as ws:
        items = [ws.next("notification")["notification"] for _ in range(count)]
    return {str(item["id"]): item for item in items}


def all_pages(http: httpx.Client, query: str) -> list[str]:
    """Every id ``GET /v1/notifications?<query>`` lists, one item per page through the cursor."""
    ids, cursor = [], ""
    while True:
        page = http.get(f"/v1/notifications?limit=1&{query}{cursor}").json()
        ids += [item["id"] for item in page["items"]]
        if page["next_cursor"] is None:
            return ids
        cursor = f"&before={page['next_cursor']}"


def test_seen_over_http_and_websocket_reaches_the_other_connection_and_a_resume(gateway: Gateway) -> None:
    user = uid()
    nids = [nid for nid, _ in seed_entries(user, 4)]
    with connections(gateway, user) as (mine, other, http):
        assert http.get("/v1/notifications/counts").json() == {"total": 4, "unread": 4, "unseen": 4,
                                                               "archived": 0, "snoozed": 0}
        answer = http.post("/v1/notifications/seen", json={"ids": [nids[0], "nope"]}).json()
        assert (answer["seen"], answer["marked"], answer["unseen"], answer["unknown"]) == (1, 1, 3, ["nope"])
        for ws in (mine, other):
            frame = state_frame(ws, "seen")
            assert (frame["ids"], frame["value"], frame["unseen"], frame["all"]) == ([nids[0]], True, 3, False)
        assert all_pages(http, "unseen=true") == nids[:0:-1]
        mine.send({"type": "seen", "all": True, "ref": "s1"})
        marked = mine.next("marked")
        assert (marked["ref"], marked["state"], marked["marked"], marked["unseen"]) == ("s1", "seen", 3, 0)
        frame = state_frame(other, "seen")
        assert (frame["all"], frame["unseen"], sorted(frame["ids"])) == (True, 0, sorted(nids[1:]))
        assert http.get("/v1/notifications?unseen=true").json()["items"] == []
        assert http.get("/v1/notifications/unread-count").json() == {"unread": 4}
    assert all(item["seen"] for item in replayed(gateway, user, 4).values())


def test_archive_and_unarchive_over_http_and_websocket(gateway: Gateway) -> None:
    user = uid()
    nids = [nid for nid, _ in seed_entries(user, 5)]
    with connections(gateway, user) as (mine, other, http):
        answer = http.post("/v1/notifications/archive", json={"ids": nids[:3]}).json()
        assert (answer["marked"], answer["archived"], answer["total"], answer["unread"]) == (3, 3, 2, 2)
        for ws in (mine, other):
            frame = state_frame(ws, "archived")
            assert (sorted(frame["ids"]), frame["value"], frame["unread"]) == (sorted(nids[:3]), True, 2)
        assert all_pages(http, "") == [nids[4], nids[3]]
        assert all_pages(http, "archived=true") == [nids[2], nids[1], nids[0]]
        assert all_pages(http, "archived=true&unread=true") == []
        mine.send({"type": "unarchive", "ids": [nids[1]], "ref": 7})
        marked = mine.next("marked")
        assert (marked["ref"], marked["state"], marked["marked"], marked["archived"]) == (7, "unarchive", 1, 2)
        frame = state_frame(other, "archived")
        assert (frame["ids"], frame["value"]) == ([nids[1]], False)
        assert all_pages(http, "") == [nids[4], nids[3], nids[1]]
        states = replayed(gateway, user, 5)
        assert [states[n]["archived"] for n in nids] == [True, False, True, False, False]
        mine.send({"type": "archive", "all": True})
        assert mine.next("marked")["total"] == 0
        assert state_frame(other, "archived")["all"] is True
        assert http.get("/v1/notifications").json()["items"] == []
        bad = http.post("/v1/notifications/archive", json={"ids": []})
        assert bad.status_code == 422


def test_a_snooze_hides_until_a_worker_wakes_it_unread_with_a_live_event(worker: Worker, gateway: Gateway) -> None:
    user = uid()
    nids = [nid for nid, _ in seed_entries(user, 3)]
    Inbox().mark_read(user, [nids[1]])
    with connections(gateway, user) as (mine, other, http):
        until = time.time() + 4
        mine.send({"type": "snooze", "ids": [nids[1]], "until": until, "ref": "z"})
        marked = mine.next("marked")
        assert (marked["state"], marked["snoozed"], marked["total"], marked["unread"]) == ("snooze", 1, 2, 2)
        frame = state_frame(other, "snoozed")
        assert (frame["ids"], frame["value"]) == ([nids[1]], until)
        assert all_pages(http, "") == [nids[2], nids[0]]
        assert replayed(gateway, user, 3)[nids[1]]["snoozed_until"] == until
        woken = state_frame(other, "snoozed")  # sent by the worker's wake-up, not by this test
        assert (woken["ids"], woken["value"], woken["unread"]) == ([nids[1]], False, 3)
        assert time.time() >= until
        while (frame := state_frame(mine, "snoozed"))["value"] is not False:  # its own snooze's event first
            assert frame["value"] == until
        items = http.get("/v1/notifications").json()["items"]
        assert [(i["id"], i["read"], i["snoozed_until"]) for i in items] == [
            (nids[2], False, None), (nids[1], False, None), (nids[0], False, None)]
        too_late = http.post("/v1/notifications/snooze", json={"ids": [nids[0]], "until": time.time() - 1})
        assert too_late.status_code == 422


def test_interacted_set_by_the_library_reaches_live_connections_and_a_resume(gateway: Gateway) -> None:
    user = uid()
    nids = [nid for nid, _ in seed_entries(user, 2)]
    stream = SSE(gateway, token(user))
    try:
        stream.next("connected")
        with gateway.ws(token(user)) as ws:
            ws.next("connected")
            assert Inbox().mark_interacted(user, [nids[1]]).marked == 1
            assert state_frame(ws, "interacted")["ids"] == [nids[1]]
            _, _, data = stream.next("state")
            assert (data["state"], data["ids"], data["value"]) == ("interacted", [nids[1]], True)
    finally:
        stream.close()
    states = replayed(gateway, user, 2)
    assert (states[nids[0]]["interacted"], states[nids[1]]["interacted"]) == (False, True)


def test_the_counts_survive_concurrent_http_marking(gateway: Gateway) -> None:
    import concurrent.futures

    user = uid()
    nids = [nid for nid, _ in seed_entries(user, 40)]
    with gateway.client(token(user)) as http:
        def mark(i: int) -> int:
            path = ("/v1/notifications/archive", "/v1/notifications/seen", "/v1/notifications/read")[i % 3]
            return http.post(path, json={"ids": [nids[i // 3 % 40]]}).status_code

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            assert set(pool.map(mark, range(120))) == {200}
        assert wait_for(lambda: http.get("/v1/notifications/counts").json(), timeout=5) == {
            "total": 0, "unread": 0, "unseen": 0, "archived": 40, "snoozed": 0}
