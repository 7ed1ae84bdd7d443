"""End to end through a real worker: send -> router -> realtime/email -> inbox, Pub/Sub, SMTP."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable

import httpx
import pytest
import redis

from notifier import broadcast, send_bulk, send_notification, send_to_group
from notifier.pipeline.producer import producer_app
from notifier.pipeline.queues import ROUTE
from notifier.redis.store import get_keys
from notifier.state.groups import Groups
from notifier.state.inbox import Inbox
from notifier.state.preferences import PreferenceStore
from tests.peers.smtp import SmtpPeer, free_port
from tests.support.helpers import Worker, own_broker_env, uid, wait_for


def order(**extra: object) -> dict[str, object]:
    return {"type": "order_update", "title": "Order Shipped", "body": "Your order #12345 has been shipped!",
            "data": {"order_id": "12345"}, **extra}


def test_send_lands_in_inbox_and_on_pubsub(worker: Worker, redis_client: redis.Redis) -> None:
    user = uid()
    pubsub = redis_client.pubsub()
    pubsub.subscribe(get_keys().live(user))
    wait_for(lambda: pubsub.get_message(timeout=0.1), message="subscribe confirmation")

    result = send_notification.delay(user, order())

    message = wait_for(lambda: pubsub.get_message(timeout=0.1), message="live message")
    event = json.loads(message["data"])
    assert event["event"] == "notification"
    assert event["notification"]["id"] == result.id
    assert event["notification"]["title"] == "Order Shipped"
    assert event["unread"] == 1
    page = Inbox().list(user)
    assert [i["id"] for i in page.items] == [result.id]
    assert page.items[0]["data"] == {"order_id": "12345"} and page.items[0]["read"] is False
    pubsub.close()


def test_idempotent_send_delivers_once(worker: Worker) -> None:
    user = uid()
    key = f"order-{uid()}-shipped"
    first = send_notification.delay(user, order(channels=["realtime"]), idempotency_key=key)
    wait_for(lambda: Inbox().unread_count(user) == 1, message="first delivery")
    second = send_notification.delay(user, order(channels=["realtime"]), idempotency_key=key)
    assert second.id == first.id
    assert Inbox().unread_count(user) == 1


def test_idempotency_race_inside_router(worker: Worker) -> None:
    """Two sends with one key that both pass the producer's pre-check: the router keeps one."""
    user = uid()
    key = uid("key")
    items = [(user, order(channels=["realtime"]), key), (user, order(channels=["realtime"], title="dup"), key)]
    ids = send_bulk(items)
    wait_for(lambda: Inbox().unread_count(user) >= 1, message="delivery")
    page = wait_for(lambda: Inbox().list(user).items, message="inbox")
    assert len(page) == 1 and page[0]["id"] in ids


def test_bulk_group_and_broadcast(worker: Worker) -> None:
    users = [uid() for _ in range(30)]
    ids = send_bulk([(u, order(channels=["realtime"], title=f"for {u}")) for u in users])
    assert len(ids) == 30
    wait_for(lambda: all(Inbox().unread_count(u) == 1 for u in users), message="bulk deliveries")
    assert Inbox().list(users[7]).items[0]["title"] == f"for {users[7]}"

    group, members = uid("group"), users[:10]
    Groups().add(group, members)
    nid = send_to_group(group, order(channels=["realtime"], title="group news"))
    wait_for(lambda: all(Inbox().unread_count(u) == 2 for u in members), message="group deliveries")
    assert Inbox().list(users[20]).items[0]["title"] != "group news"
    assert Inbox().list(members[3]).items[0]["id"] == nid

    listed = users[10:15]
    bid = broadcast(order(channels=["realtime"], title="listed"), user_ids=listed)
    wait_for(lambda: all(Inbox().list(u).items[0]["id"] == bid for u in listed), message="broadcast to list")
    assert Inbox().list(users[16]).items[0]["id"] != bid


def test_broadcast_to_everyone_reaches_known_users(worker: Worker) -> None:
    users = [uid() for _ in range(5)]
    for u in users:
        PreferenceStore().set(u, {})
    bid = broadcast(order(channels=["realtime"], title="everyone"))
    wait_for(lambda: all(any(i["id"] == bid for i in Inbox().list(u).items) for u in users),
             message="broadcast to all")


def test_email_received_by_smtp_server(worker: Worker, smtp: SmtpPeer) -> None:
    user = uid()
    address = f"{user}@example.test"
    PreferenceStore().set(user, {"email": address})
    sent = send_notification.delay(user, order(channels=["email", "realtime"], action_url="https://shop.test/o/1"))
    messages = wait_for(lambda: smtp.to(address), message="email")
    msg = messages[0]
    assert msg["Subject"] == "Order Shipped"
    assert msg["X-Notification-Id"] == sent.id
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    assert "Your order #12345 has been shipped!" in text and "https://shop.test/o/1" in text
    assert "<h2" in html and "Order Shipped" in html
    assert Inbox().unread_count(user) == 1


def test_invalid_input_raises_at_call_site(worker: Worker) -> None:
    from notifier import ValidationError

    bad = [
        ("", order()),
        ("u", {**order(), "unexpected": 1}),
        ("u", {**order(), "title": "x" * 1000}),
        ("u", {**order(), "data": {"blob": "x" * 5000}}),
        ("u", {**order(), "data": {"when": object()}}),
        ("u", {**order(), "type": "Not A Slug!"}),
        ("u", {**order(), "priority": "urgent"}),
        ("u", "not a dict"),
    ]
    before = len(worker.received(ROUTE))
    for user, payload in bad:
        with pytest.raises(ValidationError) as info:
            send_notification.delay(user, payload)
        assert str(info.value)
    marker = send_notification.delay(uid(), order(channels=["realtime"]))
    worker.wait_finished(marker.id)  # the router queue hands out in order: anything queued before is received
    assert worker.received(ROUTE)[before:] == [marker.id], "nothing but the valid marker reached the broker"


def test_a_burst_of_single_sends_is_routed_in_fewer_router_runs_than_sends(
        worker_factory: Callable[..., Worker], settings_env: Callable[[dict[str, str]], None]) -> None:
    """Sends waiting in the router queue are taken by the router task ahead of them (workers/take.py):
    the log and the batch metric show fewer runs than sends, each send is routed exactly once, and
    each gets its task-succeeded event (what Flower shows)."""
    count, port = 200, free_port()
    env = {**own_broker_env(), "NOTIFIER_WORKER_METRICS_PORT": str(port)}
    settings_env(env)
    succeeded: set[str] = set()
    connection = producer_app().connection_for_read()
    receiver = producer_app().events.Receiver(connection, handlers={
        "task-succeeded": lambda event: succeeded.add(event["uuid"])})
    threading.Thread(target=lambda: receiver.capture(wakeup=False), daemon=True).start()
    users = [uid() for _ in range(5)]
    sent = [send_notification.delay(users[i % 5], order(title=f"burst {i}", channels=["realtime"])).id
            for i in range(count)]
    worker = worker_factory(env, queues="router,realtime")  # started after the burst: all of it waits
    wait_for(lambda: sum(len(Inbox().list(u, limit=100).items) for u in users) == count, timeout=30,
             message="every send in an inbox")
    worker.wait_finished(*sent)
    ran = [i for i in worker.received(ROUTE) if i in sent]
    taken = re.findall(rf"Task {ROUTE}\[(\w+)\] routed in the batch of", worker.log())
    assert sorted(ran + taken) == sorted(sent), "each send routed once: by its own run or in another's batch"
    assert len(ran) < count // 2, f"{len(ran)} router runs for {count} waiting sends"
    metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    assert f"notifier_router_batch_messages_sum {float(count)}" in metrics
    assert f"notifier_router_batch_messages_count {float(len(ran))}" in metrics
    try:
        wait_for(lambda: set(sent) <= succeeded, message="a task-succeeded event for every send")
    finally:
        receiver.should_stop = True
        connection.release()
