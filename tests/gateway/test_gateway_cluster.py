"""The gateway on real engines: a 3-master Redis Cluster on 127.0.0.1 (sharded Pub/Sub, at most one
hub connection per shard, users on every shard) and a master named by a Sentinel.

The store is the cluster (or the Sentinel's master); the broker stays a plain Redis, in a database of
this module's own, so no other test's worker — which writes to the plain store — takes these tasks.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator

import httpx
import pytest
import redis
from redis.cluster import RedisCluster

from notifier import send_notification
from notifier.redis.aio import HUB_CLIENT_NAME
from notifier.redis.keys import Keys
from notifier.redis.store import connect
from notifier.state.inbox import Inbox
from tests.support.cluster_support import LocalCluster, LocalSentinel, redis_cluster  # noqa: F401
from tests.support.gateway_support import SSE, Gateway, token
from tests.support.helpers import Worker, base_env, private_env, start_worker, uid, wait_for

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")

KEYS = Keys(base_env()["NOTIFIER_KEY_PREFIX"])


@pytest.fixture(scope="module")
def broker() -> str:
    return private_env()["NOTIFIER_BROKER_URL"]


@pytest.fixture(scope="module")
def cluster_env(redis_cluster: LocalCluster, broker: str) -> dict[str, str]:
    return {"NOTIFIER_REDIS_URL": redis_cluster.url, "NOTIFIER_BROKER_URL": broker}


@pytest.fixture(scope="module")
def cluster_worker(cluster_env: dict[str, str]) -> Iterator[Worker]:
    w = start_worker(cluster_env, queues="router,realtime")
    yield w
    w.stop()


@pytest.fixture(scope="module")
def gateway(cluster_env: dict[str, str], cluster_worker: Worker) -> Iterator[Gateway]:
    gw = Gateway(cluster_env).wait_ready()
    yield gw
    gw.stop()


@pytest.fixture
def on_cluster(cluster_env: dict[str, str],
               settings_env: Callable[[dict[str, str]], None]) -> Iterator[RedisCluster]:
    """Point this test process (producer, ``Inbox``) at the cluster; yields a client of its own."""
    settings_env(cluster_env)
    client = connect(cluster_env["NOTIFIER_REDIS_URL"])
    assert isinstance(client, RedisCluster)
    yield client
    client.close()


def users_per_shard(client: RedisCluster, shards: int = 3) -> list[str]:
    """One new user on each of ``shards`` different primaries (by their live channel's slot)."""
    found: dict[str, str] = {}
    while len(found) < shards:
        user = uid()
        found.setdefault(client.get_node_from_key(KEYS.live(user)).name, user)
    return list(found.values())


def hub_connections(cluster: LocalCluster) -> dict[int, int]:
    """Port -> the number of this gateway's hub connections on that node."""
    return {p: len(hub_clients(cluster.node(p))) for p in cluster.ports}


def send(user: str, title: str) -> str:
    return send_notification.delay(user, {"type": "test", "title": title, "channels": ["realtime"]}).id


def test_sse_and_websocket_users_on_every_shard(gateway: Gateway, on_cluster: RedisCluster,
                                                redis_cluster: LocalCluster) -> None:
    sse_user, ws_user, both_user = users_per_shard(on_cluster)
    streams = [SSE(gateway, token(sse_user)), SSE(gateway, token(both_user))]
    sockets = [gateway.ws(token(ws_user)), gateway.ws(token(both_user))]
    try:
        for stream in streams:
            assert stream.next("connected")[0] == "connected"
        for ws in sockets:
            assert ws.next("connected")["type"] == "connected"
        assert hub_connections(redis_cluster) == dict.fromkeys(redis_cluster.ports, 1), "one per shard in use"
        assert httpx.get(gateway.url + "/healthz").json()["pubsub_connections"] == 3

        ids = {user: send(user, f"to {user}") for user in (sse_user, ws_user, both_user)}
        assert streams[0].notifications(1)[0][1]["id"] == ids[sse_user]
        assert streams[1].notifications(1)[0][1]["id"] == ids[both_user]
        assert sockets[0].next("notification")["notification"]["id"] == ids[ws_user]
        assert sockets[1].next("notification")["notification"]["id"] == ids[both_user]
        streams[0].quiet(seconds=0.3)

        with gateway.client(token(both_user)) as http:
            listed = http.get("/v1/notifications").json()["items"]
            assert [i["id"] for i in listed] == [ids[both_user]] and listed[0]["read"] is False
            assert http.get("/v1/notifications/unread-count").json() == {"unread": 1}
            assert http.post("/v1/notifications/read", json={"ids": [ids[both_user]]}).json() == {
                "marked": 1, "unknown": [], "unread": 0}
        assert streams[1].next("unread_count")[2] == {"unread": 1}
        assert streams[1].next("unread_count")[2] == {"unread": 0}, "read state is published on the shard too"
    finally:
        for stream in streams:
            stream.close()
        for ws in sockets:
            ws.close()
    wait_for(lambda: hub_connections(redis_cluster) == dict.fromkeys(redis_cluster.ports, 0), timeout=10,
             message="the hub to close the shards' connections once nobody listens")


def test_resume_after_a_disconnect_on_a_cluster(gateway: Gateway, on_cluster: RedisCluster) -> None:
    user = users_per_shard(on_cluster, 1)[0]
    stream = SSE(gateway, token(user))
    try:
        stream.next("connected")
        first = send(user, "first")
        seen_id, data = stream.notifications(1)[0]
        assert data["id"] == first
    finally:
        stream.close()

    missed = [send(user, "missed 1"), send(user, "missed 2")]
    wait_for(lambda: Inbox().unread_count(user) == 3, message="both sends in the inbox")
    with gateway.ws(token(user), last_event_id=seen_id) as ws:
        assert ws.next("connected")["last_event_id"] == seen_id
        assert {ws.next("notification")["notification"]["id"] for _ in missed} == set(missed)
        live = send(user, "live")
        assert ws.next("notification")["notification"]["id"] == live


def test_resharding_moves_subscriptions_with_the_slots(gateway: Gateway, on_cluster: RedisCluster,
                                                       redis_cluster: LocalCluster) -> None:
    """A connected user's slot moves to another shard: Redis drops the subscription, the hub subscribes
    on the new owner and the user replays; a user whose slot moved while away gets MOVED, then the same."""
    user, later = users_per_shard(on_cluster, 2)
    stream = SSE(gateway, token(user))
    try:
        stream.next("connected")
        before = send(user, "before the move")
        assert stream.notifications(1)[0][1]["id"] == before

        source = on_cluster.get_node_from_key(KEYS.live(user)).port
        target = next(p for p in redis_cluster.ports if p != source)
        redis_cluster.move_slot(on_cluster.keyslot(KEYS.live(user)), source, target)
        during = send(user, "right after the move")
        assert stream.notifications(1)[0][1]["id"] == during
        wait_for(lambda: hub_connections(redis_cluster) == {p: int(p == target) for p in redis_cluster.ports},
                 message="the hub's one connection to follow the slot to its new shard")
        after = send(user, "after the move")
        assert stream.notifications(1)[0][1]["id"] == after
        stream.quiet(seconds=0.3)
        assert "was unsubscribed by the server" in gateway.log()

        moved_from = on_cluster.get_node_from_key(KEYS.live(later)).port
        redis_cluster.move_slot(on_cluster.keyslot(KEYS.live(later)), moved_from,
                                next(p for p in redis_cluster.ports if p != moved_from))
        with gateway.ws(token(later)) as ws:
            ws.next("connected")
            nid = send(later, "to a user whose slot moved while away")
            assert ws.next("notification")["notification"]["id"] == nid
        assert "got MOVED" in gateway.log()
    finally:
        stream.close()


def test_gateway_through_sentinel_follows_a_failover(broker: str,
                                                     settings_env: Callable[[dict[str, str]], None]) -> None:
    """The hub connects to the master the Sentinel names, and asks again when that connection drops."""
    sentinel = LocalSentinel(replica=True).start()
    env = {"NOTIFIER_REDIS_URL": sentinel.url, "NOTIFIER_BROKER_URL": broker}
    gw = Gateway(env).wait_ready()
    settings_env(env)
    user = uid()
    stream = SSE(gw, token(user))
    try:
        stream.next("connected")
        assert len(hub_clients(sentinel.master())) == 1, "the hub's one connection is on the named master"
        appended = Inbox().append(user, {"id": "before", "type": "test", "title": "via sentinel"})
        event_id, data = stream.notifications(1)[0]
        assert data["id"] == "before" and event_id == appended.entry_id
        with gw.client(token(user)) as http:
            assert http.get("/v1/notifications/unread-count").json() == {"unread": 1}

        sentinel.kill_master()
        wait_for(lambda: len(hub_clients(sentinel.master())) == 1, timeout=15,
                 message="the hub to reconnect to the promoted master")
        wait_for(lambda: append_quietly({"id": "after", "type": "test", "title": "after the failover"}, user),
                 timeout=15, message="a write on the new master")
        assert [d["id"] for _, d in stream.notifications(1)] == ["after"]
        stream.quiet(seconds=0.3)
        assert httpx.get(gw.url + "/healthz").json()["status"] == "ok"
    finally:
        stream.close()
        gw.stop()
        sentinel.stop()


def test_password_protected_cluster(broker: str, settings_env: Callable[[dict[str, str]], None]) -> None:
    """Nodes that require a password (with characters a URL must escape): the store's client and the
    gateway's hub, on every shard, log in with the one the URL carries. (The store's client is the one
    workers use; this module's worker serves the other cluster, so the test appends directly.)"""
    cluster = LocalCluster(password="p@ss:w/rd%").start()
    env = {"NOTIFIER_REDIS_URL": cluster.url, "NOTIFIER_BROKER_URL": broker}
    gw = Gateway(env).wait_ready()
    try:
        settings_env(env)
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=cluster.ports[0]).ping()
        client = connect(cluster.url)
        assert isinstance(client, RedisCluster)
        users = users_per_shard(client)
        streams = [SSE(gw, token(user)) for user in users]
        for stream in streams:
            stream.next("connected")
        appended = [Inbox().append(user, {"id": "n1", "type": "test", "title": f"to {user}"}) for user in users]
        assert [stream.notifications(1)[0][0] for stream in streams] == [a.entry_id for a in appended]
        assert hub_connections(cluster) == dict.fromkeys(cluster.ports, 1)
        for stream in streams:
            stream.close()
    finally:
        gw.stop()
        cluster.stop()


def test_password_protected_sentinel_and_master(broker: str,
                                                settings_env: Callable[[dict[str, str]], None]) -> None:
    """A master with a password, named by a Sentinel with a password of its own (``sentinel_password``)."""
    sentinel = LocalSentinel(password="m@ster:pw", sentinel_password="s3nt/pw").start()
    env = {"NOTIFIER_REDIS_URL": sentinel.url, "NOTIFIER_BROKER_URL": broker}
    gw = Gateway(env).wait_ready()
    try:
        settings_env(env)
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=sentinel.sentinel_port).ping()
        user = uid()
        stream = SSE(gw, token(user))
        stream.next("connected")
        appended = Inbox().append(user, {"id": "n1", "type": "test", "title": "behind two passwords"})
        event_id, data = stream.notifications(1)[0]
        assert data["id"] == "n1" and event_id == appended.entry_id
        assert len(hub_clients(sentinel.master())) == 1
        stream.close()
    finally:
        gw.stop()
        sentinel.stop()


def hub_clients(node: redis.Redis) -> list[dict[str, str]]:
    return [c for c in node.client_list() if c["name"] == HUB_CLIENT_NAME]


def append_quietly(notification: dict[str, str], user: str) -> bool:
    """Append, or False while the store's client still talks to the demoted master."""
    try:
        return Inbox().append(user, notification).added
    except redis.RedisError:
        return False
