"""The benchmark's Redis database, the settings that point every process at it, and a run's users.

Benchmarks flush their database, so they refuse DB 0 and the databases test sessions claim first
(1-13), talk to 127.0.0.1 only, and hold the same lock test sessions do (``tests/support/redisdb.py``),
so no session picks the database while a benchmark runs and no benchmark flushes a session's.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import sys
import tempfile
from urllib.parse import urlparse

import redis

from tests.support import redisdb
from tests.support.helpers import reload_settings

DEFAULT_URL = "redis://127.0.0.1:6379/14"
KEY_PREFIX = "bench"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
OWNER = "benchmark"
"""The owner in this process's lock value (``benchmark:<pid>``)."""


def bench_env(**extra: str) -> dict[str, str]:
    """Settings for this process and every subprocess; applied to ``os.environ`` and reloaded."""
    url = os.environ.get("NOTIFIER_REDIS_URL", DEFAULT_URL)
    check_url(url)
    env = {
        "NOTIFIER_REDIS_URL": url,
        "NOTIFIER_BROKER_URL": url,
        "NOTIFIER_RESULT_BACKEND": url,
        "NOTIFIER_KEY_PREFIX": KEY_PREFIX,
        "NOTIFIER_RATE_LIMITS": ("realtime=1000000/60,email=1000000/60,fcm=1000000/60,apns=1000000/60,"
                                 "webpush=1000000/60"),
        "NOTIFIER_LOG_LEVEL": "WARNING",
        "NOTIFIER_SECRET_KEY": "benchmark-secret-key-0123456789abcdef",
        "NOTIFIER_API_KEY": "benchmark-api-key",
        "NOTIFIER_VISIBILITY_TIMEOUT_SECONDS": "300",
        # the delivery log of a run, away from the repository (removed at exit)
        "NOTIFIER_DATABASE_URL": os.environ.get("NOTIFIER_DATABASE_URL") or f"sqlite:///{_log_file()}",
    }
    env.update(extra)
    os.environ.update(env)
    reload_settings()
    return env


def _log_file() -> str:
    folder = tempfile.mkdtemp(prefix="notifier-bench-log-")
    atexit.register(shutil.rmtree, folder, True)
    return os.path.join(folder, "log.sqlite3")


def check_url(url: str) -> None:
    """Refuse anything but a dedicated database on the loopback interface."""
    parsed = urlparse(url)
    db = int((parsed.path or "/0").lstrip("/") or 0)
    if parsed.hostname not in LOOPBACK:
        sys.exit(f"benchmarks talk to 127.0.0.1 only; NOTIFIER_REDIS_URL={url} is not local")
    if db <= 13:
        sys.exit(f"benchmarks flush their database: NOTIFIER_REDIS_URL={url} uses DB {db}, which is the "
                 f"default or a test session's; use a dedicated one (default {DEFAULT_URL})")


def client() -> redis.Redis:
    return redis.Redis.from_url(os.environ["NOTIFIER_REDIS_URL"], decode_responses=True)


def claim_and_flush() -> None:
    """Lock the benchmark database, as a test session would, and flush it; the lock goes at exit."""
    url = os.environ["NOTIFIER_REDIS_URL"]
    if not redisdb.claim(url, OWNER):
        sys.exit("a running test session or benchmark holds this Redis database; pick another NOTIFIER_REDIS_URL")
    redisdb.flush(url, OWNER)
    atexit.register(_release, url)


def _release(url: str) -> None:
    """Give the database back to test sessions when the benchmark ends (its data is left for a look)."""
    with contextlib.suppress(redis.RedisError):
        redisdb.release(url, OWNER, keep_data=True)


def clear_data() -> None:
    """Delete notifier's keys between runs (the broker's queues and bindings stay)."""
    r = client()
    batch: list[str] = []
    for key in r.scan_iter(match=f"{KEY_PREFIX}:*", count=5000):
        batch.append(key)
        if len(batch) >= 5000:
            r.unlink(*batch)
            batch = []
    if batch:
        r.unlink(*batch)


def users(prefix: str, count: int) -> list[str]:
    """A run's user ids; their keys go with :func:`clear_data`."""
    return [f"{prefix}-{i}" for i in range(count)]
