"""The dead-letter queue: deliveries that failed for good, kept in a Redis Stream for ops.

An entry records the task, its arguments, the error, the attempts and the times, so that
``notifier dlq show`` explains what went wrong and ``notifier dlq replay`` can send it again.
"""

from __future__ import annotations

import builtins
import datetime as dt
import time
from collections.abc import Iterable, Mapping
from typing import Any, cast

import orjson
import redis

from notifier.errors import ValidationError
from notifier.pipeline.queues import subjects
from notifier.redis import store
from notifier.redis.keys import Keys
from notifier.state.inbox import check_entry_id


class DeadLetters:
    def __init__(self, client: redis.Redis | None = None, keys: Keys | None = None) -> None:
        self.r = client or store.get_redis()
        self.keys = keys or store.get_keys()

    def add(self, *, task: str, args: list[Any], kwargs: dict[str, Any], queue: str, error: str,
            error_type: str, attempts: int, first_attempt_at: float | None = None) -> str:
        """Record one failure; returns its id (also its position in time)."""
        now = time.time()
        entry = {
            "task": task, "args": args, "kwargs": kwargs, "queue": queue, "error": error,
            "error_type": error_type, "attempts": attempts,
            "first_attempt_at": first_attempt_at or now, "failed_at": now,
        }
        return str(self.r.xadd(self.keys.dead_letters(), {"d": orjson.dumps(entry, default=str)}))

    def list(self, count: int = 100, after: str | None = None) -> list[dict[str, Any]]:
        """Oldest first."""
        low = f"({check_entry_id(after)}" if after else "-"
        entries = cast("list[store.StreamEntry]",
                       self.r.xrange(self.keys.dead_letters(), min=low, max="+", count=count))
        return [_decode(e) for e in entries]

    def all(self, batch: int = 500) -> Iterable[dict[str, Any]]:
        after = None
        while True:
            page = self.list(batch, after)
            yield from page
            if len(page) < batch:
                return
            after = page[-1]["id"]

    def get(self, entry_id: str) -> dict[str, Any] | None:
        entries = cast("list[store.StreamEntry]",
                       self.r.xrange(self.keys.dead_letters(), min=check_entry_id(entry_id), max=entry_id))
        return _decode(entries[0]) if entries else None

    def lookup(self, entry_ids: Iterable[str]) -> tuple[builtins.list[dict[str, Any]], builtins.list[str]]:
        """The dead letters ``entry_ids`` names (each once), and the ids that name none, malformed ones
        included, so a caller can refuse the lot before acting on any."""
        found: dict[str, dict[str, Any]] = {}
        unknown: builtins.list[str] = []
        for entry_id in dict.fromkeys(entry_ids):
            try:
                entry = self.get(entry_id)
            except ValidationError:
                entry = None
            if entry is None:
                unknown.append(entry_id)
            else:
                found[entry_id] = entry
        return list(found.values()), unknown

    def remove(self, entry_ids: Iterable[str]) -> int:
        ids = list(entry_ids)
        return int(self.r.xdel(self.keys.dead_letters(), *ids)) if ids else 0

    def size(self) -> int:
        return int(self.r.xlen(self.keys.dead_letters()))

    def purge(self) -> int:
        size = self.size()
        self.r.delete(self.keys.dead_letters())
        return size


def _decode(entry: store.StreamEntry) -> dict[str, Any]:
    entry_id, fields = entry
    return {"id": entry_id, **orjson.loads(fields["d"])}


def readable(entry: Mapping[str, Any]) -> dict[str, Any]:
    """``entry`` as an operator reads it: ISO 8601 times (UTC) instead of epoch seconds, and the users,
    channel and notification ids it was for (from its task's arguments)."""
    users, ids = subjects(str(entry.get("task")), list(entry.get("args") or []))
    shown = {**entry, "users": users, "channel": entry.get("queue"), "notification_ids": ids}
    for field in ("first_attempt_at", "failed_at"):
        if isinstance(entry.get(field), (int, float)):
            shown[field] = iso(entry[field])
    return shown


def iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat(timespec="milliseconds")
