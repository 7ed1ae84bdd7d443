"""Per-user, per-channel sliding-window rate limits, checked in Lua: a batch of users per call on one
server, one user per call on a cluster (where each user's keys share a slot).

A send over the limit is not dropped: the router still puts it in the inbox, it just does not go out
on that channel (see ``workers/router.py``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import redis
from redis.cluster import RedisCluster

from notifier.config import get_settings
from notifier.redis import scripts, store
from notifier.redis.keys import Keys

USERS_PER_CALL = 100
"""Users checked per script call on one server: ~0.5 ms of Redis time, short enough not to stall it."""


class RateLimiter:
    """Counts sends per (user, channel) in a sliding window; limits come from the settings."""

    def __init__(self, client: redis.Redis | None = None, keys: Keys | None = None,
                 limits: dict[str, tuple[int, int]] | None = None) -> None:
        self.r = client or store.get_redis()
        self.keys = keys or store.get_keys()
        self.limits = get_settings().limits if limits is None else limits

    def allow_many(self, checks: Sequence[tuple[str, str, Sequence[str]]]) -> list[dict[str, bool]]:
        """For each ``(user_id, send_id, channels)``, which channels may send now (one round trip).

        Channels without a configured limit are always allowed and not counted. On one server a script
        call checks up to ``USERS_PER_CALL`` users (one call per user costs the client more than the
        check itself); on a cluster each user's keys live in their own slot, so it is one per user.
        """
        lua = scripts.script("rate_limit")
        now = int(time.time() * 1000)
        per_call = 1 if isinstance(self.r, RedisCluster) else USERS_PER_CALL
        calls: list[scripts.ScriptCall] = []
        asked: list[list[str]] = []
        keys: list[str] = []
        args: list[Any] = [now]
        users = 0
        for user_id, send_id, channels in checks:
            limited = [c for c in channels if c in self.limits]
            asked.append(limited)
            if not limited:
                continue
            args += [send_id, len(limited)]
            for channel in limited:
                limit, window = self.limits[channel]
                args += [limit, window * 1000]
                keys.append(self.keys.rate(user_id, channel))
            users += 1
            if users == per_call:
                calls.append((lua, keys, args))
                keys, args, users = [], [now], 0
        if users:
            calls.append((lua, keys, args))
        answers = iter([bool(x) for answer in scripts.run_scripts(self.r, calls) for x in answer])
        results = []
        for (_, _, channels), limited in zip(checks, asked, strict=True):
            verdict = dict.fromkeys(channels, True)
            for channel in limited:
                verdict[channel] = next(answers)
            results.append(verdict)
        return results

    def allow(self, user_id: str, send_id: str, channels: Sequence[str]) -> dict[str, bool]:
        return self.allow_many([(user_id, send_id, channels)])[0]
