"""Per-user, per-channel sliding-window rate limits, checked in one Lua call per user.

A send over the limit is not dropped: the router still puts it in the inbox, it just does not go out
on that channel (see ``workers/router.py``).
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import redis

from notifier import store
from notifier.config import get_settings
from notifier.keys import Keys


class RateLimiter:
    """Counts sends per (user, channel) in a sliding window; limits come from the settings."""

    def __init__(self, client: redis.Redis | None = None, keys: Keys | None = None,
                 limits: dict[str, tuple[int, int]] | None = None) -> None:
        self.r = client or store.get_redis()
        self.keys = keys or store.get_keys()
        self.limits = get_settings().limits if limits is None else limits

    def allow_many(self, checks: Sequence[tuple[str, str, Sequence[str]]]) -> list[dict[str, bool]]:
        """For each ``(user_id, send_id, channels)``, which channels may send now (one round trip).

        Channels without a configured limit are always allowed and not counted.
        """
        lua = store.script("rate_limit")
        now = int(time.time() * 1000)
        calls: list[store.ScriptCall] = []
        asked: list[list[str]] = []
        for user_id, send_id, channels in checks:
            limited = [c for c in channels if c in self.limits]
            asked.append(limited)
            if limited:
                args: list[Any] = [now, send_id]
                for channel in limited:
                    limit, window = self.limits[channel]
                    args += [limit, window * 1000]
                calls.append((lua, [self.keys.rate(user_id, c) for c in limited], args))
        answers = iter(store.run_scripts(self.r, calls))
        results = []
        for (_, _, channels), limited in zip(checks, asked):
            verdict = dict.fromkeys(channels, True)
            if limited:
                verdict.update(zip(limited, (bool(x) for x in next(answers))))
            results.append(verdict)
        return results

    def allow(self, user_id: str, send_id: str, channels: Sequence[str]) -> dict[str, bool]:
        return self.allow_many([(user_id, send_id, channels)])[0]
