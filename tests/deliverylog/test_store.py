"""The log's store on PostgreSQL (COPY) and SQLite (executemany): a batch reads back as it was written,
and retention deletes exactly the events past the cutoff, in batches."""

from __future__ import annotations

import dataclasses
import datetime as dt
import time

from sqlalchemy import Engine, func, select

from notifier.deliverylog import queries, store, upgrades
from notifier.deliverylog.events import Event
from notifier.deliverylog.schema import events as table
from tests.support.helpers import uid


def stored(engine: Engine) -> list[Event]:
    """Every event in the log, in the order written, as ``notifier log`` reads them."""
    page = queries.search(queries.Filters(), limit=queries.MAX_PAGE, engine=engine)
    assert page.next_cursor is None, "more events than one page: read them in pages"
    return [logged.event for logged in reversed(page.events)]


def test_a_batch_reads_back_as_it_was_written(engine: Engine) -> None:
    upgrades.upgrade(engine)
    now = time.time()
    nid = uid("n")
    batch = [Event("accepted", nid, "u1", detail={"idempotency": "new"}, at=now, type="comment"),
             Event("sent", nid, "u1", "fcm", "fcm-dev1", {"provider_id": "projects/p/messages/1", "n": [1, 2]},
                   at=now + 0.000123, type="comment"),
             Event("skipped", nid, "ü-ser \t\\ \"quoted\"\n", "email", None,
                   {"reason": "quiet_hours", "note": "tab\tnew\nline \\ back ☃"}, at=now + 1),
             Event("read", nid, "u1", at=now + 2)]
    with engine.begin() as connection:
        assert store.insert_many(batch, connection) == len(batch)
        assert store.insert_many([], connection) == 0
    expected = [dataclasses.replace(e, at=store.utc(e.at).timestamp()) for e in batch]
    assert stored(engine) == expected


def test_retention_deletes_only_the_events_before_the_cutoff_in_batches(engine: Engine) -> None:
    upgrades.upgrade(engine)
    now = dt.datetime.now(dt.UTC)
    cutoff = store.retention_cutoff(now)
    assert now - cutoff == dt.timedelta(days=30), "NOTIFIER_LOG_RETENTION_DAYS' default"
    old = [Event("sent", uid("old"), "u", "email", at=cutoff.timestamp() - 86400 * d - 1) for d in range(7)]
    recent = [Event("sent", uid("new"), "u", "email", at=cutoff.timestamp() + s) for s in (1, 3600, 86400 * 29)]
    with engine.begin() as connection:
        store.insert_many(old[:4] + recent[:1] + old[4:] + recent[1:], connection)
    assert store.delete_older_than(cutoff, batch=2, engine=engine) == len(old)
    assert sorted(e.notification_id for e in stored(engine)) == sorted(e.notification_id for e in recent)
    assert store.delete_older_than(cutoff, batch=2, engine=engine) == 0
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(table)).scalar() == len(recent)
