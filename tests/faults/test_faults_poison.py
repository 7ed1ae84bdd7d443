"""Poison messages in every queue: each goes to the dead-letter queue with its reason, and the worker
keeps processing the good messages around it.

``tests/pipeline/test_failures.py`` covers a few malformed tasks on the router, realtime and email queues; this
module covers every queue and every task, and raw messages that are not even valid Celery task
messages (an undecodable body, a disallowed serializer, no task header, a body of the wrong shape),
published on a broker of their own so that a crash could not hide behind another worker.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from kombu import Queue

from notifier import send_bulk
from notifier.pipeline.producer import producer_app
from notifier.pipeline.queues import (
    DRAIN_LOG,
    EVENT_WEBHOOK,
    EVENT_WEBHOOKS_QUEUE,
    LOG_QUEUE,
    QUEUES,
    REPLAY,
    ROUTE,
    ROUTE_AUDIENCE,
    ROUTE_USERS,
    deliver_task,
    queue_of,
)
from notifier.state.deadletters import DeadLetters
from notifier.state.inbox import Inbox
from notifier.state.preferences import PreferenceStore
from tests.peers.smtp import SmtpPeer
from tests.support.helpers import Worker, own_broker_env, uid, wait_for

PUSH = ("fcm", "apns", "webpush")
QUEUE_TASK = {"router": ROUTE, LOG_QUEUE: DRAIN_LOG, EVENT_WEBHOOKS_QUEUE: EVENT_WEBHOOK}
"""A task of each queue that is not a channel's (the channels' are ``notifier.deliver.<queue>``)."""


@pytest.fixture
def own_worker(settings_env: Callable[[dict[str, str]], None], worker_factory: Callable[..., Worker],
               smtp: SmtpPeer) -> Worker:
    """The only worker on a broker and store of this test's own."""
    env = {**own_broker_env(), **smtp.env()}
    settings_env(env)
    return worker_factory(env, concurrency=1)


def entries_with(marker: str, count: int) -> list[dict[str, Any]]:
    return wait_for(lambda: (found := [e for e in DeadLetters().list(1000) if marker in json.dumps(e)])
                    and len(found) >= count and found, timeout=20, message=f"{count} dead letters for {marker}")


def good_traffic(smtp: SmtpPeer) -> Callable[[], bool]:
    """Send a notification on realtime and email; returns a check that both arrived."""
    user = uid("good")
    PreferenceStore().set(user, {"email": f"{user}@example.test"})
    [nid] = send_bulk([(user, {"type": "alert", "title": "still working", "channels": ["realtime", "email"]})])
    return lambda: bool(Inbox().get(user, nid)) and len(smtp.to(f"{user}@example.test")) == 1


def test_malformed_tasks_in_every_queue_are_dead_lettered_with_their_reason(own_worker: Worker,
                                                                             smtp: SmtpPeer) -> None:
    app = producer_app()
    m = uid("poison")
    note = {"type": "alert", "title": m}
    cases: list[tuple[str, list[Any], str]] = [
        (ROUTE_USERS, [note, m], "user_ids must be a list"),
        (ROUTE_USERS, [{"title": m}, ["u1"]], "invalid notification"),
        (ROUTE_USERS, [note], "malformed task message"),
        (ROUTE_AUDIENCE, [note, {"team": m}], 'audience must be {"group": ID} or {"all": true}'),
        (ROUTE_AUDIENCE, [note, [m]], "audience must be"),
        (REPLAY, [m], "invalid cursor"),
        (REPLAY, [[m], "extra"], "malformed task message"),
        (ROUTE, [[[m, note, None, "extra"]]], "a routed item is [user_id, notification, idempotency_key]"),
    ]
    for channel in ("realtime", "email", *PUSH):
        cases += [(deliver_task(channel), [m], "malformed task message"),
                  (deliver_task(channel), [{m: note}, [[m]]], "malformed target row"),
                  (deliver_task(channel), [{"n1": {"title": m}}, [[m, "n1", "*"]]], "notification n1: invalid")]
    checks = [good_traffic(smtp)]
    for task, args, _ in cases:
        app.send_task(task, args=args, queue=queue_of(task))
    checks.append(good_traffic(smtp))
    for queue in QUEUES:
        app.send_task(f"notifier.no_such_task_{queue}", args=[m], queue=queue)

    expected = cases + [(f"notifier.no_such_task_{q}", [], "unknown task") for q in QUEUES]
    entries = entries_with(m, len(expected))
    assert len(entries) == len(expected), "one dead letter per poison message"
    for task, _, reason in expected:
        assert any(e["task"] == task and reason in e["error"] for e in entries), (task, reason, entries)
    by_task = {e["task"]: e for e in entries}
    assert {q: by_task[f"notifier.no_such_task_{q}"]["queue"] for q in QUEUES} == {q: q for q in QUEUES}
    assert all(e["error_type"] for e in entries) and all(e["attempts"] == 1 for e in entries)
    for check in checks:
        wait_for(check, timeout=20, message="good notifications around the poison delivered")
    assert own_worker.proc.poll() is None


RAW: list[tuple[str, bytes, str, dict[str, Any], str]] = [
    ("not JSON", b"{not json", "application/json", {"task": "notifier.route"}, "cannot be decoded"),
    ("pickle", b"\x80\x04K\x01.", "application/x-python-serialize", {"task": "notifier.route"}, "pickle"),
    ("no task header", b'{"hello": "there"}', "application/json", {}, "not a task message"),
    ("body not [args, kwargs, embed]", b'{"x": 1}', "application/json", {"task": "notifier.route"}, "malformed"),
    ("body a number", b"5", "application/json", {"task": "notifier.route"}, "malformed"),
    ("no id header", b'[[], {}, {}]', "application/json", {"task": "notifier.route", "no_id": True}, "malformed"),
    ("eta not a time", b'[[], {}, {}]', "application/json", {"task": "notifier.route", "eta": "tomorrow"}, "tomorrow"),
]


def test_raw_garbage_in_every_queue_is_dead_lettered_and_the_worker_survives(own_worker: Worker,
                                                                             smtp: SmtpPeer) -> None:
    app = producer_app()
    m = uid("raw")
    checks = []
    with app.connection_for_write() as conn:
        producer = conn.Producer()
        for queue in QUEUES:
            checks.append(good_traffic(smtp))
            for i, (_, body, content_type, headers, _) in enumerate(RAW):
                task_id = f"{m}-{queue}-{i}"
                headers = dict(headers)
                if headers.pop("no_id", False) is False and headers:
                    headers["id"] = task_id
                headers["marker"] = task_id
                if headers.get("task"):
                    headers["task"] = QUEUE_TASK.get(queue, f"notifier.deliver.{queue}")
                producer.publish(body, exchange="", routing_key=queue, declare=[Queue(queue, routing_key=queue)],
                                 content_type=content_type, content_encoding="utf-8", headers=headers)
    checks.append(good_traffic(smtp))
    entries = entries_with(m, len(RAW) * len(QUEUES))
    for queue in QUEUES:
        for i, (what, _, _, _, reason) in enumerate(RAW):
            found = [e for e in entries if f"{m}-{queue}-{i}" in json.dumps(e)]
            assert len(found) == 1, (queue, what, found)
            assert reason in found[0]["error"] and found[0]["queue"] == queue, (queue, what, found[0])
    for check in checks:
        wait_for(check, timeout=20, message="good notifications around the garbage delivered")
    assert own_worker.proc.poll() is None, own_worker.log()[-3000:]
    assert "Unrecoverable error" not in own_worker.log()
