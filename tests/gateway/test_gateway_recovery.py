"""The recovery flag: a resuming client is told whether it missed nothing, over SSE and WebSocket.

A real gateway on real Redis. Entries are appended with the inbox library (what the realtime channel
runs), with a small cap where the test needs trimming. ``recovered: true`` must come with every
missed entry replayed; ``false`` when the cap trimmed an entry the client had not seen, when the
inbox's keys were lost and recreated, and when Redis restarted without persistence.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from websockets.exceptions import ConnectionClosed

from notifier.redis.keys import Keys
from notifier.state.inbox import Inbox
from tests.gateway.test_gateway_resilience import RedisServer
from tests.support.gateway_support import SSE, Gateway, token
from tests.support.helpers import uid, wait_for

TRANSPORTS = ["sse", "websocket"]
CAP = 10
"""The test inbox's cap: an append trims back to it once the stream holds more than twice as many."""


@pytest.fixture(scope="module")
def gateway() -> Iterator[Gateway]:
    gw = Gateway().wait_ready()
    yield gw
    gw.stop()


class Client:
    """One live connection over either transport: its ``connected`` data and its notifications' ids."""

    def __init__(self, gateway: Gateway, transport: str, user: str, last_event_id: str | None = None,
                 epoch: str | None = None) -> None:
        self.transport = transport
        if transport == "sse":
            self.sse = SSE(gateway, token(user), last_event_id=last_event_id,
                           query=f"?epoch={epoch}" if epoch else "")
            kind, _, self.connected = self.sse.next()
            assert kind == "connected", (kind, self.sse.status, self.sse.body)
        else:
            self.ws = gateway.ws(token(user), last_event_id=last_event_id, epoch=epoch)
            frame = self.ws.next()
            assert frame.pop("type") == "connected", frame
            self.connected = frame

    def notifications(self, count: int) -> list[str]:
        if self.transport == "sse":
            return [event_id or "" for event_id, _ in self.sse.notifications(count)]
        return [self.ws.next("notification")["id"] for _ in range(count)]

    def unread(self) -> int:
        if self.transport == "sse":
            return int(self.sse.next("unread_count")[2]["unread"])
        return int(self.ws.next("unread_count")["unread"])

    def close(self) -> None:
        (self.sse if self.transport == "sse" else self.ws).close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def append(box: Inbox, user: str, count: int, tag: str = "n") -> list[str]:
    """Append ``count`` notifications; their entry ids, oldest first."""
    return [box.append(user, {"id": f"{tag}{i}-{uid()}", "type": "test", "title": f"{tag} {i}"}).entry_id
            for i in range(count)]


def connect_and_see(gateway: Gateway, transport: str, user: str, box: Inbox) -> tuple[dict[str, Any], str]:
    """A client that connects, sees one live notification and leaves: its connected data and last id."""
    with Client(gateway, transport, user) as client:
        entry_id = append(box, user, 1, "seen")[0]
        assert client.notifications(1) == [entry_id]
        return client.connected, entry_id


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_resume_within_the_kept_range_is_recovered_and_replays_what_was_missed(
        gateway: Gateway, transport: str) -> None:
    user, box = uid(), Inbox(max_len=CAP)
    first, seen = connect_and_see(gateway, transport, user, box)
    assert "recovered" not in first, "a fresh connection has nothing to recover"
    assert first["epoch"] is None, "an empty inbox has no epoch yet"
    with Client(gateway, transport, user) as epoch:
        assert epoch.connected["epoch"], "an inbox with entries has an epoch"
    missed = append(box, user, 5, "missed")
    with Client(gateway, transport, user, last_event_id=seen, epoch=epoch.connected["epoch"]) as client:
        assert client.connected["recovered"] is True
        assert client.connected["last_event_id"] == seen
        assert client.notifications(5) == missed
        assert client.unread() == 6


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_resume_from_an_id_the_cap_trimmed_is_not_recovered(gateway: Gateway, transport: str) -> None:
    user, box = uid(), Inbox(max_len=CAP)
    ids = append(box, user, 2 * CAP + 1)
    kept = [entry_id for entry_id, _ in box.r.xrange(box.keys.inbox(user))]
    assert kept == ids[-CAP:], "the cap trimmed the oldest entries"
    epoch = Client(gateway, transport, user).connected["epoch"]

    with Client(gateway, transport, user, last_event_id=ids[-CAP - 2], epoch=epoch) as behind:
        assert behind.connected["recovered"] is False, "the newest trimmed entry was never seen"
        assert behind.notifications(CAP) == kept, "what is kept is still replayed"
    with Client(gateway, transport, user, last_event_id=ids[-CAP - 1], epoch=epoch) as at_edge:
        assert at_edge.connected["recovered"] is True, "the client saw every trimmed entry"
        assert at_edge.notifications(CAP) == kept


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_resume_after_the_inbox_keys_were_lost_and_recreated_is_not_recovered(
        gateway: Gateway, transport: str) -> None:
    user, box = uid(), Inbox(max_len=CAP)
    append(box, user, 3, "old")
    before, seen = connect_and_see(gateway, transport, user, box)
    k = box.keys
    box.r.delete(k.inbox(user), k.inbox_ids(user), k.unread(user), k.inbox_epoch(user))

    with Client(gateway, transport, user, last_event_id=seen, epoch=before["epoch"]) as lost:
        assert lost.connected["recovered"] is False, "the stream is gone"
    fresh = append(box, user, 2, "new")
    for epoch in (before["epoch"], None):  # the old epoch, or only the old id (a plain EventSource)
        with Client(gateway, transport, user, last_event_id=seen, epoch=epoch) as client:
            assert client.connected["recovered"] is False
            assert client.connected["epoch"] not in (None, before["epoch"]), "the new stream has a new epoch"
            assert client.connected["last_event_id"] == "0-0", "the replay starts over"
            assert client.notifications(2) == fresh


def test_a_websocket_resume_frame_says_whether_it_recovered(gateway: Gateway) -> None:
    user, box = uid(), Inbox(max_len=CAP)
    ids = append(box, user, 2 * CAP + 1)
    with Client(gateway, "websocket", user) as client:
        epoch = client.connected["epoch"]
        client.ws.send({"type": "resume", "since": ids[-2], "epoch": epoch, "ref": 1})
        assert client.ws.next("resumed") == {"type": "resumed", "recovered": True, "last_event_id": ids[-2], "ref": 1}
        assert client.notifications(1) == ids[-1:]
        client.ws.send({"type": "resume", "since": ids[0], "epoch": epoch})
        assert client.ws.next("resumed") == {"type": "resumed", "recovered": False, "last_event_id": ids[0]}
        assert client.notifications(CAP) == ids[-CAP:]
        client.ws.send({"type": "resume", "since": ids[-2], "epoch": "0123abcd"})
        assert client.ws.next("resumed") == {"type": "resumed", "recovered": False, "last_event_id": "0-0"}
        assert client.notifications(CAP) == ids[-CAP:], "another epoch's id: the whole inbox again"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_an_inbox_its_user_emptied_starts_a_new_epoch(gateway: Gateway, transport: str) -> None:
    """Deletes are not replayed, so a client that did not see its user empty the inbox must reload."""
    user, box = uid(), Inbox(max_len=CAP)
    append(box, user, 1, "first")
    before, seen = connect_and_see(gateway, transport, user, box)
    box.delete(user, [item["id"] for item in box.list(user).items])
    fresh = append(box, user, 1, "after")
    with Client(gateway, transport, user, last_event_id=seen, epoch=before["epoch"]) as client:
        assert client.connected["recovered"] is False
        assert client.notifications(1) == fresh


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


def restart_without_persistence(server: RedisServer) -> None:
    """``SHUTDOWN NOSAVE`` and start again: every key is gone, as after a crash with no RDB or AOF."""
    redis.Redis(port=server.port, retry=Retry(NoBackoff(), 0)).shutdown(nosave=True)
    assert server.proc is not None
    server.proc.wait(10)
    time.sleep(0.3)
    server.start()


def answers(gateway: Gateway, user: str) -> bool:
    """Whether a live connection opens (not 503 while the gateway reconnects to Redis)."""
    stream = SSE(gateway, token(user))
    stream.close()
    return stream.status == 200


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
def test_resume_after_a_redis_restart_without_persistence_is_not_recovered(private_redis: RedisServer) -> None:
    gw = Gateway({"NOTIFIER_REDIS_URL": private_redis.url, "NOTIFIER_BROKER_URL": private_redis.url}).wait_ready()
    box = Inbox(client=redis.Redis.from_url(private_redis.url, decode_responses=True), keys=Keys("nt"),
                max_len=CAP)
    user = uid()
    try:
        append(box, user, 2, "before")
        seen: dict[str, tuple[dict[str, Any], str]] = {t: connect_and_see(gw, t, user, box) for t in TRANSPORTS}
        same = Client(gw, "sse", user, last_event_id=seen["websocket"][1], epoch=seen["websocket"][0]["epoch"])
        assert same.connected["recovered"] is True, "before the restart nothing was lost"
        same.close()

        open_sse = Client(gw, "sse", user, last_event_id=seen["websocket"][1])
        open_ws = Client(gw, "websocket", user, last_event_id=seen["websocket"][1])
        restart_without_persistence(private_redis)
        assert box.r.exists(box.keys.inbox(user)) == 0, "the restart lost the inbox"
        kind, _, data = open_sse.sse.next("error", timeout=30)
        assert (kind, data["error"]) == ("error", "inbox_reset"), "an open stream is ended, to resume"
        with pytest.raises(ConnectionClosed) as closed:
            open_ws.ws.next("notification", timeout=30)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
        open_sse.close()
        open_ws.close()
        wait_for(lambda: answers(gw, user), timeout=20, message="the gateway back on Redis")
        fresh = append(box, user, 1, "after")
        for transport, (connected, last_id) in seen.items():
            with Client(gw, transport, user, last_event_id=last_id, epoch=connected["epoch"]) as client:
                assert client.connected["recovered"] is False, transport
                assert client.notifications(1) == fresh
    finally:
        gw.stop()
