"""The gateway survives a Redis restart: its one Pub/Sub connection comes back, every channel is
subscribed again, and open clients get what was published while it was away, exactly once.

This module runs a Redis server of its own (the shared one must never be restarted by a test).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator

import httpx
import pytest
import redis

from notifier.redis.keys import Keys
from notifier.state.inbox import Inbox
from tests.support.gateway_support import SSE, Gateway, token
from tests.support.helpers import uid, wait_for
from tests.support.processes import free_port

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")


class RedisServer:
    """A redis-server on a free port that keeps its data across restarts (an RDB file)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="notifier-gw-redis-")
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir, "--save", "",
             "--appendonly", "no", "--protected-mode", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self._pings, timeout=10, message="redis-server to start")
        return self

    def _pings(self) -> bool:
        try:
            return bool(redis.Redis(port=self.port, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def restart(self, downtime: float = 0.5) -> None:
        """Save, stop, wait, start again: clients see their connections drop."""
        redis.Redis(port=self.port).shutdown(save=True)
        assert self.proc is not None
        self.proc.wait(10)
        time.sleep(downtime)
        self.start()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


def test_open_connections_survive_a_redis_restart_without_gaps_or_duplicates(private_redis: RedisServer) -> None:
    gw = Gateway({"NOTIFIER_REDIS_URL": private_redis.url, "NOTIFIER_BROKER_URL": private_redis.url}).wait_ready()
    user = uid()
    box = Inbox(client=redis.Redis.from_url(private_redis.url, decode_responses=True), keys=Keys("nt"))
    stream = SSE(gw, token(user))
    ws = gw.ws(token(user))
    try:
        stream.next("connected")
        ws.next("connected")
        box.append(user, {"id": "before", "type": "test", "title": "before"})
        assert stream.notifications(1)[0][1]["id"] == "before"
        assert ws.next("notification")["notification"]["id"] == "before"

        others = [SSE(gw, token(uid())) for _ in range(4)]
        for other in others:
            other.next("connected")
        hubs = [c for c in box.r.client_list(_type="pubsub") if c["name"] == "notifier-gateway-hub"]
        assert len(hubs) == 1 and int(hubs[0]["sub"]) == 5, "one Pub/Sub connection for every user"
        for other in others:
            other.close()

        private_redis.restart()
        box.r.connection_pool.reset()
        box.append(user, {"id": "during", "type": "test", "title": "published before the hub is back"})
        wait_for(lambda: httpx.get(gw.url + "/healthz").status_code == 200, timeout=15, message="hub back")
        box.append(user, {"id": "after", "type": "test", "title": "after"})

        assert [d["id"] for _, d in stream.notifications(2, timeout=15)] == ["during", "after"]
        assert [ws.next("notification")["notification"]["id"] for _ in range(2)] == ["during", "after"]
        stream.quiet(seconds=0.5)
        assert "reconnected to Redis; resubscribed" in gw.log()
    finally:
        stream.close()
        ws.close()
        gw.stop()


def test_health_is_503_while_redis_is_down(private_redis: RedisServer) -> None:
    gw = Gateway({"NOTIFIER_REDIS_URL": private_redis.url, "NOTIFIER_BROKER_URL": private_redis.url}).wait_ready()
    try:
        redis.Redis(port=private_redis.port).shutdown(nosave=True)
        assert private_redis.proc is not None
        private_redis.proc.wait(10)
        health = wait_for(lambda: (r := httpx.get(gw.url + "/healthz", timeout=5)).status_code == 503 and r,
                          timeout=10, message="healthz 503")
        assert health.json()["redis"] == "unreachable"
        with gw.client(token(uid())) as http:
            down = http.get("/v1/notifications/unread-count")
            assert down.status_code == 503 and down.json()["error"] == "unavailable"
        stream = SSE(gw, token(uid()))
        assert stream.status == 503
        stream.close()
        private_redis.start()
        wait_for(lambda: httpx.get(gw.url + "/healthz").status_code == 200, timeout=15, message="healthz 200")
    finally:
        gw.stop()
