"""Per-user preferences: stored as one JSON document, with defaults when none are set.

The quiet-hours rule lives here too, as a pure function of the preferences and the time, so the router
and the tests share one definition of "inside the window".
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import orjson
import redis
from redis.cluster import RedisCluster

from notifier.errors import ValidationError
from notifier.models import Preferences, check_channel, check_user_id, validate
from notifier.redis import store
from notifier.redis.keys import Keys

DEFAULT = Preferences()


class PreferenceStore:
    """Read and write preferences in Redis."""

    def __init__(self, client: redis.Redis | None = None, keys: Keys | None = None) -> None:
        self.r = client or store.get_redis()
        self.keys = keys or store.get_keys()

    def get(self, user_id: str) -> Preferences:
        raw = self.r.get(self.keys.preferences(check_user_id(user_id)))
        return parse(raw)

    def get_many(self, user_ids: Sequence[str]) -> list[Preferences]:
        """One round trip for a batch of users (the router's bulk path)."""
        return [parse(raw) for raw in self._stored_many(user_ids)]

    def fields_many(self, user_ids: Sequence[str], names: Sequence[str]) -> list[dict[str, Any]]:
        """Only the fields ``names`` of each user's stored preferences (absent when unset), read
        without building a :class:`Preferences` each: what was stored was validated when written, and
        rendering, which needs three fields per delivery, spent a tenth of its time in the model."""
        out = []
        for raw in self._stored_many(user_ids):
            stored = orjson.loads(raw) if raw else {}
            out.append({k: stored[k] for k in names if stored.get(k) is not None})
        return out

    def _stored_many(self, user_ids: Sequence[str]) -> list[Any]:
        """The stored JSON of each user (None where unset) in one ``MGET`` rather than a pipeline of
        ``GET`` s: the client packs and parses one command instead of one per user. On a cluster the
        keys live in many slots, so it is split per slot."""
        if not user_ids:
            return []
        keys = [self.keys.preferences(u) for u in user_ids]
        return list(self.r.mget_nonatomic(keys) if isinstance(self.r, RedisCluster) else self.r.mget(keys))

    def set(self, user_id: str, prefs: Preferences | dict[str, Any]) -> Preferences:
        """Replace the user's preferences (validated) and remember the user."""
        prefs = validate(Preferences, prefs)
        check_user_id(user_id)
        pipe = self.r.pipeline(transaction=False)
        pipe.set(self.keys.preferences(user_id), orjson.dumps(prefs.to_dict()))
        pipe.sadd(self.keys.users(), user_id)
        pipe.execute()
        return prefs

    def update(self, user_id: str, **changes: Any) -> Preferences:
        """Merge ``changes`` into the current preferences (``channels``, ``channel_off_reasons`` and
        ``type_channels`` merge per channel), atomically: a write landing between the read and this one
        (an unsubscribe link, the CLI) makes it read again, never lose that write (``WATCH``; the user's
        one key, so a cluster takes it too)."""
        prefs = self.amend(user_id, lambda _: changes)
        assert prefs is not None
        return prefs

    def amend(self, user_id: str, change: Callable[[Preferences], dict[str, Any] | None]) -> Preferences | None:
        """:meth:`update` with the changes that ``change`` decides from the current preferences (None:
        leave them as they are, and answer None), in the same transaction: a channel that forgets an
        address the provider refused forgets it only if it is still the user's."""
        key = self.keys.preferences(check_user_id(user_id))
        result: list[Preferences | None] = []

        def merge(pipe: Any) -> None:
            stored = parse(pipe.get(key))
            changes = change(stored)
            if changes is None:
                result[:] = [None]
                return
            current = stored.to_dict()
            merged = {**current, **changes}
            for per_channel in ("channels", "channel_off_reasons"):
                if isinstance(changes.get(per_channel), dict):
                    merged[per_channel] = {**current.get(per_channel, {}), **changes[per_channel]}
            if isinstance(changes.get("type_channels"), dict):
                before = current.get("type_channels", {})
                merged["type_channels"] = {**before, **{t: {**before.get(t, {}), **c}
                                                        for t, c in changes["type_channels"].items()}}
            prefs = validate(Preferences, merged)
            pipe.multi()
            pipe.set(key, orjson.dumps(prefs.to_dict()))
            result[:] = [prefs]

        self.r.transaction(merge, key)
        if result[0] is not None:
            self.r.sadd(self.keys.users(), user_id)  # another slot on a cluster: outside the transaction
        return result[0]


def parse(raw: str | bytes | None) -> Preferences:
    """Stored JSON to preferences; missing means defaults."""
    if not raw:
        return DEFAULT
    return Preferences.model_validate(orjson.loads(raw))


def quiet_until(prefs: Preferences, now: dt.datetime) -> dt.datetime | None:
    """When ``now`` falls in the user's quiet hours, the UTC time the window ends; else None.

    Windows may cross midnight (22:00-07:00) and are read in the user's IANA time zone.
    """
    window = prefs.quiet_hours
    if window is None:
        return None
    tz = zoneinfo.ZoneInfo(prefs.timezone)
    local = now.astimezone(tz)
    start, end = dt.time.fromisoformat(window.start), dt.time.fromisoformat(window.end)
    t = local.time()
    if start < end:
        inside, end_day = start <= t < end, local.date()
    else:
        inside = t >= start or t < end
        end_day = local.date() + dt.timedelta(days=1) if t >= start else local.date()
    if not inside:
        return None
    return dt.datetime.combine(end_day, end, tzinfo=tz).astimezone(dt.UTC)


def changes_from_cli(channels: Iterable[str] = (), disable_types: Iterable[str] = (),
                     enable_types: Iterable[str] = (), current: Preferences = DEFAULT) -> dict[str, Any]:
    """Turn ``--channel email=off`` style options into a preferences change."""
    result: dict[str, Any] = {}
    toggles: dict[str, bool] = {}
    for item in channels:
        name, sep, state = item.partition("=")
        if not sep or state.lower() not in ("on", "off"):
            raise ValidationError(f"--channel {item!r} must be NAME=on or NAME=off")
        toggles[check_channel(name.strip())] = state.lower() == "on"
    if toggles:
        result["channels"] = toggles
    disable, enable = set(disable_types), set(enable_types)
    if disable or enable:
        result["disabled_types"] = sorted((set(current.disabled_types) | disable) - enable)
    return result
