"""A real worker drains the log into PostgreSQL through a proxy that is stopped mid-run and started
again: nothing recorded is lost or written twice, the events wait in Redis meanwhile, and drops are
counted only once the buffer is full; deliveries made meanwhile are not held up, and their events
arrive once the database is back; the worker's metrics say so, and its retention job deletes
what is past NOTIFIER_LOG_RETENTION_DAYS."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
import redis
from sqlalchemy import func, make_url, select

from notifier import send_bulk
from notifier.deliverylog import events as events_module
from notifier.deliverylog import upgrades
from notifier.deliverylog.events import Event, EventLog
from notifier.deliverylog.schema import events as table
from notifier.deliverylog.store import get_engine, insert_many, retention_cutoff
from notifier.redis.keys import Keys
from notifier.state.inbox import Inbox
from tests.deliverylog import logdb
from tests.peers.tcp_proxy import TcpProxy
from tests.support.helpers import Worker, private_env, start_worker, uid, use_env, wait_for
from tests.support.processes import free_port


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    p = TcpProxy(make_url(logdb.session_database()).port or 5432).start()
    yield p
    p.stop()


def metric(port: int, name: str) -> float:
    for line in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text.splitlines():
        if line.startswith((name + " ", name + "{")):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_database_outage_loses_no_event_and_counts_drops_only_when_the_buffer_is_full(
        proxy: TcpProxy, monkeypatch: pytest.MonkeyPatch) -> None:
    schema = logdb.new_schema()
    direct = get_engine(logdb.postgres_url(schema=schema))
    upgrades.upgrade(direct)
    expired = Event("sent", uid("expired"), "u", "fcm", "fcm-0", at=retention_cutoff().timestamp() - 60)
    with direct.begin() as connection:
        insert_many([expired], connection)
    metrics_port = free_port()
    env = {**private_env(), "NOTIFIER_DATABASE_URL": logdb.postgres_url(proxy.port, schema),
           "NOTIFIER_WORKER_METRICS_PORT": str(metrics_port)}
    worker: Worker = start_worker(env, "log,router,realtime", concurrency=1)
    try:
        log = EventLog(redis.Redis.from_url(env["NOTIFIER_REDIS_URL"]), Keys("nt"))

        def count() -> int:
            with direct.connect() as connection:
                return int(connection.execute(select(func.count()).select_from(table)).scalar() or 0)

        def record(n: int, size: int = 5) -> list[Event]:
            recorded = []
            for _ in range(n):
                batch = [Event("sent", uid("n"), "u", "fcm", f"fcm-{i}") for i in range(size)]
                if log.record_many(batch):
                    recorded += batch
            return recorded

        kept = record(10)
        wait_for(lambda: count() == len(kept), timeout=15, message="the first events in the database")
        with direct.connect() as connection:
            ids = set(connection.execute(select(table.c.notification_id)).scalars())
        assert expired.notification_id not in ids, "the retention job deleted the expired event"
        proxy.stop()
        kept += record(8)
        wait_for(lambda: "database unavailable" in worker.log(), timeout=15, message="the drain to meet the outage")
        with use_env(env):
            users = [uid() for _ in range(3)]
            sent = send_bulk([(u, {"type": "news", "title": "during the outage", "channels": ["realtime"]})
                              for u in users])
            wait_for(lambda: all(Inbox().get(u, n) for u, n in zip(users, sent, strict=True)), timeout=15,
                     message="deliveries going on while the log's database is away")
        assert count() == 10 * 5, "nothing reached the database meanwhile"
        assert log.pending() > 8, "the events wait in Redis, the sends' too"
        assert log.dropped() == 0, "nothing is dropped while the buffer has room"
        monkeypatch.setattr(events_module, "BUFFER_MAX_ENTRIES", log.pending() + 2)
        accepted = record(5, size=3)
        kept += accepted
        assert (len(accepted), log.dropped()) == (2 * 3, 3 * 3), "the full buffer drops and counts"
        proxy.start()
        wait_for(lambda: log.pending() == 0, timeout=20, message="the buffer to drain after the outage")
        with direct.connect() as connection:
            written = Counter(connection.execute(select(table.c.notification_id, table.c.target)).all())
        per_send = {n: (written.pop((n, None), 0), written.pop((n, "live"), 0)) for n in sent}
        assert written == Counter((e.notification_id, e.target) for e in kept), "every kept event, once"
        assert set(per_send.values()) == {(2, 1)}, "each send's accepted and queued, and its sent, once"
        wait_for(lambda: metric(metrics_port, "notifier_log_events_written_total") == len(kept) + 3 * 3, timeout=10,
                 message="the written-events metric")
        assert metric(metrics_port, "notifier_log_events_dropped") == 9
        assert metric(metrics_port, "notifier_log_batches_pending") == 0
    finally:
        worker.stop()
        direct.dispose()
