"""A broker backlog: 100,000 notifications queued while no worker runs drain with bounded memory.

The sends go through the real producer API (``send_bulk``, router batches of ``NOTIFIER_BATCH_SIZE``)
into a broker and store of this test's own. Then one worker starts and drains them while the resident
memory of its main process and pool children is sampled; a worker that held the backlog (or its
results) in memory would grow with it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import psutil
import redis

from notifier import send_bulk
from notifier.pipeline.streams_transport import in_flight, waiting
from notifier.state.inbox import Inbox
from tests.support.helpers import Worker, private_env, wait_for

USERS = 1000
TOTAL = 100_000
BATCH = 500
RSS_LIMIT_MB = 150
"""Per process. A worker process idles near 60-70 MB here and peaks near 80 MB while draining;
holding the backlog would add hundreds of MB (a notification is ~1 KB as Python objects)."""
GROWTH_LIMIT_MB = 60
"""Total over the worker's three processes, from idle to the peak while draining (~30 MB measured)."""


class RssSampler:
    """Samples the resident memory of a process tree in a thread."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.root = psutil.Process(pid)
        self.interval = interval
        self.peak_process = 0
        self.peak_total = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def snapshot(self) -> list[int]:
        procs = [self.root, *self.root.children(recursive=True)]
        sizes = []
        for proc in procs:
            try:
                sizes.append(proc.memory_info().rss)
            except psutil.NoSuchProcess:
                pass
        return sizes

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            sizes = self.snapshot()
            self.peak_process = max(self.peak_process, *sizes)
            self.peak_total = max(self.peak_total, sum(sizes))
            self.samples += 1

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def delivered(users: list[str]) -> tuple[int, int]:
    """(inbox entries, distinct notification ids) over every user, in one round trip."""
    box = Inbox()
    pipe = box.r.pipeline(transaction=False)
    for user in users:
        pipe.xlen(box.keys.inbox(user))
        pipe.hlen(box.keys.inbox_ids(user))
    counts = pipe.execute()
    return sum(counts[0::2]), sum(counts[1::2])


def test_100k_backlog_drains_with_bounded_worker_memory(settings_env: Callable[[dict[str, str]], None],
                                                        worker_factory: Callable[..., Worker]) -> None:
    env = {**private_env(), "NOTIFIER_BATCH_SIZE": str(BATCH), "NOTIFIER_INBOX_MAX_LEN": "1000",
           "NOTIFIER_RATE_LIMITS": f"realtime={TOTAL}/60"}
    settings_env(env)
    users = [f"backlog-{i}" for i in range(USERS)]
    ids = send_bulk((users[i % USERS], {"type": "backlog", "title": f"#{i}", "channels": ["realtime"]})
                    for i in range(TOTAL))
    assert len(set(ids)) == TOTAL
    broker = redis.Redis.from_url(env["NOTIFIER_BROKER_URL"])
    assert waiting(broker, "router") == TOTAL // BATCH, "the backlog waits in the broker"

    worker = worker_factory(env, queues="router,realtime", concurrency=2)
    idle = RssSampler(worker.proc.pid).snapshot()
    started = time.monotonic()
    with RssSampler(worker.proc.pid) as rss:
        wait_for(lambda: delivered(users)[0] >= TOTAL, timeout=100, interval=0.5,
                 message=f"{TOTAL} notifications in the inboxes")
    drained = time.monotonic() - started
    assert delivered(users) == (TOTAL, TOTAL), "each notification exactly once"
    # the last router task acks just after its inbox writes (the realtime delivery runs inside it)
    wait_for(lambda: waiting(broker, "router") == 0 and in_flight(broker) == 0, timeout=10,
             message="every router task acked")
    mb = 1024 * 1024
    assert rss.samples >= 5, "memory was sampled while draining"
    assert rss.peak_process < RSS_LIMIT_MB * mb, f"a worker process reached {rss.peak_process / mb:.0f} MB"
    growth = (rss.peak_total - sum(idle)) / mb
    assert growth < GROWTH_LIMIT_MB, f"worker memory grew {growth:.0f} MB while draining ({drained:.0f}s)"
