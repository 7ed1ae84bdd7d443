"""Redis under load loses its clients' connections, then restarts: nothing written is lost.

A Redis server of this module's own (never the shared one) is store and broker for a worker and a
gateway. While a producer keeps sending (realtime and email) and live clients listen, the test kills
every normal client connection (``CLIENT KILL TYPE normal``), then the gateway's Pub/Sub connection,
then restarts the server (``SHUTDOWN SAVE``, as a deploy or a failover would). The worker and the
gateway must reconnect by themselves; every accepted send must reach the inbox and the mailbox once;
live clients that resume from their last event id must see each notification once, in inbox order.
"""

from __future__ import annotations

import queue
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from notifier import send_bulk
from notifier.models import Notification
from notifier.pipeline.producer import BrokerUnavailable
from notifier.state.inbox import Inbox
from notifier.state.preferences import PreferenceStore
from tests.gateway.test_gateway_resilience import RedisServer
from tests.peers.smtp import SmtpPeer
from tests.support.gateway_support import SSE, Gateway, token
from tests.support.helpers import Worker, private_env, uid, wait_for

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")

USERS = 30
ROUNDS = 40
LIVE_USERS = 3


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


class Producer(threading.Thread):
    """Sends rounds of notifications, one per user each, retrying a round the broker refused.

    A refused round is sent again with the same notification ids: the pipeline de-duplicates by id,
    so a round that did reach the broker before the error costs nothing twice.
    """

    def __init__(self, users: list[str], rounds: int, pause: float) -> None:
        super().__init__(daemon=True)
        self.users, self.rounds, self.pause = users, rounds, pause
        self.sent: list[tuple[str, str]] = []
        self.refused = 0

    def run(self) -> None:
        for r in range(self.rounds):
            batch = [(u, Notification(type="load", title=f"round {r}", channels=("realtime", "email")))
                     for u in self.users]
            while True:
                try:
                    send_bulk(batch)
                    break
                except (BrokerUnavailable, redis.RedisError):
                    self.refused += 1
                    time.sleep(0.3)
            self.sent += [(u, n.id) for u, n in batch]
            time.sleep(self.pause)


class ResumingStream(threading.Thread):
    """A live client that reconnects after any drop with ``Last-Event-ID``, like EventSource."""

    def __init__(self, gateway: Gateway, user: str) -> None:
        super().__init__(daemon=True)
        self.gateway, self.user = gateway, user
        self.token = token(user, 600)
        self.seen: list[tuple[str, str]] = []
        """(event id, notification id) of every notification event, across reconnects."""
        self.connections = 0
        self.stop = threading.Event()

    def run(self) -> None:
        last: str | None = None
        while not self.stop.is_set():
            try:
                stream = SSE(self.gateway, self.token, last_event_id=last)
            except AssertionError:
                continue
            if stream.status != 200:
                stream.close()
                time.sleep(0.3)
                continue
            self.connections += 1
            while not self.stop.is_set():
                try:
                    kind, event_id, data = stream.events.get(timeout=0.5)
                except queue.Empty:
                    continue
                if kind in ("closed", "error"):
                    break
                if kind == "notification" and event_id:
                    self.seen.append((event_id, data["id"]))
                    last = event_id
            stream.close()


def kill_clients(server: RedisServer, kind: str) -> int:
    return int(redis.Redis(port=server.port).execute_command("CLIENT", "KILL", "TYPE", kind))


def restart(server: RedisServer, downtime: float) -> None:
    """``SHUTDOWN SAVE``, ``downtime`` seconds away, start again on the same port with the same data.

    The client sends SHUTDOWN without retries: redis-py would otherwise retry the dropped connection
    with backoff and stretch the outage to several seconds.
    """
    redis.Redis(port=server.port, retry=Retry(NoBackoff(), 0)).shutdown(save=True)
    assert server.proc is not None
    server.proc.wait(10)
    time.sleep(downtime)
    server.start()


def inbox_entries(box: Inbox, user: str) -> list[tuple[str, str]]:
    return [(entry_id, fields["nid"]) for entry_id, fields in box.r.xrange(box.keys.inbox(user))]


def test_connections_dropped_and_redis_restarted_under_load_lose_nothing(
        own_redis: RedisServer, smtp: SmtpPeer, settings_env: Callable[[dict[str, str]], None],
        worker_factory: Callable[..., Worker]) -> None:
    env = {"NOTIFIER_REDIS_URL": own_redis.url, "NOTIFIER_BROKER_URL": own_redis.url, **smtp.env(),
           "NOTIFIER_VISIBILITY_TIMEOUT_SECONDS": "5", "NOTIFIER_CLAIM_SECONDS": "4",
           "NOTIFIER_RATE_LIMITS": "realtime=100000/60,email=100000/60"}
    settings_env(env)
    users = [uid("load") for _ in range(USERS)]
    for user in users:
        PreferenceStore().set(user, {"email": f"{user}@example.test"})
    worker = worker_factory(env, queues="router,realtime,email", concurrency=2)
    gateway = Gateway(env).wait_ready()
    streams = [ResumingStream(gateway, u) for u in users[:LIVE_USERS]]
    try:
        for s in streams:
            s.start()
        wait_for(lambda: all(s.connections for s in streams), message="live clients connected")
        producer = Producer(users, ROUNDS, pause=0.15)
        producer.start()
        wait_for(lambda: len(producer.sent) >= USERS * 5, timeout=20, message="load running")
        killed = kill_clients(own_redis, "normal")
        time.sleep(0.7)
        killed += kill_clients(own_redis, "pubsub")
        time.sleep(0.7)
        restart(own_redis, downtime=1.0)
        restarted_at = len(producer.sent)
        producer.join(60)
        assert not producer.is_alive(), "the producer finished"
        assert killed >= 3, "the kills hit the worker's, the gateway's and the producer's connections"
        assert restarted_at < len(producer.sent), "sends continued after the restart"

        box = Inbox()
        expected = Counter(producer.sent)
        wait_for(lambda: sum(len(inbox_entries(box, u)) for u in users) >= len(expected), timeout=60,
                 interval=0.3, message=f"{len(expected)} notifications in the inboxes")
        got = Counter((u, nid) for u in users for _, nid in inbox_entries(box, u))
        assert got == expected, "each accepted send is in the inbox exactly once"
        wait_for(lambda: sum(1 for m in smtp.messages if m["To"].split("@")[0] in users) >= len(expected),
                 timeout=60, interval=0.3, message="every email")
        time.sleep(1)
        mails = Counter((str(m["To"]).split("@")[0], str(m["X-Notification-Id"])) for m in smtp.messages
                        if str(m["To"]).split("@")[0] in users)
        assert mails == expected, "each accepted send is mailed exactly once"

        for s in streams:
            wanted = inbox_entries(box, s.user)
            wait_for(lambda: len(s.seen) >= len(wanted), timeout=20, message=f"live events for {s.user}")
            assert s.seen == wanted, "live clients resumed with no gap and no duplicate"
        assert worker.proc.poll() is None and gateway.proc.poll() is None, "both reconnected by themselves"
        assert "Unrecoverable error" not in worker.log()
    finally:
        for s in streams:
            s.stop.set()
        for s in streams:
            s.join(10)
        gateway.stop()


def test_a_store_that_stops_answering_mid_task_delays_sends_and_loses_none(
        own_redis: RedisServer, settings_env: Callable[[dict[str, str]], None],
        worker_factory: Callable[..., Worker]) -> None:
    """A store that hangs (SIGSTOP: a stalled server, a partition) makes the worker's commands time
    out; each task in flight goes back to the queue, as when the connection drops, and is delivered
    once the store answers again: none dead-lettered, none lost, none twice."""
    import os
    import signal

    from notifier import send_notification
    from notifier.state.deadletters import DeadLetters

    env = {**private_env(), "NOTIFIER_REDIS_URL": own_redis.url}  # a broker no other worker consumes
    settings_env(env)
    worker = worker_factory(env, queues="router,realtime", concurrency=2)
    users = [uid("stall") for _ in range(4)]
    warm = send_notification.delay(users[0], {"type": "t", "title": "before", "channels": ["realtime"]})
    wait_for(lambda: Inbox().get(users[0], warm.id), message="a send before the stall")
    assert own_redis.proc is not None
    os.kill(own_redis.proc.pid, signal.SIGSTOP)
    try:
        sent = [send_notification.delay(u, {"type": "t", "title": "during", "channels": ["realtime"]}) for u in users]
        wait_for(lambda: len(worker.received("notifier.route")) >= 2, message="the worker taking the sends")
        time.sleep(6.5)  # longer than a command's timeout (notifier.redis.store.COMMAND_TIMEOUT)
    finally:
        os.kill(own_redis.proc.pid, signal.SIGCONT)
    box = Inbox()
    wait_for(lambda: all(box.get(u, n.id) for u, n in zip(users, sent, strict=True)), timeout=60,
             message="every send made during the stall in its inbox")
    assert [len(inbox_entries(box, u)) for u in users] == [2, 1, 1, 1], "each send once"
    assert DeadLetters().size() == 0, "a timeout is not a bug: nothing dead-lettered"
    assert "Redis unavailable" in worker.log(), "the task went back to the queue"
