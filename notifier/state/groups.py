"""Groups of users kept in Redis, for ``send_to_group``.

A group may also have targets of its own (a Slack channel, a Teams or Discord webhook): they are
registered in the device registry under the group's recipient id (:func:`group_recipient`), and
``send_to_group`` delivers to them once besides the members (``workers/router.py``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import cast

import redis

from notifier.batches import batched
from notifier.errors import ValidationError
from notifier.models import GROUP_RECIPIENT, check_user_id
from notifier.redis import store
from notifier.redis.keys import Keys

_MAX_GROUP_ID = 128


def check_group_id(group_id: str) -> str:
    if not isinstance(group_id, str) or not 0 < len(group_id) <= _MAX_GROUP_ID or not group_id.isprintable():
        raise ValidationError(f"invalid group id {group_id!r}: 1 to {_MAX_GROUP_ID} printable characters")
    return group_id


def group_recipient(group_id: str) -> str:
    """The recipient id a group's own targets are registered and delivered under: ``group:<id>``
    (user ids cannot start with it, and it is never one of the known users a broadcast reaches)."""
    return GROUP_RECIPIENT + check_group_id(group_id)


def is_group_recipient(recipient: str) -> bool:
    return recipient.startswith(GROUP_RECIPIENT)


class Groups:
    def __init__(self, client: redis.Redis | None = None, keys: Keys | None = None) -> None:
        self.r = client or store.get_redis()
        self.keys = keys or store.get_keys()

    def add(self, group_id: str, user_ids: Sequence[str]) -> int:
        """Add members; returns how many were new."""
        users = [check_user_id(u) for u in user_ids]
        if not users:
            return 0
        pipe = self.r.pipeline(transaction=False)
        pipe.sadd(self.keys.group(check_group_id(group_id)), *users)
        pipe.sadd(self.keys.groups(), group_id)
        pipe.sadd(self.keys.users(), *users)
        return int(pipe.execute()[0])

    def remove(self, group_id: str, user_ids: Sequence[str]) -> int:
        users = list(user_ids)
        if not users:
            return 0
        removed = int(self.r.srem(self.keys.group(check_group_id(group_id)), *users))
        if not self.r.exists(self.keys.group(group_id)):
            self.r.srem(self.keys.groups(), group_id)
        return removed

    def members(self, group_id: str, batch: int = 1000) -> Iterator[list[str]]:
        """Members in batches (SSCAN), so a large group never loads at once."""
        yield from scan_batches(self.r, self.keys.group(check_group_id(group_id)), batch)

    def size(self, group_id: str) -> int:
        return int(self.r.scard(self.keys.group(check_group_id(group_id))))

    def list(self) -> list[str]:
        return sorted(cast("set[str]", self.r.smembers(self.keys.groups())))


def scan_batches(client: redis.Redis, key: str, batch: int) -> Iterator[list[str]]:
    """The members of a set in batches of ``batch`` (SSCAN pages are read as the batches need them)."""
    yield from batched(_scan(client, key, batch), batch)


def _scan(client: redis.Redis, key: str, count: int) -> Iterator[str]:
    cursor = 0
    while True:
        cursor, members = cast("tuple[int, list[str]]", client.sscan(key, cursor, count=count))
        yield from members
        if cursor == 0:
            return
