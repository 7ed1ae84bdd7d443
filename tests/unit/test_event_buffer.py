"""The delivery log's Redis buffer (notifier.deliverylog.events) on real Redis: one stream entry per
batch, read back as written, and a full buffer drops and counts instead of growing."""

from __future__ import annotations

import pytest

from notifier.deliverylog import events
from notifier.deliverylog.events import Event, EventLog, decode_entry
from notifier.redis.store import get_keys, get_redis


def test_a_batch_is_one_entry_read_back_as_written_and_a_full_buffer_counts_what_it_drops(
        monkeypatch: pytest.MonkeyPatch) -> None:
    r, keys = get_redis(), get_keys()
    r.delete(keys.events(), keys.events_dropped())
    log = EventLog()
    batch = [Event("queued", "n1", "u1", "realtime", at=1.0, type="comment"),
             Event("sent", "n1", "u1", "fcm", "fcm-abc", {"provider_id": "projects/p/messages/1"}, at=2.0)]
    assert log.record_many(batch) is True
    entries = r.xrange(keys.events())
    assert len(entries) == 1 and decode_entry(entries[0][1]) == batch
    monkeypatch.setattr(events, "BUFFER_MAX_ENTRIES", 2)
    assert log.record_many(batch[:1]) is True
    assert log.record_many(batch) is False, "the third batch finds the buffer full"
    assert (log.pending(), log.dropped()) == (2, 2)
    with pytest.raises(ValueError, match="unknown event kind"):
        Event("mailed", "n1", "u1")
