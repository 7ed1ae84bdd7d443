"""The gateway's WebSocket keepalive: the server sends a Ping control frame every
NOTIFIER_HEARTBEAT_SECONDS and closes a connection whose client stops answering them."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.support.gateway_support import Gateway, RawWs, token
from tests.support.helpers import uid

HEARTBEAT = 0.5


@pytest.fixture(scope="module")
def gateway() -> Iterator[Gateway]:
    gw = Gateway({"NOTIFIER_HEARTBEAT_SECONDS": str(HEARTBEAT)}).wait_ready()
    yield gw
    gw.stop()


def test_the_server_pings_every_heartbeat_and_a_client_that_answers_stays(gateway: Gateway) -> None:
    client = RawWs(gateway, token(uid()))
    try:
        assert client.received()[0]["type"] == "connected"
        start = time.monotonic()
        client.read_until(lambda: len(client.pings) >= 4, timeout=10)
        assert client.close_code is None, f"closed with {client.close_code} although every ping was answered"
        assert client.pings[-1] - start < 8 * HEARTBEAT, "pings came slower than NOTIFIER_HEARTBEAT_SECONDS"
        gaps = [b - a for a, b in zip(client.pings, client.pings[1:])]
        assert min(gaps) > HEARTBEAT / 2, f"pings closer together than the heartbeat: {gaps}"
    finally:
        client.close()


def test_a_client_that_stops_answering_pings_is_closed_within_two_heartbeats(gateway: Gateway) -> None:
    client = RawWs(gateway, token(uid()), answer_pings=False)
    try:
        start = time.monotonic()
        client.read_until(lambda: False, timeout=10)
        closed_after = time.monotonic() - start
        assert client.pings, "the server never pinged"
        assert client.close_code == 1011, f"closed with {client.close_code}, not the keepalive timeout's 1011"
        assert closed_after < 2 * HEARTBEAT + 1.5, f"closed only after {closed_after:.1f}s"
    finally:
        client.close()
