"""Delivery log writes: events written to PostgreSQL per second through the drain, against a raw psycopg
``COPY`` of the same rows in the same run (issue 18).

``--events`` events (default 200,000), in task batches of ``--batch`` (500, ``NOTIFIER_BATCH_SIZE``'s
default), are appended to the Redis buffer as the workers append them (``EventLog.record_many``, not
timed), then one ``Drain.run`` writes them all: read from the stream, decoded, written with
``store.insert_many`` (COPY) in one transaction per ``drain.ENTRIES_PER_WRITE`` entries, removed from
the stream after each commit. The baseline copies the same rows, already in memory, into a table of
the same shape with one psycopg ``COPY`` and one commit: the most the database takes from one
connection. No workers: this process, Redis and the PostgreSQL backend, whose CPU is split out.

    python -m benchmarks.log_writes [--events 200000] [--batch 500] [--runs 3]
        NOTIFIER_BENCH_POSTGRES=postgresql+psycopg://postgres@127.0.0.1:5432/postgres  # the server (default)

A database ``notifier_bench_<pid>`` is made on that server for the run and dropped at the end.
"""

from __future__ import annotations

import atexit
import os
import time
import uuid
from typing import TYPE_CHECKING

from sqlalchemy import Engine, create_engine, make_url, text

from benchmarks.harness.database import bench_env, claim_and_flush, clear_data
from benchmarks.harness.meters import CpuMeter, wait_quiet
from benchmarks.harness.report import Figure, arguments, report

SERVER = os.environ.get("NOTIFIER_BENCH_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
RAW_TABLE = "raw_copy_events"

if TYPE_CHECKING:
    from notifier.deliverylog.events import Event


def make_database() -> str:
    """A database of this run's own on the server; dropped when the benchmark exits."""
    name = f"notifier_bench_{os.getpid()}"
    admin = create_engine(SERVER, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    atexit.register(drop)
    return make_url(SERVER).set(database=name).render_as_string(hide_password=False)


def batches(n: int, size: int) -> list[list[Event]]:
    """Events as a broadcast's deliveries log them: one ``sent`` per recipient, with a provider id."""
    from notifier.deliverylog.events import Event

    nid = uuid.uuid4().hex
    events = [Event("sent", nid, f"user-{i}", "fcm", f"fcm-{i:08d}", {"provider_id": f"projects/p/messages/{i}"},
                    at=1_767_225_600 + i / 1000, type="comment") for i in range(n)]
    return [events[i:i + size] for i in range(0, n, size)]


def backend_pid(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def count(engine: Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


def drain_once(engine: Engine, groups: list[list[Event]]) -> tuple[float, CpuMeter]:
    """Seconds for one drain to write every buffered event; checks that all arrived and the stream is empty."""
    from notifier.deliverylog.drain import Drain
    from notifier.deliverylog.events import EventLog

    log = EventLog()
    for group in groups:
        if not log.record_many(group):
            raise RuntimeError("the buffer refused a batch")
    expected = sum(map(len, groups))
    drain = Drain(engine=engine)
    wait_quiet()
    meter = CpuMeter(extra={"postgres backend": backend_pid(engine)}).start()
    start = time.perf_counter()
    written = drain.run(budget_seconds=float("inf"))
    seconds = time.perf_counter() - start
    meter.stop()
    if written != expected or count(engine, "delivery_events") != expected or drain.pending():
        raise RuntimeError(f"expected {expected} events written and none waiting; wrote {written}, "
                           f"{drain.pending()} entries wait")
    return seconds, meter


def raw_copy(url: str, groups: list[list[Event]]) -> tuple[float, CpuMeter]:
    """Seconds for one psycopg COPY of the same rows (in memory already) and one commit."""
    import orjson
    import psycopg

    from notifier.deliverylog.store import COLUMNS, utc

    rows = [(utc(e.at), e.kind, e.notification_id, e.user_id, e.type, e.channel, e.target,
             orjson.dumps(e.detail).decode()) for group in groups for e in group]
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn) as conn:
        pid = int(conn.execute("SELECT pg_backend_pid()").fetchone()[0])
        conn.commit()
        wait_quiet()
        meter = CpuMeter(extra={"postgres backend": pid}).start()
        start = time.perf_counter()
        with conn.cursor() as cursor, cursor.copy(f"COPY {RAW_TABLE} ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        conn.commit()
        seconds = time.perf_counter() - start
        meter.stop()
    return seconds, meter


def main() -> None:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=500, help="events per task batch (stream entry)")
    args = parser.parse_args()
    url = make_database()
    bench_env(NOTIFIER_DATABASE_URL=url)
    claim_and_flush()
    from notifier.deliverylog import drain, upgrades
    from notifier.deliverylog.store import get_engine

    engine = get_engine(url)
    upgrades.upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text(f"CREATE TABLE {RAW_TABLE} (LIKE delivery_events INCLUDING ALL)"))
    n = args.events
    figure = Figure("drain to PostgreSQL (Redis stream -> COPY -> commit -> XDEL)", "events/s",
                    baseline_name="raw psycopg COPY of the same rows", baseline_unit="events/s",
                    target="issue 18: against a raw COPY (no number)")
    for run in range(args.runs):
        clear_data()
        with engine.begin() as conn:
            conn.execute(text(f"TRUNCATE delivery_events, {RAW_TABLE}"))
        groups = batches(n, args.batch)
        drain_s, drain_meter = drain_once(engine, groups)
        raw_s, raw_meter = raw_copy(url, groups)
        if count(engine, RAW_TABLE) != n:
            raise RuntimeError("the raw COPY lost rows")
        figure.add(n / drain_s, n / raw_s)
        print(f"run {run + 1}: drained {n:,} events in {drain_s:.2f} s ({n / drain_s:,.0f}/s); "
              f"raw COPY {raw_s:.2f} s ({n / raw_s:,.0f}/s)")
        print("    drain", drain_meter.line())
        print("    raw  ", raw_meter.line())
    report("log_writes", [figure], {"settings": {"events": n, "batch": args.batch,
                                                 "entries_per_write": drain.ENTRIES_PER_WRITE}})


if __name__ == "__main__":
    main()
