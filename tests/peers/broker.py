"""A broker and key namespace of their own for a test module whose worker needs extra settings.

The shared session worker consumes every queue, push queues included, but has no push provider
configured: a push task it picked up would fail there. A push test module therefore gets its own
broker database and key prefix (so its deferred retries stay in its own schedule too), applied to the
test process and to the workers it starts, and released at the end of the module.
"""

from __future__ import annotations

import ast
import uuid
from collections.abc import Iterator

import pytest

from tests.support import redisdb
from tests.support.helpers import Worker, reload_settings, start_worker


class Isolated:
    """Claim a free Redis database as broker, use a fresh key prefix; start workers on both."""

    def __init__(self) -> None:
        self._token = uuid.uuid4().hex
        self.db = self._claim()
        self.env = {"NOTIFIER_BROKER_URL": redisdb.url(self.db),
                    "NOTIFIER_KEY_PREFIX": f"push{self._token[:8]}"}
        self._patch = pytest.MonkeyPatch()
        self._workers: list[Worker] = []

    def _claim(self) -> int:
        return redisdb.claim_free_db(self._token, range(15, 0, -1))

    def apply(self, env: dict[str, str] | None = None) -> None:
        """Use the isolated broker and prefix (and ``env``) in this test process too."""
        for key, value in {**self.env, **(env or {})}.items():
            self._patch.setenv(key, value)
        reload_settings()

    def worker(self, env: dict[str, str] | None = None, queues: str = "router,realtime,fcm,apns,webpush",
               concurrency: int = 2) -> Worker:
        w = start_worker({**self.env, **(env or {})}, queues, concurrency)
        self._workers.append(w)
        return w

    def close(self) -> None:
        for w in self._workers:
            w.stop()
        self._patch.undo()
        reload_settings()
        redisdb.release(redisdb.url(self.db), self._token)


def isolated(env: dict[str, str] | None = None) -> Iterator[Isolated]:
    """Body of a module-scoped fixture: ``yield from isolated(env)``, the stack applied with ``env``
    (a peer's settings) in this test process."""
    stack = Isolated()
    try:
        stack.apply(env)
        yield stack
    finally:
        stack.close()


def task_summary(worker: Worker, task_id: str) -> dict[str, int] | None:
    """What a delivery task returned (``{"delivered": 1, "already": 0, ...}``), read from the worker's
    log once it finished; None until then. Delivery tasks store no results, so the log is the witness."""
    marker = f"[{task_id}] succeeded in "
    for line in worker.output:
        if marker in line:
            return ast.literal_eval(line.split(marker, 1)[1].split(": ", 1)[1].strip())
    return None
