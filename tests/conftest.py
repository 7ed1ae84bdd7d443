"""Shared fixtures: the test process's settings, a real worker per session, an SMTP peer."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest
import redis

from tests.peers.fcm import FcmPeer
from tests.peers.smtp import SmtpPeer
from tests.support.helpers import Worker, base_env, release_db, reload_settings, remove_log_database, start_worker

_env = base_env()
os.environ.update(_env)


reload_settings()


def pytest_sessionfinish(session: pytest.Session) -> None:
    release_db()
    remove_log_database()


@pytest.fixture(scope="session")
def smtp() -> Iterator[SmtpPeer]:
    peer = SmtpPeer().start()
    yield peer
    peer.stop()


@pytest.fixture(scope="module")
def fcm() -> Iterator[FcmPeer]:
    """The FCM peer (``tests/peers/fcm.py``), one per module that sends pushes."""
    peer = FcmPeer().start()
    yield peer
    peer.stop()


@pytest.fixture(scope="session")
def worker(smtp: SmtpPeer) -> Iterator[Worker]:
    """One worker for every queue, shared by the core pipeline tests."""
    w = start_worker(smtp.env())
    yield w
    w.stop()


@pytest.fixture
def worker_factory() -> Iterator[Callable[..., Worker]]:
    started: list[Worker] = []

    def make(env: dict[str, str] | None = None, queues: str | None = None, concurrency: int = 2) -> Worker:
        w = start_worker(env, queues, concurrency)
        started.append(w)
        return w

    yield make
    for w in started:
        w.stop()


@pytest.fixture
def settings_env(monkeypatch: pytest.MonkeyPatch) -> Callable[[dict[str, str]], None]:
    """Change the test process's settings for one test (restored afterwards)."""

    def apply(env: dict[str, str]) -> None:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        reload_settings()

    yield apply
    monkeypatch.undo()
    reload_settings()


@pytest.fixture(scope="session")
def redis_client() -> redis.Redis:
    return redis.Redis.from_url(_env["NOTIFIER_REDIS_URL"], decode_responses=True)
