"""Splitting work into batches: router tasks of ``NOTIFIER_BATCH_SIZE`` sends, replay tasks, set scans."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """``items`` in lists of ``size``, the last one shorter; lazy, so a generator is read as it goes.

    ``itertools.batched`` does this from Python 3.12 (notifier supports 3.11) and yields tuples; a
    batch here becomes a task argument or a Redis command's arguments, which take lists.
    """
    if size < 1:
        raise ValueError(f"batch size must be at least 1, not {size}")
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch
