"""The end-to-end path on a real 3-master Redis Cluster started on 127.0.0.1 (store only; the broker
stays a plain Redis): per-user keys stay in one slot, live events go out with SPUBLISH."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import redis
from redis.cluster import RedisCluster

from notifier import broadcast, send_bulk, send_notification
from notifier.redis.store import get_keys, get_redis
from notifier.state.inbox import Counts, Inbox
from tests.support.cluster_support import LocalSentinel, cluster_url, redis_cluster, redis_sentinel  # noqa: F401
from tests.support.helpers import Worker, own_broker_env, uid, wait_for


def test_pipeline_on_redis_cluster(cluster_url: str, worker_factory: Callable[..., Worker],
                                   settings_env: Callable[[dict[str, str]], None]) -> None:
    # A broker of its own: on the session's broker the session's worker (whose store is not the
    # cluster) could take the router task, and the notification would land in the wrong store.
    env = {"NOTIFIER_REDIS_URL": cluster_url, "NOTIFIER_BROKER_URL": own_broker_env()["NOTIFIER_BROKER_URL"]}
    worker_factory(env, queues="router,realtime")
    settings_env(env)
    client = get_redis()
    assert isinstance(client, RedisCluster)

    user = uid()
    sharded = client.pubsub()
    sharded.ssubscribe(get_keys().live(user))
    sent = send_notification.delay(user, {"type": "t", "title": "on a cluster", "channels": ["realtime"]},
                                   idempotency_key=uid("key"))
    message = wait_for(lambda: (lambda m: m if m and m["type"] == "smessage" else None)(
        sharded.get_sharded_message(timeout=0.2)), message="sharded live message")
    event = json.loads(message["data"])
    assert event["notification"]["id"] == sent.id and event["unread"] == 1
    assert Inbox().get(user, sent.id)["title"] == "on a cluster"

    users = [uid() for _ in range(60)]
    send_bulk([(u, {"type": "t", "title": f"bulk {u}", "channels": ["realtime"]}) for u in users])
    bid = broadcast({"type": "t", "title": "broadcast", "channels": ["realtime"]}, user_ids=users)
    wait_for(lambda: all(Inbox().unread_count(u) == 2 for u in users), timeout=20, message="bulk + broadcast")
    by_title = {i["title"]: i for i in Inbox().list(users[5]).items}  # two sends: either may land first
    assert set(by_title) == {"broadcast", f"bulk {users[5]}"}
    assert Inbox().mark_read(users[5], [bid]) == 1
    assert Inbox().delete(users[5], [by_title[f"bulk {users[5]}"]["id"]]) == (1, 0)
    box = Inbox()  # every state key of a user in that user's slot, or these scripts fail with CROSSSLOT
    assert box.mark_seen(users[6], [bid]).counts.unseen == 1
    assert box.archive(users[6], [bid]).counts.archived == 1
    assert [i["id"] for i in box.list(users[6], archived=True).items] == [bid]
    assert box.snooze(users[6], ["nope"], time.time() + 60).unknown == ["nope"]
    assert box.mark_seen(users[6]).counts == Counts(total=1, unread=1, unseen=0, archived=1, snoozed=0)

    nodes = {client.get_node_from_key(get_keys().inbox(u)).name for u in users}
    assert len(nodes) == 3, "users should spread over every shard"
    for u in users[:5]:
        k = get_keys()
        slots = {client.keyslot(key) for key in (k.inbox(u), k.unread(u), k.inbox_ids(u), k.live(u),
                                                  k.preferences(u), k.rate(u, "email"), k.devices(u))}
        assert len(slots) == 1
    sharded.close()


def test_store_through_sentinel(redis_sentinel: LocalSentinel,
                                settings_env: Callable[[dict[str, str]], None]) -> None:
    """A ``redis+sentinel://`` store URL finds the master Sentinel names and works like a plain one."""
    settings_env({"NOTIFIER_REDIS_URL": redis_sentinel.url})

    def ready() -> bool:
        try:
            return bool(get_redis().ping())
        except Exception:
            return False

    wait_for(ready, timeout=20, message="sentinel to report the master")
    user = uid()
    appended = Inbox().append(user, {"id": "n1", "type": "t", "title": "via sentinel"})
    assert appended.added and Inbox().unread_count(user) == 1
    direct = redis.Redis(port=redis_sentinel.master_port, decode_responses=True)
    assert direct.xlen(get_keys().inbox(user)) == 1
