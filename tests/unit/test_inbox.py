"""Inbox counts under concurrency and trimming, on real Redis."""

from __future__ import annotations

import threading
import time

import orjson
import pytest

from notifier.redis.store import get_keys, get_redis
from notifier.state.inbox import (
    Inbox,
    NewEntry,
    StateChange,
    UnreadCount,
    entry_key,
    new_entry_event,
    parse_event,
    state_event,
    unread_event,
)
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


def test_live_events_built_and_parsed_in_one_place_round_trip() -> None:
    notification = {"id": "n1", "type": "t", "title": 'a "quoted" 100% ünïcode\n title', "data": {"k": [1, None]}}
    built = new_entry_event("1700000000000-3", 7, orjson.dumps(notification).decode())
    assert parse_event(built.encode()) == NewEntry("1700000000000-3", notification, 7)
    assert parse_event(unread_event(0)) == UnreadCount(0)
    assert parse_event(b'{"event": "notification", "entry_id": "1-0", "notification": {"id": "x"}}') == \
        NewEntry("1-0", {"id": "x"}, None), "an event without a count still delivers the entry"
    for unknown in (b"[]", b'{"event": "later"}', b'{"event": "unread_count"}', b'{"event": "notification"}'):
        assert parse_event(unknown) is None
    with pytest.raises(ValueError):
        parse_event(b"not json")
    assert NewEntry("1-0", {"id": "x"}, 1).item() == {"id": "x", "entry_id": "1-0", "read": False, "seen": False,
                                                      "archived": False, "snoozed_until": None, "interacted": False}
    for change in (StateChange("seen", True, ["a", "b"], False, 3, 1), StateChange("snoozed", 1764770000.25, ["a"],
                                                                                  False, 0, 0),
                   StateChange("archived", False, [], True, 2, 2)):
        assert parse_event(state_event(change)) == change
    assert parse_event(b'{"event": "state", "state": "later", "ids": [], "unread": 0, "unseen": 0}') is None


def test_scripts_publish_the_events_python_builds() -> None:
    """The Lua scripts fill the same templates: byte for byte what Python builds, and parse_event reads it."""
    user, box = uid(), Inbox()
    pubsub = get_redis().pubsub()
    pubsub.subscribe(box.live_channel(user))
    assert pubsub.get_message(timeout=2)["type"] == "subscribe"

    def published() -> bytes | str:
        message = pubsub.get_message(timeout=2)
        assert message is not None and message["type"] == "message"
        return message["data"]

    try:
        notification = {"id": "n1", "type": "t", "title": 'say "hi" at 100%'}
        appended = box.append(user, notification)
        data = published()
        assert data == new_entry_event(appended.entry_id, 1, orjson.dumps(notification).decode())
        assert parse_event(data) == NewEntry(appended.entry_id, notification, 1)
        box.append(user, {"id": "n2", "type": "t", "title": "second"})
        published()
        box.mark_read(user, ["n1"])
        assert parse_event(data := published()) == UnreadCount(1) and data == unread_event(1)
        box.delete(user, ["n2"])
        assert parse_event(published()) == UnreadCount(0)
        box.append(user, {"id": "n3", "type": "t", "title": "third"})
        published()
        box.mark_read(user)
        assert parse_event(published()) == UnreadCount(0)
        box.snooze(user, ["n3"], until := time.time() + 60)
        assert published() == state_event(StateChange("snoozed", until, ["n3"], False, 0, 1))
        box.unsnooze(user)
        assert published() == state_event(StateChange("snoozed", False, ["n3"], True, 1, 2))
        box.mark_seen(user)
        assert published() == state_event(StateChange("seen", True, ["n1", "n3"], True, 1, 0))
    finally:
        pubsub.close()


def test_entry_ids_order_by_number_not_as_strings() -> None:
    assert entry_key("10-0") > entry_key("9-99") > entry_key("9-10") > entry_key("9-9") > entry_key("9")
    assert entry_key("9") == (9, 0)
