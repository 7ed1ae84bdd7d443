"""The drain on real Redis into both databases: every buffered event written once, the buffer emptied
only of what was written, and entries the database cannot take dropped and counted instead of
stopping the drain."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from sqlalchemy import Engine

from notifier.deliverylog import drain as drain_module
from notifier.deliverylog import upgrades
from notifier.deliverylog.drain import Drain
from notifier.deliverylog.events import Event, EventLog
from notifier.deliverylog.subscriptions import Subscriptions
from notifier.deliverylog.webhooks import Outbox
from notifier.errors import BrokerUnavailable
from notifier.pipeline.queues import EVENT_WEBHOOK
from notifier.redis.keys import Keys
from notifier.redis.store import get_redis
from tests.deliverylog.test_store import stored
from tests.support.helpers import uid


def batches(count: int, size: int) -> list[list[Event]]:
    return [[Event("sent", uid("n"), f"u{b}", "email", f"to-{i}", {"batch": b}, at=1_700_000_000 + b)
             for i in range(size)] for b in range(count)]


def key(e: Event) -> tuple[str, str, str | None]:
    return e.notification_id, e.user_id, e.target


def test_the_drain_writes_every_event_once_and_empties_the_buffer(engine: Engine,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(drain_module, "ENTRIES_PER_WRITE", 4)  # several transactions per run
    upgrades.upgrade(engine)
    r, keys = get_redis(), Keys(uid("drain"))
    log = EventLog(r, keys)
    recorded = batches(30, 7)
    for batch in recorded:
        assert log.record_many(batch)
    drain = Drain(r, keys, engine)
    assert drain.run() == 30 * 7
    assert drain.pending() == 0
    written = Counter(key(e) for e in stored(engine))
    assert written == Counter(key(e) for batch in recorded for e in batch)
    assert set(written.values()) == {1}
    assert drain.run() == 0 and len(stored(engine)) == 30 * 7, "a second run writes nothing again"
    assert log.dropped() == 0


def test_postgresql_not_upgraded_keeps_the_events_waiting_and_sqlite_is_upgraded(engine: Engine) -> None:
    r, keys = get_redis(), Keys(uid("drain"))
    log = EventLog(r, keys)
    log.record_many(batches(1, 3)[0])
    drain = Drain(r, keys, engine)
    if engine.dialect.name == "postgresql":
        assert drain.run() == 0 and drain.pending() == 1
        upgrades.upgrade(engine)
    assert drain.run() == 3 and drain.pending() == 0


def test_entries_the_database_cannot_take_are_dropped_and_counted_not_retried(engine: Engine) -> None:
    upgrades.upgrade(engine)
    r, keys = get_redis(), Keys(uid("drain"))
    log = EventLog(r, keys)
    good = batches(3, 2)
    log.record_many(good[0])
    r.xadd(keys.events(), {"e": b"not json"})
    log.record_many(good[1])
    too_long = [Event("sent", "n" * 100, "u", "email", "x"), Event("sent", "n" * 100, "u", "email", "y")]
    log.record_many(too_long)
    log.record_many(good[2])
    drain = Drain(r, keys, engine)
    expected = [e for batch in good for e in batch]
    if engine.dialect.name == "sqlite":  # SQLite keeps any length
        expected += too_long
    assert drain.run() == len(expected)
    assert sorted(map(key, stored(engine))) == sorted(map(key, expected))
    assert drain.pending() == 0
    assert log.dropped() == 1 + (len(too_long) if engine.dialect.name == "postgresql" else 0)


def test_written_events_wait_in_the_outbox_while_the_broker_is_away(engine: Engine) -> None:
    upgrades.upgrade(engine)
    r, keys = get_redis(), Keys(uid("drain"))
    subscription = Subscriptions(r, keys).add("https://hooks.example.com/events", "failed")
    EventLog(r, keys).record_many([Event("failed", uid("n"), "alice", "email", "a@example.test", {"error": "550"}),
                                   Event("sent", uid("n"), "alice", "realtime")])
    sent: list[tuple[str, list[Any]]] = []

    def broker_down(name: str, args: list[Any]) -> None:
        raise BrokerUnavailable("the broker is away (test)")

    assert Drain(r, keys, engine, enqueue=broker_down).run() == 2
    outbox = Outbox(r, keys)
    assert outbox.pending() == 1 and Drain(r, keys, engine).pending() == 0, "written, its webhook waiting"
    assert len(stored(engine)) == 2
    assert Drain(r, keys, engine, enqueue=lambda name, args: sent.append((name, args))).run() == 0
    assert outbox.pending() == 0 and len(stored(engine)) == 2, "the webhook sent, nothing written twice"
    [(task, (subscription_id, webhook_id, payload))] = sent
    assert task == EVENT_WEBHOOK and subscription_id == subscription.id and webhook_id.startswith("msg_")
    assert [e["kind"] for e in payload["data"]["events"]] == ["failed"], "only the kinds it subscribed to"
