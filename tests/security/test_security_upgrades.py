"""Clients without credentials cannot hold the gateway's connections: oversized or slow request heads
(WebSocket upgrades included) are answered and closed, and idle ones are bounded per gateway.

Raw sockets against a real ``notifier gateway`` (``notifier/gateway/http_protocol.py`` and
``ws_protocol.py``); the figures printed here are the ones in SECURITY.md.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator

import psutil
import pytest

from tests.support.gateway_support import API_KEY, Gateway, token
from tests.support.helpers import Worker, uid, wait_for

TIMEOUT = 1.5
UPGRADE = (b"Host: gateway\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n")
BIG = 100 * 1024


@pytest.fixture(scope="module")
def gateway() -> Iterator[Gateway]:
    g = Gateway({"NOTIFIER_HANDSHAKE_TIMEOUT_SECONDS": str(TIMEOUT)}).wait_ready()
    yield g
    g.stop()


def connect(gateway: Gateway) -> socket.socket:
    return socket.create_connection(("127.0.0.1", gateway.port), timeout=10)


def read_to_eof(sock: socket.socket, timeout: float = 10) -> tuple[bytes, float]:
    """Everything the gateway sends until it closes, and the seconds that took."""
    start = time.monotonic()
    sock.settimeout(timeout)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data, time.monotonic() - start


@pytest.mark.parametrize("head, status", [
    (b"GET /v1/ws HTTP/1.1\r\n" + UPGRADE + b"X-Big: " + b"a" * BIG + b"\r\n\r\n", b"431"),
    (b"GET /v1/ws HTTP/1.1\r\n" + UPGRADE + b"X-Big: " + b"a" * BIG, b"431"),  # never ends
    (b"GET /v1/ws HTTP/1.1\r\n" + UPGRADE + b"Cookie: " + b"a" * 9000 + b"\r\n\r\n", b"431"),  # websockets' line limit
    (b"GET /v1/ws?" + b"a" * BIG + b" HTTP/1.1\r\n" + UPGRADE + b"\r\n", b"414"),
    (b"GET /v1/notifications HTTP/1.1\r\nHost: gateway\r\nX-Big: " + b"a" * BIG + b"\r\n\r\n", b"431"),
], ids=["100 KiB header", "100 KiB unterminated header", "9 KB cookie line", "100 KiB URL", "plain HTTP"])
def test_an_oversized_head_is_answered_then_closed(gateway: Gateway, head: bytes, status: bytes) -> None:
    with connect(gateway) as sock:
        sock.sendall(head)
        answer, seconds = read_to_eof(sock)
    assert answer.startswith(b"HTTP/1.1 " + status), answer[:200]
    assert seconds < 2, f"closed after {seconds:.2f} s"


def test_200_oversized_upgrades_leave_no_file_descriptor_behind(gateway: Gateway) -> None:
    """The clients keep their sockets open: the gateway alone must let go of them."""
    process = psutil.Process(gateway.proc.pid)
    baseline = process.num_fds()
    socks = [connect(gateway) for _ in range(200)]
    try:
        started = time.monotonic()
        for sock in socks:
            sock.sendall(b"GET /v1/ws HTTP/1.1\r\n" + UPGRADE + b"X-Big: " + b"a" * BIG + b"\r\n\r\n")
        answers = [read_to_eof(sock)[0][:12] for sock in socks]
        assert answers == [b"HTTP/1.1 431"] * 200
        wait_for(lambda: process.num_fds() <= baseline + 5, timeout=5,
                 message=f"the gateway's fds back near {baseline}")
        print(f"fds: {baseline} before, {process.num_fds()} {time.monotonic() - started:.2f} s after 200 431s")
    finally:
        for sock in socks:
            sock.close()


@pytest.mark.parametrize("sent", [b"", b"GET /v1/w", b"GET /v1/ws HTTP/1.1\r\n" + UPGRADE],
                         ids=["nothing", "half a request line", "half an upgrade"])
def test_a_head_that_never_completes_is_closed_after_the_timeout(gateway: Gateway, sent: bytes) -> None:
    with connect(gateway) as sock:
        sock.sendall(sent)
        answer, seconds = read_to_eof(sock)
    assert answer.startswith(b"HTTP/1.1 408") and b"NOTIFIER_HANDSHAKE_TIMEOUT_SECONDS" in answer, answer
    print(f"{sent[:12]!r}...: closed after {seconds:.2f} s")
    assert TIMEOUT - 0.1 < seconds < TIMEOUT + 1.5


def test_idle_connections_are_bounded_and_a_real_client_still_gets_in(
        worker_factory: Callable[..., Worker]) -> None:
    bound = 20
    worker_factory(queues="router,realtime", concurrency=1)
    gateway = Gateway({"NOTIFIER_MAX_PENDING_HANDSHAKES": str(bound),
                       "NOTIFIER_HANDSHAKE_TIMEOUT_SECONDS": "30"}).wait_ready()
    idle: list[socket.socket] = []
    try:
        process = psutil.Process(gateway.proc.pid)
        for _ in range(bound):
            idle.append(connect(gateway))
        ports = {sock.getsockname()[1] for sock in idle}
        wait_for(lambda: ports <= {c.raddr.port for c in process.net_connections("tcp") if c.raddr}, timeout=5,
                 message="the gateway to accept the idle connections")
        extra = [connect(gateway) for _ in range(10)]
        idle += extra
        closed = [read_to_eof(sock, timeout=5) for sock in idle[:10]]
        assert all(answer.startswith(b"HTTP/1.1 503") for answer, _ in closed), closed[0][0]
        user = uid("bounded")
        with gateway.ws(token(user)) as ws:
            ws.next("connected")
            with gateway.client() as http:
                body = {"user_id": user, "notification": {"type": "t", "title": "still here"}}
                assert http.post("/v1/notify", json=body, headers={"X-API-Key": API_KEY}).status_code == 202
            assert ws.next("notification")["notification"]["title"] == "still here"
        for sock in extra[-5:]:  # the newest idle ones were never closed
            sock.setblocking(False)
            with pytest.raises(BlockingIOError):
                sock.recv(1)
    finally:
        for sock in idle:
            sock.close()
        gateway.stop()
