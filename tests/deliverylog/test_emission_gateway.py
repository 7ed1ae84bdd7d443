"""The gateway's delivery events, read back from the delivery log's buffer stream: ``delivered`` for
what it wrote to live connections (one stream entry for a fan-out, not one per connection),
``read``, ``seen``, ``clicked`` and ``deleted`` for what users did in their inbox."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from notifier import broadcast, send_notification
from notifier.deliverylog.events import Event, decode_entry
from notifier.redis.store import get_keys, get_redis
from tests.support.gateway_support import SSE, Gateway, token
from tests.support.helpers import Worker, private_env, start_worker, uid, use_env, wait_for


@pytest.fixture(scope="module")
def own_env() -> Iterator[dict[str, str]]:
    """A store and broker of this module's own: no other worker of the session (one consuming the
    log queue) drains the buffer stream these tests read."""
    with use_env(private_env()) as env:
        yield env


@pytest.fixture(scope="module")
def worker(own_env: dict[str, str]) -> Iterator[Worker]:
    w = start_worker(own_env, queues="router,realtime")
    yield w
    w.stop()


@pytest.fixture(scope="module")
def gateway(worker: Worker, own_env: dict[str, str]) -> Iterator[Gateway]:
    gw = Gateway(env=own_env).wait_ready()
    yield gw
    gw.stop()


def entries_for(users: set[str]) -> list[list[Event]]:
    """Per stream entry, the events of ``users`` (entries without any left out)."""
    found = [[e for e in decode_entry(fields) if e.user_id in users]
             for _, fields in get_redis().xrange(get_keys().events())]
    return [entry for entry in found if entry]


def test_live_delivery_read_and_delete_are_events(gateway: Gateway) -> None:
    user = uid()
    with gateway.ws(token(user)) as ws:
        ws.next("connected")
        nid = send_notification.delay(user, {"type": "test", "title": "hello", "channels": ["realtime"]}).id
        frame = ws.next("notification")
        assert frame["notification"]["id"] == nid
        ws.send({"type": "read", "ids": [nid], "ref": 1})
        assert ws.next("marked")["marked"] == 1
    with gateway.client(token(user)) as http:
        assert http.delete(f"/v1/notifications/{nid}").status_code == 200

    def logged() -> list[Event]:
        found = [e for entry in entries_for({user}) for e in entry]
        return found if {"delivered", "deleted"} <= {e.kind for e in found} else []

    found = wait_for(logged, timeout=10, message="the delivery and the delete logged")
    worker_side = [(e.kind, e.channel, e.target) for e in found if e.kind in ("accepted", "queued", "sent")]
    assert worker_side == [("accepted", None, None), ("queued", "realtime", None), ("sent", "realtime", "live")]
    # the gateway's events, in the order they happened (its delivered ones are written a moment later)
    gateway_side = sorted((e for e in found if e.kind not in ("accepted", "queued", "sent")), key=lambda e: e.at)
    assert [(e.kind, e.channel, e.target) for e in gateway_side] == [
        ("delivered", "realtime", "websocket"), ("read", None, None), ("deleted", None, None)]
    assert {e.notification_id for e in found} == {nid}
    assert gateway_side[0].detail == {"entry_id": frame["id"]}


def test_a_fan_out_to_many_connections_is_one_entry(gateway: Gateway) -> None:
    users = [uid() for _ in range(20)]
    streams = [SSE(gateway, query=f"?token={token(u)}") for u in users]
    try:
        for s in streams:
            s.next("connected")
        bid = broadcast({"type": "news", "title": "everyone", "channels": ["realtime"]}, user_ids=users)
        for s in streams:
            assert s.notifications(1)[0][1]["id"] == bid

        def delivered() -> list[list[Event]]:
            found = [[e for e in entry if e.kind == "delivered"] for entry in entries_for(set(users))]
            found = [entry for entry in found if entry]
            return found if sum(map(len, found)) == len(users) else []

        found = wait_for(delivered, timeout=10, message="every live delivery logged")
        assert len(found) == 1, "the fan-out's deliveries share one stream entry"
        assert {e.user_id for e in found[0]} == set(users) and {e.target for e in found[0]} == {"sse"}
    finally:
        for s in streams:
            s.close()


def test_seen_and_clicked_are_events_of_the_users_own_notifications(gateway: Gateway) -> None:
    user, other = uid(), uid()
    mine = [send_notification.delay(user, {"type": "test", "title": f"n{i}", "channels": ["realtime"]}).id
            for i in range(2)]
    theirs = send_notification.delay(other, {"type": "test", "title": "theirs", "channels": ["realtime"]}).id
    with gateway.client(token(user)) as http:
        wait_for(lambda: len(http.get("/v1/notifications").json()["items"]) == 2, message="both in the inbox")
        answer = http.post("/v1/notifications/seen", json={"ids": [*mine, theirs, mine[0]]})
        assert answer.json() == {"seen": 2, "unknown": [theirs], "marked": 2, "total": 2, "unread": 2, "unseen": 0,
                                 "archived": 0, "snoozed": 0}
        assert http.post(f"/v1/notifications/{mine[0]}/click", json={"action": "open"}).status_code == 204
        assert http.post(f"/v1/notifications/{mine[1]}/click").status_code == 204
        refused = http.post(f"/v1/notifications/{theirs}/click")
        assert refused.status_code == 404 and refused.json()["error"] == "not_found"
        bad = http.post(f"/v1/notifications/{mine[0]}/click", json={"action": "", "extra": 1})
        assert bad.status_code == 422
        assert http.post("/v1/notifications/seen", json={"ids": []}).status_code == 422

    def logged() -> list[tuple[str, str, dict[str, object]]]:
        found = [(e.kind, e.notification_id, e.detail) for entry in entries_for({user, other}) for e in entry
                 if e.kind in ("seen", "clicked")]
        return found if len(found) == 4 else []

    found = wait_for(logged, timeout=10, message="the seen and clicked events")
    assert sorted(found, key=str) == sorted([("seen", mine[0], {}), ("seen", mine[1], {}),
                                             ("clicked", mine[0], {"action": "open"}), ("clicked", mine[1], {})],
                                            key=str)


def test_marking_all_seen_logs_the_notifications_it_made_seen_once_each(gateway: Gateway) -> None:
    user = uid()
    ids = [send_notification.delay(user, {"type": "test", "title": f"n{i}", "channels": ["realtime"]}).id
           for i in range(3)]
    with gateway.client(token(user)) as http:
        wait_for(lambda: len(http.get("/v1/notifications").json()["items"]) == 3, message="all in the inbox")
        assert http.post("/v1/notifications/seen", json={"ids": [ids[0]]}).json()["marked"] == 1
        answer = http.post("/v1/notifications/seen", json={"all": True}).json()
        assert (answer["seen"], answer["marked"], answer["unseen"]) == (2, 2, 0)
        assert http.post("/v1/notifications/seen", json={"all": True}).json()["seen"] == 0

    def logged() -> list[str]:
        found = [e.notification_id for entry in entries_for({user}) for e in entry if e.kind == "seen"]
        return found if len(found) >= 3 else []

    assert sorted(wait_for(logged, timeout=10, message="the seen events")) == sorted(ids)
