"""Inbox counts under concurrency and trimming, on real Redis."""

from __future__ import annotations

import threading

from notifier.redis.store import get_keys, get_redis
from notifier.state.inbox import Inbox
from tests.support.helpers import uid


def test_counts_stay_exact_under_concurrent_appends_reads_and_trim() -> None:
    user = uid()
    box = Inbox(max_len=100)
    errors: list[BaseException] = []

    def writer(w: int) -> None:
        try:
            for i in range(150):
                box.append(user, {"id": f"w{w}n{i}", "type": "t", "title": f"{w}-{i}"})
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    def reader() -> None:
        try:
            for _ in range(50):
                page = box.list(user, limit=20)
                box.mark_read(user, [i["id"] for i in page.items[:5]])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(6)] + [threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    r, k = get_redis(), get_keys()
    entries = r.xrange(k.inbox(user))
    present = {fields["nid"] for _, fields in entries}
    assert 100 <= len(entries) <= 100 + box.slack
    unread = r.smembers(k.unread(user))
    assert unread <= present, "an unread id points at a trimmed entry"
    assert box.unread_count(user) == len(unread)
    assert set(r.hkeys(k.inbox_ids(user))) == present
    assert box.mark_read(user) == 0
    assert all(item["read"] for item in box.list(user, limit=200).items)
