"""Live delivery over SSE and WebSocket: a real worker, a real gateway, real Redis.

Notifications are sent the way services send them (``send_notification.delay`` or ``POST /v1/notify``)
and go through the router and the realtime channel of a real worker before reaching the clients.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from notifier import send_notification, tokens
from notifier.state.inbox import Inbox
from tests.support.gateway_support import API_KEY, SSE, Gateway, RawWs, WsClient, token
from tests.support.helpers import Worker, start_worker, uid, wait_for


@pytest.fixture(scope="module")
def worker() -> Iterator[Worker]:
    w = start_worker(queues="router,realtime")
    yield w
    w.stop()


@pytest.fixture(scope="module")
def gateway(worker: Worker) -> Iterator[Gateway]:
    gw = Gateway().wait_ready()
    yield gw
    gw.stop()


def send(user: str, title: str) -> str:
    return send_notification.delay(user, {"type": "test", "title": title, "body": f"{title} body"}).id


def inbox_ids(user: str, count: int) -> list[str]:
    """The user's inbox entry ids, oldest first, once ``count`` notifications have arrived."""
    items = wait_for(lambda: (page := Inbox().list(user, limit=200).items) and len(page) >= count and page,
                     timeout=20, message=f"{count} notifications in the inbox")
    return [i["entry_id"] for i in reversed(items)]


def assert_resume_delivers_the_rest(gateway: Gateway, user: str, got: list[str], total: int) -> None:
    """A WebSocket resuming after ``got`` receives the rest, and ``got`` + rest is the inbox in order."""
    with gateway.ws(token(user), last_event_id=got[-1]) as ws:
        rest = [ws.next("notification")["id"] for _ in range(total - len(got))]
    assert got + rest == [item["entry_id"] for item in Inbox().since(user, "0-0", total)]


# Delivery -------------------------------------------------------------------------------------------
def test_sse_receives_a_notification_sent_through_the_worker(gateway: Gateway) -> None:
    user = uid()
    stream = SSE(gateway, query=f"?token={token(user)}")
    try:
        kind, start_id, connected = stream.next()
        assert kind == "connected" and connected["user_id"] == user and connected["unread"] == 0
        assert start_id == connected["last_event_id"] == "0-0"
        nid = send(user, "hello sse")
        event_id, data = stream.notifications(1)[0]
        assert data["id"] == nid and data["title"] == "hello sse" and data["read"] is False
        assert data["entry_id"] == event_id == inbox_ids(user, 1)[0]
        assert stream.next("unread_count")[2] == {"unread": 1}
        wait_for(lambda: stream.comments >= 1, timeout=3, message="a heartbeat comment")
    finally:
        stream.close()


def test_websocket_answers_pings_and_marks_read_by_the_frame_id(gateway: Gateway) -> None:
    user = uid()
    with gateway.ws(token(user)) as ws:
        connected = ws.next()
        assert connected["type"] == "connected" and connected["user_id"] == user
        nid, other = send(user, "hello ws"), send(user, "and another")
        # two sends routed apart (two pool processes) reach the inbox in either order
        frames = {f["notification"]["id"]: f for f in (ws.next("notification"), ws.next("notification"))}
        assert set(frames) == {nid, other}
        frame = frames[nid]
        assert all(f["id"] == f["notification"]["entry_id"] for f in frames.values())
        ws.send({"type": "ping", "ref": 7})
        assert ws.next("pong") == {"type": "pong", "ref": 7}
        ws.send({"type": "read", "ids": [frame["id"], "1-0", "nope"], "ref": "r1"})
        assert ws.next("marked") == {"type": "marked", "marked": 1, "unknown": ["1-0", "nope"], "unread": 1,
                                     "ref": "r1"}
        assert [i["id"] for i in Inbox().list(user, unread_only=True).items] == [other]
        ws.send({"type": "read", "ids": [other], "ref": "r2"})
        assert ws.next("marked") == {"type": "marked", "marked": 1, "unknown": [], "unread": 0, "ref": "r2"}


def test_notify_endpoint_sends_through_the_pipeline(gateway: Gateway) -> None:
    alice, bob = uid("alice"), uid("bob")
    streams = {u: SSE(gateway, token(u)) for u in (alice, bob)}
    try:
        for s in streams.values():
            s.next("connected")
        with httpx.Client(base_url=gateway.url, timeout=10) as http:
            one = http.post("/v1/notify", headers={"X-API-Key": API_KEY},
                            json={"user_id": alice, "notification": {"type": "test", "title": "from go"}})
            assert one.status_code == 202, one.text
            bulk = http.post("/v1/notify/bulk", headers={"Authorization": f"Bearer {API_KEY}"},
                             json={"items": [{"user_id": bob, "notification": {"type": "test", "title": "b1"}},
                                             {"user_id": alice, "notification": {"type": "test", "title": "a2"}}]})
            assert bulk.status_code == 202, bulk.text
        got_alice = [d["title"] for _, d in streams[alice].notifications(2)]
        assert sorted(got_alice) == ["a2", "from go"]
        assert [d["title"] for _, d in streams[bob].notifications(1)] == ["b1"]
        assert one.json()["id"] in {i["id"] for i in Inbox().list(alice).items}
    finally:
        for s in streams.values():
            s.close()


def test_every_connection_of_a_user_receives_and_nobody_else_does(gateway: Gateway) -> None:
    user, other = uid(), uid("other")
    streams = [SSE(gateway, token(user)) for _ in range(2)]
    other_stream = SSE(gateway, token(other))
    try:
        with gateway.ws(token(user)) as ws:
            ws.next("connected")
            for s in [*streams, other_stream]:
                s.next("connected")
            nid = send(user, "to all tabs")
            for s in streams:
                assert s.notifications(1)[0][1]["id"] == nid
            assert ws.next("notification")["notification"]["id"] == nid
            other_stream.quiet(seconds=1)
    finally:
        for s in [*streams, other_stream]:
            s.close()


def test_one_subscription_per_user_dropped_with_the_last_connection(gateway: Gateway) -> None:
    from notifier.redis.store import get_keys, get_redis

    user = uid()
    channel = get_keys().live(user)

    def subscribers() -> int:
        return int(dict(get_redis().pubsub_numsub(channel))[channel])

    streams = [SSE(gateway, token(user)) for _ in range(3)]
    try:
        for s in streams:
            s.next("connected")
        assert subscribers() == 1
        streams.pop().close()
        streams.pop().close()
        assert subscribers() == 1
        assert send(user, "still live") == streams[0].notifications(1)[0][1]["id"]
    finally:
        for s in streams:
            s.close()
    wait_for(lambda: subscribers() == 0, timeout=5, message="the channel to be unsubscribed")


# Read-state sync ----------------------------------------------------------------------------------
def test_marking_read_on_one_connection_updates_the_others(gateway: Gateway) -> None:
    user = uid()
    stream = SSE(gateway, token(user))
    try:
        stream.next("connected")
        with gateway.ws(token(user)) as ws:
            ws.next("connected")
            first, second = send(user, "one"), send(user, "two")
            stream.notifications(2)
            _sse_unread_becomes(stream, 2)
            _ws_unread_becomes(ws, 2)
            with gateway.client(token(user)) as http:
                assert http.post("/v1/notifications/read", json={"ids": [first]}).json()["unread"] == 1
            _sse_unread_becomes(stream, 1)
            _ws_unread_becomes(ws, 1)
            ws.send({"type": "read", "all": True})
            _sse_unread_becomes(stream, 0)
            send(user, "three")
            _sse_unread_becomes(stream, 1)
            with gateway.client(token(user)) as http:
                assert http.delete(f"/v1/notifications/{second}").json()["unread"] == 1
                http.post("/v1/notifications/read", json={"all": True})
            _sse_unread_becomes(stream, 0)
            _ws_unread_becomes(ws, 0)
    finally:
        stream.close()


def _sse_unread_becomes(stream: SSE, wanted: int) -> None:
    """Unread counts arrive in order; skip older ones until ``wanted`` (or fail on timeout)."""
    while (count := stream.next("unread_count", 10)[2]["unread"]) != wanted:
        assert count > wanted or wanted == 1, f"unread went to {count} while waiting for {wanted}"


def _ws_unread_becomes(ws: WsClient, wanted: int) -> None:
    while ws.next("unread_count", 10)["unread"] != wanted:
        pass


# Resume -------------------------------------------------------------------------------------------
def test_sse_resume_gets_exactly_the_missed_ones_in_order(gateway: Gateway) -> None:
    user = uid()
    stream = SSE(gateway, token(user))
    stream.next("connected")
    send(user, "seen")
    seen_id, _ = stream.notifications(1)[0]
    stream.close()
    for i in range(4):
        send(user, f"missed {i}")
    missed = inbox_ids(user, 5)[1:]
    stream = SSE(gateway, token(user), last_event_id=seen_id)
    try:
        kind, _, connected = stream.next()
        assert kind == "connected" and connected["last_event_id"] == seen_id
        assert [event_id for event_id, _ in stream.notifications(4)] == missed
        assert stream.next("unread_count")[2] == {"unread": 5}
        send(user, "live again")
        live_id, live = stream.notifications(1)[0]
        assert live["title"] == "live again" and live_id == inbox_ids(user, 6)[-1]
        stream.quiet(seconds=0.5)
    finally:
        stream.close()


def test_websocket_resume_by_query_and_by_frame(gateway: Gateway) -> None:
    user = uid()
    for i in range(3):
        send(user, f"n{i}")
    ids = inbox_ids(user, 3)
    with gateway.ws(token(user), last_event_id=ids[0]) as ws:
        assert ws.next()["type"] == "connected"
        assert [ws.next("notification")["id"] for _ in range(2)] == ids[1:]
        ws.send({"type": "resume", "since": "0-0"})
        assert [ws.next("notification")["id"] for _ in range(3)] == ids
        ws.send({"type": "resume", "since": "yesterday"})
        assert ws.next("error")["error"] == "invalid_frame"


def test_no_gap_and_no_duplicate_while_reconnecting_under_load(gateway: Gateway) -> None:
    """Entries keep arriving while the client drops and resumes again and again: it must see each
    entry exactly once, in inbox order."""
    user = uid()
    total = 150
    box = Inbox()

    def produce() -> None:
        for i in range(total):
            box.append(user, {"id": f"load{i}", "type": "test", "title": f"#{i}"})
            time.sleep(0.004)

    received: list[str] = []
    last = "0-0"
    producer = threading.Thread(target=produce)
    producer.start()
    deadline = time.monotonic() + 60
    while len(received) < total and time.monotonic() < deadline:
        stream = SSE(gateway, token(user), last_event_id=last)
        try:
            stream.next("connected")
            for _ in range(7):
                kind, event_id, _data = stream.next(timeout=10)
                if kind == "notification":
                    assert event_id is not None
                    received.append(event_id)
                    last = event_id
                if len(received) == total:
                    break
        finally:
            stream.close()
    producer.join()
    expected = [i["entry_id"] for i in reversed(box.list(user, limit=200).items)]
    assert len(received) == len(set(received)), "duplicate deliveries"
    assert received == expected


# Limits -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tight_gateway(worker: Worker) -> Iterator[Gateway]:
    gw = Gateway({"NOTIFIER_MAX_CONNECTIONS_PER_USER": "2", "NOTIFIER_CLIENT_BUFFER": "4"}).wait_ready()
    yield gw
    gw.stop()


def test_per_user_connection_cap(tight_gateway: Gateway) -> None:
    user = uid()
    streams = [SSE(tight_gateway, token(user)) for _ in range(2)]
    try:
        for s in streams:
            s.next("connected")
        third = SSE(tight_gateway, token(user))
        assert third.status == 429 and third.events.get(timeout=5)[0] == "closed"
        with tight_gateway.ws(token(user)) as ws:
            with pytest.raises(ConnectionClosed) as closed:
                ws.next(timeout=5)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4429
        other = SSE(tight_gateway, token(uid()))
        assert other.status == 200
        other.close()
    finally:
        for s in streams:
            s.close()
    again = SSE(tight_gateway, token(user))
    try:
        assert again.status == 200
    finally:
        again.close()


def test_a_client_that_falls_behind_is_dropped_and_resumes(tight_gateway: Gateway) -> None:
    user = uid()
    stream = SSE(tight_gateway, token(user))
    burst = 200
    try:
        stream.next("connected")
        box = Inbox()
        pipe_items = [(user, f"burst{i}", f'{{"id":"burst{i}","type":"test","title":"{i}"}}', True)
                      for i in range(burst)]
        box.append_many(pipe_items)
        got: list[str] = []
        while True:
            kind, event_id, data = stream.next(timeout=10)
            if kind == "notification":
                got.append(str(event_id))
            elif kind in ("error", "closed"):
                break
        assert kind == "error" and data["error"] == "slow_consumer"
        assert len(got) < burst
    finally:
        stream.close()
    resumed = SSE(tight_gateway, token(user), last_event_id=got[-1] if got else "0-0")
    try:
        rest = [event_id for event_id, _ in resumed.notifications(burst - len(got))]
        expected = [i["entry_id"] for i in reversed(Inbox().list(user, limit=200).items)]
        assert got + rest == expected
    finally:
        resumed.close()


@pytest.fixture(scope="module")
def unpinged_gateway(worker: Worker) -> Iterator[Gateway]:
    """A small client buffer and a long heartbeat: a client that stops reading meets the buffer limit
    (1013), not the keepalive Ping it cannot answer (1011)."""
    gw = Gateway({"NOTIFIER_CLIENT_BUFFER": "4", "NOTIFIER_HEARTBEAT_SECONDS": "30"}).wait_ready()
    yield gw
    gw.stop()


def test_a_websocket_client_that_stops_reading_is_dropped_once_it_reads_and_resumes(
        unpinged_gateway: Gateway) -> None:
    """Notifications come slower than the gateway writes them, but the client reads nothing: its socket
    fills, the gateway's writes wait (its buffer then overflows), and the close (1013) waits behind the
    unread frames. Once the client reads it gets those and the close; resuming loses nothing."""
    user = uid()
    client = RawWs(unpinged_gateway, token(user))
    burst, body = 500, "x" * 16_000
    try:
        assert client.frames.get_nowait()["type"] == "connected"
        box = Inbox()
        for i in range(burst):
            box.append(user, {"id": f"big{i}", "type": "test", "title": str(i), "body": body})
            time.sleep(0.002)
        client.read_until(lambda: False, timeout=30)
        assert client.close_code == 1013
        got = [frame["id"] for frame in client.received() if frame["type"] == "notification"]
        assert 0 < len(got) < burst
    finally:
        client.close()
    assert_resume_delivers_the_rest(unpinged_gateway, user, got, burst)


@pytest.fixture(scope="module")
def impatient_gateway(worker: Worker) -> Iterator[Gateway]:
    gw = Gateway({"NOTIFIER_SEND_TIMEOUT_SECONDS": "2"}).wait_ready()
    yield gw
    gw.stop()


def _sse_ids(raw: bytes) -> list[str]:
    return [m.decode() for m in re.findall(rb"event: notification\nid: ([0-9]+-[0-9]+)\n", raw)]


@pytest.mark.parametrize("transport", ["sse", "ws"])
def test_a_client_that_takes_nothing_is_dropped_after_the_send_timeout_and_resumes(
        impatient_gateway: Gateway, transport: str) -> None:
    """Fewer notifications than the client's buffer holds, but more bytes than the sockets take: the
    gateway's write waits, and after NOTIFIER_SEND_TIMEOUT_SECONDS the connection is dropped (its
    subscription goes although the client's socket is still open; a WebSocket client reading nothing
    answers no keepalive Ping either, so that may end it first). What was written is read later;
    resuming from there loses nothing."""
    from notifier.redis.store import get_keys, get_redis

    user = uid()
    channel = get_keys().live(user)
    burst, body = 200, "x" * 40_000
    raw: RawWs | socket.socket
    if transport == "ws":
        raw = RawWs(impatient_gateway, token(user))
        assert raw.received()[0]["type"] == "connected"
    else:
        raw = socket.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.connect(("127.0.0.1", impatient_gateway.port))
        raw.sendall(f"GET /v1/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token(user)}\r\n\r\n".encode())
    try:
        wait_for(lambda: int(dict(get_redis().pubsub_numsub(channel))[channel]) == 1, timeout=10,
                 message="the connection to subscribe")
        box = Inbox()
        for i in range(burst):
            box.append(user, {"id": f"big{i}", "type": "test", "title": str(i), "body": body})
        wait_for(lambda: int(dict(get_redis().pubsub_numsub(channel))[channel]) == 0, timeout=15,
                 message="the stalled connection to be dropped")
        if isinstance(raw, RawWs):
            raw.read_until(lambda: False, timeout=30)
            got = [f["id"] for f in raw.received() if f["type"] == "notification"]
        else:
            raw.settimeout(30)
            data = b""
            while chunk := raw.recv(1 << 20):
                data += chunk
            got = _sse_ids(data)
    finally:
        raw.close()
    assert 0 < len(got) < burst
    assert_resume_delivers_the_rest(impatient_gateway, user, got, burst)


# Tokens on live connections ----------------------------------------------------------------------
def test_live_connections_end_when_the_token_expires(gateway: Gateway) -> None:
    user = uid()
    short = tokens.issue(user, 2)
    stream = SSE(gateway, short)
    try:
        stream.next("connected")
        kind, _, data = stream.next("error", timeout=6)
        assert kind == "error" and data["error"] == "token_expired"
    finally:
        stream.close()
    with gateway.ws(tokens.issue(user, 2)) as ws:
        ws.next("connected")
        with pytest.raises(ConnectionClosed) as closed:
            ws.next("never", timeout=6)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


def test_websocket_refuses_missing_expired_and_forged_tokens(gateway: Gateway) -> None:
    user = uid()
    for bad in (None, tokens.issue(user, 5, now=time.time() - 60), tokens.issue(user, 60, key=b"x" * 40)):
        with gateway.ws(bad) as ws:
            with pytest.raises(ConnectionClosed) as closed:
                ws.next(timeout=5)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
    stream = SSE(gateway, query=f"?token={tokens.issue(user, 60, key=b'x' * 40)}")
    assert stream.status == 401
    stream.close()


def test_websocket_answers_bad_frames_with_errors_and_stays_up(gateway: Gateway) -> None:
    with gateway.ws(token(uid())) as ws:
        ws.next("connected")
        for frame, needle in (("not json", "not valid JSON"), ('{"type": "dance"}', "type"),
                              ('{"type": "read"}', "either"), ('{"type": "read", "ids": "x"}', "ids"),
                              ('[1, 2]', "invalid frame"), ('{"type": "read", "ids": [], "all": true, "ref": 3}', "either")):
            ws.send(frame)
            error = ws.next("error")
            assert needle in error["message"], (frame, error)
        ws.conn.send(b"\x00binary")
        assert "binary" in ws.next("error")["message"]
        ws.send({"type": "ping"})
        assert ws.next("pong") == {"type": "pong"}
        ws.send("x" * (70 * 1024))
        with pytest.raises(ConnectionClosed) as closed:
            ws.next(timeout=5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


# Metrics --------------------------------------------------------------------------------------------
def _metric(gateway: Gateway, name: str, **labels: str) -> float:
    text = httpx.get(gateway.url + "/metrics", timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()))


def test_gateway_metrics_move(gateway: Gateway) -> None:
    before = {key: _metric(gateway, name, **labels) for key, (name, labels) in {
        "sse": ("notifier_gateway_connections", {"transport": "sse"}),
        "delivered": ("notifier_gateway_notifications_delivered_total", {"transport": "sse"}),
        "resumes": ("notifier_gateway_resumes_total", {"transport": "websocket"}),
        "auth": ("notifier_gateway_auth_failures_total", {"kind": "invalid_token"}),
    }.items()}
    user = uid()
    stream = SSE(gateway, token=token(user))
    try:
        stream.next()
        assert _metric(gateway, "notifier_gateway_connections", transport="sse") == before["sse"] + 1
        send(user, "counted")
        stream.notifications(1)
        assert _metric(gateway, "notifier_gateway_notifications_delivered_total", transport="sse") >= \
            before["delivered"] + 1
    finally:
        stream.close()
    wait_for(lambda: _metric(gateway, "notifier_gateway_connections", transport="sse") == before["sse"],
             message="connection gauge back down")
    with gateway.ws(token(user), last_event_id="0-0") as ws:
        ws.next("connected")
    assert _metric(gateway, "notifier_gateway_resumes_total", transport="websocket") == before["resumes"] + 1
    assert httpx.get(gateway.url + "/v1/notifications", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert _metric(gateway, "notifier_gateway_auth_failures_total", kind="invalid_token") == before["auth"] + 1
