"""An idempotency key never swallows a send: a producer that fails or dies before publishing gives the
key back (at once, or when its short pending claim lapses), and the router still delivers one send per key."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest
import redis

from notifier import send_notification
from notifier.config import get_settings
from notifier.pipeline.producer import producer_app
from notifier.redis.store import get_keys
from notifier.state.inbox import Inbox
from tests.support.helpers import ROOT, Worker, private_env, start_worker, uid, use_env, wait_for

PENDING = 2
"""The producers' pending-claim lifetime in these tests (NOTIFIER_IDEMPOTENCY_PENDING_TTL_SECONDS)."""

_SEND = """
import signal
import sys
signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C as in a terminal, whatever started the suite
from notifier import send_notification
send_notification.delay(sys.argv[1], {"type": "order_update", "title": "first try", "channels": ["realtime"]},
                        idempotency_key=sys.argv[2])
"""


def note(title: str) -> dict[str, object]:
    return {"type": "order_update", "title": title, "channels": ["realtime"]}


@pytest.fixture
def silent_server() -> Iterator[socket.socket]:
    """A server that takes connections and never answers: a publish to it hangs."""
    server = socket.create_server(("127.0.0.1", 0), backlog=16)
    yield server
    server.close()


@pytest.fixture
def silent_broker(silent_server: socket.socket) -> str:
    return f"redis://127.0.0.1:{silent_server.getsockname()[1]}/0"


def connected(server: socket.socket) -> bool:
    """Whether a client connection waits on the silent server (the producer is in its publish)."""
    return bool(select.select([server], [], [], 0)[0])


def hanging_producer(broker: str, user: str, key: str, redis_client: redis.Redis) -> subprocess.Popen[bytes]:
    """A producer process stuck publishing ``user``'s send after it claimed ``key``."""
    env = {**os.environ, "NOTIFIER_BROKER_URL": broker, "NOTIFIER_IDEMPOTENCY_PENDING_TTL_SECONDS": str(PENDING)}
    proc = subprocess.Popen([sys.executable, "-c", _SEND, user, key], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    wait_for(lambda: redis_client.get(get_keys().idempotency(key)) or proc.poll() is not None, timeout=30,
             message="the producer's claim")
    assert proc.poll() is None, proc.communicate()[0].decode()
    return proc


def test_a_producer_killed_before_publishing_blocks_the_key_only_briefly(
        worker: Worker, redis_client: redis.Redis, silent_broker: str) -> None:
    user, key = uid(), uid("key")
    proc = hanging_producer(silent_broker, user, key, redis_client)
    proc.kill()
    proc.wait(10)
    assert 0 < redis_client.ttl(get_keys().idempotency(key)) <= PENDING

    wait_for(lambda: not redis_client.exists(get_keys().idempotency(key)), timeout=PENDING + 5,
             message="the dead producer's pending claim to lapse")
    again = send_notification.delay(user, note("second try"), idempotency_key=key)
    items = wait_for(lambda: Inbox().list(user).items, message="the second try delivered")
    assert [(i["id"], i["title"]) for i in items] == [(again.id, "second try")]


def test_an_interrupted_publish_gives_the_key_back_at_once(
        worker: Worker, redis_client: redis.Redis, silent_server: socket.socket, silent_broker: str) -> None:
    """Any exception, not only an unreachable broker: here Ctrl-C while the publish hangs."""
    user, key = uid(), uid("key")
    proc = hanging_producer(silent_broker, user, key, redis_client)
    wait_for(lambda: connected(silent_server), timeout=10, message="the producer's publish to reach the broker")
    proc.send_signal(signal.SIGINT)
    output = proc.communicate(timeout=20)[0].decode()
    assert proc.returncode != 0 and "KeyboardInterrupt" in output, output
    assert not redis_client.exists(get_keys().idempotency(key))

    again = send_notification.delay(user, note("second try"), idempotency_key=key)
    items = wait_for(lambda: Inbox().list(user).items, message="the second try delivered")
    assert [i["id"] for i in items] == [again.id]


def test_a_routed_send_holds_its_key_for_the_full_ttl(worker: Worker, redis_client: redis.Redis) -> None:
    """The producer's claim is short until the router takes the send; the router's is the full TTL.
    The worker stops consuming the router queue while the send waits in it, or an idle worker could
    route it before the pending TTL is read."""
    user, key = uid(), uid("key")
    control, node = producer_app().control, [worker.node.replace("%h", socket.gethostname())]
    assert control.cancel_consumer("router", destination=node, reply=True, timeout=10)
    try:
        sent = send_notification.delay(user, note("once"), idempotency_key=key)
        assert 0 < redis_client.ttl(get_keys().idempotency(key)) <= get_settings().idempotency_pending_ttl_seconds
    finally:
        assert control.add_consumer("router", destination=node, reply=True, timeout=10)
    wait_for(lambda: Inbox().list(user).items, message="delivery")
    ttl = redis_client.ttl(get_keys().idempotency(key))
    assert get_settings().idempotency_ttl_seconds - 60 < ttl <= get_settings().idempotency_ttl_seconds
    assert send_notification.delay(user, note("again"), idempotency_key=key).id == sent.id


def test_a_pending_claim_that_lapsed_in_the_queue_still_delivers_one_send() -> None:
    """Two sends with one key both published (the first one's claim lapsed before it was routed, the
    second one's still holds): the router keeps exactly one."""
    env = {**private_env(), "NOTIFIER_IDEMPOTENCY_PENDING_TTL_SECONDS": "1"}
    user, key = uid(), uid("key")
    with use_env(env):
        client = redis.Redis.from_url(env["NOTIFIER_REDIS_URL"])
        first = send_notification.delay(user, note("first"), idempotency_key=key)
        wait_for(lambda: not client.exists(get_keys().idempotency(key)), timeout=6,
                 message="the first send's pending claim to lapse")
    with use_env(private_env()):
        second = send_notification.delay(user, note("second"), idempotency_key=key)
        assert second.id != first.id
        w = start_worker(env)
        try:
            wait_for(lambda: f"[{first.id}]: routed: * deduplicated" in w.log(), timeout=20,
                     message="the first send routed as a duplicate")
            items = wait_for(lambda: Inbox().list(user).items, message="one delivery")
            assert [i["id"] for i in items] == [second.id]
            wait_for(lambda: f"[{second.id}]: routed:" in w.log(), message="the second send routed")
            assert [i["id"] for i in Inbox().list(user).items] == [second.id]
        finally:
            w.stop()
