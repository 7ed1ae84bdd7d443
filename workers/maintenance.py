"""Operations tasks: replaying dead letters."""

from __future__ import annotations

import logging
from typing import Any

from notifier.deliverylog import emission
from notifier.pipeline.queues import REPLAY
from notifier.state.deadletters import DeadLetters
from workers.app import app
from workers.base import NotifierTask

log = logging.getLogger("notifier.worker")


@app.task(bind=True, base=NotifierTask, name=REPLAY, ignore_result=False)
def replay_dead_letters(self: NotifierTask, ids: list[str]) -> dict[str, Any]:
    """Re-enqueue the dead letters ``ids``; each is removed only once it was re-sent."""
    dlq = DeadLetters()
    entries = [dlq.get(i) for i in ids]
    replayed, missing = [], [i for i, e in zip(ids, entries, strict=True) if e is None]
    for entry in filter(None, entries):
        self.enqueue(entry["task"], list(entry["args"]), dict(entry.get("kwargs") or {}))
        dlq.remove([entry["id"]])
        replayed.append(entry["id"])
    emission.record(emission.replayed(filter(None, entries)))
    log.info("replayed %d dead letter(s)", len(replayed))
    return {"replayed": replayed, "missing": missing}
