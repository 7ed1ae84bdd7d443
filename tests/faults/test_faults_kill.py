"""Randomized kills: a producer sends steadily while the worker group is SIGKILLed at random instants
(and once frozen with SIGSTOP, then killed); nothing is lost and nothing arrives twice.

kombu's Redis transport loses a message popped by a worker that dies before recording it as
unacknowledged; this test caught that on every run before the broker's task queues became streams
(``notifier/pipeline/streams_transport.py``). It runs on the Redis broker and, in the RabbitMQ re-run, on RabbitMQ.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from email.message import EmailMessage

import pytest
import redis

from notifier import send_notification
from notifier.pipeline.streams_transport import in_flight
from notifier.state.inbox import Inbox
from notifier.state.preferences import PreferenceStore
from tests.peers.smtp import SmtpPeer
from tests.support.helpers import Worker, own_broker_env, start_worker, uid, use_env, wait_for

RATE = 20
"""Notifications per second the producer sends."""
SECONDS = 60
KILLS = 11
"""Ten SIGKILLs at random instants, and one SIGSTOP for 5 s followed by a SIGKILL."""
USERS = 40
KILL_WINDOW = 0.5
"""Seconds between an SMTP server's acceptance and a kill within which the receipt may be unwritten,
and after a worker stopped running within which the server may still accept what it had written."""


def _env(smtp: SmtpPeer) -> dict[str, str]:
    return {**own_broker_env(), **smtp.env(), "NOTIFIER_VISIBILITY_TIMEOUT_SECONDS": "10",
            "NOTIFIER_CLAIM_SECONDS": "3",
            "NOTIFIER_RATE_LIMITS": "realtime=100000/60,email=100000/60,fcm=1/60,apns=1/60,webpush=1/60"}


CONSUMED = ("router", "realtime", "email")
"""The queues the test's workers consume."""


class Chaos(threading.Thread):
    """Kills the worker group at random instants and starts a new one each time."""

    def __init__(self, env: dict[str, str], instants: list[float], freeze_at: int) -> None:
        super().__init__(daemon=True)
        self.env, self.instants, self.freeze_at = env, instants, freeze_at
        self.worker = self._start()
        self.started = time.monotonic()
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.kills = 0
        self.stopped: list[tuple[float, float]] = []
        """When each worker group stopped running (the SIGSTOP, or the SIGKILL) and when it died."""

    def _start(self) -> Worker:
        return start_worker(self.env, ",".join(CONSUMED), concurrency=2)

    def run(self) -> None:
        try:
            for index, at in enumerate(self.instants):
                time.sleep(max(0.0, self.started + at - time.monotonic()))
                stopped = time.monotonic()
                if index == self.freeze_at:
                    os.killpg(self.worker.proc.pid, signal.SIGSTOP)
                    time.sleep(5)
                self.worker.kill()
                self.stopped.append((stopped, time.monotonic()))
                self.kills += 1
                self.worker = self._start()
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            self.done.set()


@pytest.fixture
def chaos_env(smtp: SmtpPeer) -> Iterator[dict[str, str]]:
    env = _env(smtp)
    with use_env(env):
        yield env


@pytest.mark.timeout(360)
def test_random_kills_lose_nothing_and_send_nothing_twice(chaos_env: dict[str, str], smtp: SmtpPeer) -> None:
    rng = random.Random()
    users = [uid() for _ in range(USERS)]
    for user in users:
        PreferenceStore().set(user, {"email": f"{user}@example.test"})
    slot = (SECONDS - 6) / KILLS  # one random instant in each slot, so every kill lands while sending
    instants = [2 + i * slot + rng.uniform(0, slot) for i in range(KILLS)]
    chaos = Chaos(chaos_env, instants, freeze_at=rng.randrange(KILLS))
    chaos.start()

    sent: dict[str, str] = {}
    start = time.monotonic()
    for n in range(RATE * SECONDS):
        time.sleep(max(0.0, start + n / RATE - time.monotonic()))
        user = users[n % USERS]
        result = send_notification.delay(user, {"type": "chaos", "title": f"#{n}",
                                                "channels": ["realtime", "email"]})
        sent[result.id] = user
    assert chaos.done.wait(60), "the kills did not finish"
    assert chaos.error is None, chaos.error
    try:
        def delivered() -> tuple[int, int]:
            inbox = sum(1 for nid, user in sent.items() if Inbox().get(user, nid) is not None)
            return inbox, _emails(smtp, sent)[0]

        produced = time.monotonic()
        try:
            wait_for(lambda: delivered() == (len(sent), len(sent)), timeout=150, interval=1)
        except AssertionError:
            pass  # counted below: what never arrived is lost
        caught_up = time.monotonic() - produced
        # Everything arrived; a second copy could only come from a task still queued or held: wait
        # until the broker holds none, then count.
        wait_for(lambda: _drained(chaos_env), timeout=60, interval=0.5, message="the broker's queues drained")
        in_inbox: Counter[str] = Counter()
        for user in users:
            page = Inbox().list(user, limit=200)
            in_inbox.update(item["id"] for item in page.items)
        mailed = _emails(smtp, sent)[1]
    finally:
        chaos.worker.stop()
    lost = [nid for nid in sent if in_inbox[nid] == 0 or mailed[nid] == 0]
    twice = [nid for nid in sent if in_inbox[nid] > 1]
    resent = [nid for nid in sent if mailed[nid] > 1]
    unexplained = {nid: _first_copy(smtp, nid, chaos.stopped) for nid in resent
                   if not _cut_off(smtp, nid, chaos.stopped)}
    print(f"{len(sent)} sent, {chaos.kills} kills (one after a 5 s freeze): lost {len(lost)}, twice in an inbox "
          f"{len(twice)}, mailed twice {len(resent)} (all by a kill right after the SMTP server took the first "
          f"copy: {not unexplained}); all delivered {caught_up:.1f}s after the last send")
    assert chaos.kills == KILLS
    assert (lost, twice, unexplained) == ([], [], {}), f"lost, twice, mailed twice of {len(sent)}"


def _drained(env: dict[str, str]) -> bool:
    """No task waiting in the queues the workers consume (the log queue's drains wait for a log
    worker this test has none of), and on the Redis broker none held unacknowledged."""
    from notifier.pipeline.backlog import _size
    from notifier.pipeline.producer import producer_app

    with producer_app().connection_for_read() as conn:
        if any(_size(conn, queue) for queue in CONSUMED):
            return False
    if env["NOTIFIER_BROKER_URL"].startswith("redis://"):
        return in_flight(redis.Redis.from_url(env["NOTIFIER_BROKER_URL"])) == 0
    return True


def _copies(smtp: SmtpPeer, nid: str) -> list[tuple[float, EmailMessage]]:
    return [(t, m) for t, m in zip(smtp.handler.accepted_at, smtp.messages) if m["X-Notification-Id"] == nid]


def _cut_off(smtp: SmtpPeer, nid: str, stopped: list[tuple[float, float]]) -> bool:
    """Whether the first copy of ``nid``'s email was accepted just before a worker group stopped,
    while it was frozen, or just after it died (the server reading what the worker had written).

    SMTP cannot be asked afterwards whether a message arrived, so a worker that stops between
    handing the server a message and its receipt write sends the message again (with the same
    Message-ID); any other second copy is a defect.
    """
    copies = _copies(smtp, nid)
    same_message = len({m["Message-ID"] for _, m in copies}) == 1
    first = copies[0][0]
    return same_message and any(stop - KILL_WINDOW <= first <= died + KILL_WINDOW for stop, died in stopped)


def _first_copy(smtp: SmtpPeer, nid: str, stopped: list[tuple[float, float]]) -> str:
    """Where the first copy landed relative to the nearest stop, for the failure message."""
    first = _copies(smtp, nid)[0][0]
    stop, died = min(stopped, key=lambda s: abs(s[0] - first))
    return f"accepted {first - stop:+.2f}s from a stop (died {died - stop:+.2f}s after it)"


def _emails(smtp: SmtpPeer, sent: dict[str, str]) -> tuple[int, Counter[str]]:
    """How many sent notifications were mailed at least once, and each one's count."""
    counts: Counter[str] = Counter()
    for message in list(smtp.messages):
        nid = str(message["X-Notification-Id"])
        if nid in sent:
            counts[nid] += 1
    return len(counts), counts
