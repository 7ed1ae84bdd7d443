"""Inbox states in the library, on real Redis: seen, archived, snoozed, interacted, and their counts."""

from __future__ import annotations

import threading
import time

from notifier.state.inbox import Inbox
from tests.support.helpers import uid


def seed(box: Inbox, user: str, count: int) -> list[str]:
    nids = []
    for i in range(count):
        nid = f"n{i}-{uid('s')}"
        box.append(user, {"id": nid, "type": "test", "title": f"title {i}", "body": "b",
                          "timestamp": "2026-01-01T00:00:00Z"}, publish=False)
        nids.append(nid)
    return nids


def listed(box: Inbox, user: str, **filters: bool) -> list[str]:
    """Every id the list shows with ``filters``, paging 3 at a time with the cursor (newest first)."""
    out, cursor = [], None
    while True:
        page = box.list(user, limit=3, before=cursor, **filters)
        out += [item["id"] for item in page.items]
        if page.next_cursor is None:
            return out
        cursor = page.next_cursor


def test_seen_one_by_one_and_all_with_exact_counts() -> None:
    box, user = Inbox(), uid("u")
    nids = seed(box, user, 6)
    assert box.counts(user).unseen == 6
    changed = box.mark_seen(user, [nids[0], nids[1], "nope"])
    assert (changed.marked, changed.unknown, changed.counts.unseen) == (2, ["nope"], 4)
    assert box.mark_seen(user, [nids[0]]).marked == 0
    assert listed(box, user, unseen_only=True) == nids[:1:-1]
    assert box.mark_seen(user).counts.unseen == 0
    assert listed(box, user, unseen_only=True) == []
    newer = seed(box, user, 2)
    counts = box.counts(user)
    assert (counts.unseen, counts.unread, counts.total) == (2, 8, 8)
    assert [item["seen"] for item in box.list(user, limit=3).items] == [False, False, True]
    assert listed(box, user, unseen_only=True) == newer[::-1]


def test_archived_leaves_the_default_list_is_read_and_listable() -> None:
    box, user = Inbox(), uid("u")
    nids = seed(box, user, 7)
    changed = box.archive(user, nids[1:4])
    assert (changed.marked, changed.counts.archived, changed.counts.total, changed.counts.unread) == (3, 3, 4, 4)
    assert changed.counts.unseen == 4  # an archived notification is out of the badge too
    assert listed(box, user) == [nids[6], nids[5], nids[4], nids[0]]
    assert listed(box, user, archived=True) == [nids[3], nids[2], nids[1]]
    assert listed(box, user, archived=True, unread_only=True) == []
    assert box.get(user, nids[2])["archived"] is True
    assert box.unarchive(user, [nids[2]]).counts.archived == 2
    assert nids[2] in listed(box, user)
    everything = box.archive(user)
    assert (everything.counts.total, everything.counts.archived, everything.counts.unread) == (0, 7, 0)
    assert box.unarchive(user).counts.archived == 0


def test_counts_stay_exact_when_the_cap_trims_entries_with_states() -> None:
    box, user = Inbox(max_len=10), uid("u")  # slack 10: trimmed back to 10 past 20
    nids = seed(box, user, 15)
    box.archive(user, nids[:5])
    box.mark_seen(user, nids[5:8])
    box.mark_interacted(user, nids[:3])
    seed(box, user, 6)  # 21 entries: trimmed to the newest 10, every archived and seen one gone
    counts = box.counts(user)
    assert (counts.total, counts.archived, counts.unseen, counts.unread) == (10, 0, 10, 10)
    assert listed(box, user, archived=True) == []


def test_concurrent_marking_keeps_counts_exact() -> None:
    box, user = Inbox(), uid("u")
    nids = seed(box, user, 200)

    def work(part: list[str], op: str) -> None:
        for nid in part:
            getattr(box, op)(user, [nid])

    threads = [threading.Thread(target=work, args=(nids[i::4], op))
               for i in range(4) for op in ("archive", "mark_seen", "mark_read")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    counts = box.counts(user)
    assert (counts.total, counts.archived, counts.unseen, counts.unread) == (0, 200, 0, 0)
    box.unarchive(user, nids[:50])
    counts = box.counts(user)
    assert (counts.total, counts.archived, counts.unseen, counts.unread) == (50, 150, 0, 0)


def test_snoozed_is_hidden_then_back_unread() -> None:
    box, user = Inbox(), uid("u")
    nids = seed(box, user, 3)
    box.mark_read(user, [nids[1]])
    until = time.time() + 60
    snoozed = box.snooze(user, [nids[1]], until)
    assert (snoozed.counts.snoozed, snoozed.counts.total, snoozed.counts.unread) == (1, 2, 2)
    assert listed(box, user) == [nids[2], nids[0]]
    assert box.get(user, nids[1])["snoozed_until"] == until
    assert box.wake_due(user, now=until - 1).marked == 0
    woken = box.wake_due(user, now=until)
    assert (woken.changed, woken.counts.unread, woken.counts.total) == ([nids[1]], 3, 3)
    assert [i["read"] for i in box.list(user).items] == [False, False, False]
    box.snooze(user, [nids[0]], until)
    box.archive(user, [nids[0]])
    woken = box.wake_due(user, now=until)
    assert (woken.changed, woken.counts.unread, woken.counts.archived, woken.counts.total) == ([nids[0]], 2, 1, 2)


def test_interacted_is_recorded() -> None:
    box, user = Inbox(), uid("u")
    nids = seed(box, user, 2)
    assert box.mark_interacted(user, [nids[0]]).marked == 1
    assert box.mark_interacted(user, [nids[0]]).marked == 0
    assert [i["interacted"] for i in box.list(user).items] == [False, True]


def test_unseen_stays_exact_across_deletes_and_a_trim_past_the_seen_marker() -> None:
    box, user = Inbox(max_len=10), uid("u")
    old = seed(box, user, 5)
    box.mark_seen(user)
    new = seed(box, user, 3)
    box.delete(user, [old[0], new[0]])
    counts = box.counts(user)
    assert (counts.unseen, counts.total) == (2, 6)
    assert listed(box, user, unseen_only=True) == new[:0:-1]
    box.archive(user, [new[1]])
    assert box.counts(user).unseen == 1
    seed(box, user, 20)  # the cap trims past the marker: every kept entry is newer than it
    counts = box.counts(user)
    assert counts.unseen == counts.total == len(listed(box, user, unseen_only=True)) == len(listed(box, user))
    assert box.mark_seen(user).counts.unseen == 0
