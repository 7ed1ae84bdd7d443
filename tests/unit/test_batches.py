"""``batched``, the one way work is split: router batches, replay tasks, set scans."""

from __future__ import annotations

from collections.abc import Iterator

import fakeredis
import pytest

from notifier.batches import batched
from notifier.state.groups import scan_batches


def test_batches_keep_order_and_the_last_is_shorter() -> None:
    assert list(batched(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(batched([1, 2], 2)) == [[1, 2]]
    assert list(batched([], 5)) == []


def test_batches_read_a_generator_as_they_go() -> None:
    read: list[int] = []

    def source() -> Iterator[int]:
        for i in range(10):
            read.append(i)
            yield i

    batches = batched(source(), 4)
    assert next(batches) == [0, 1, 2, 3] and read == [0, 1, 2, 3]


def test_a_batch_size_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        list(batched([1], 0))


@pytest.mark.parametrize("members, batch", [(0, 10), (1, 10), (25, 10), (30, 10), (1000, 7)])
def test_scan_batches_cover_the_set_in_full_batches(members: int, batch: int) -> None:
    client = fakeredis.FakeRedis(decode_responses=True)
    if members:
        client.sadd("s", *(f"u{i}" for i in range(members)))
    batches = list(scan_batches(client, "s", batch))
    assert sorted(m for b in batches for m in b) == sorted(f"u{i}" for i in range(members))
    assert all(len(b) == batch for b in batches[:-1]) and all(0 < len(b) <= batch for b in batches)
