"""One client connection's side of the hub: a bounded buffer a slow client cannot grow without end.

A connection that falls behind is cut off (it resumes later from its last id) instead of growing the
process's memory. :data:`RESYNC` in the buffer tells its handler that messages may have been missed
(the hub reconnected, or the channel moved), so it replays from the inbox.
"""

from __future__ import annotations

import asyncio

from notifier.state.inbox import LiveEvent


class _Resync:
    def __repr__(self) -> str:
        return "RESYNC"


RESYNC = _Resync()
"""Queued after a reconnect or a move: messages may have been missed, replay from the inbox."""

Item = LiveEvent | _Resync


class Subscriber:
    """One client connection's place in the hub: a bounded buffer, and one waiter to wake.

    Not an ``asyncio.Queue``: a broadcast wakes every connection at once, so waking one costs one
    future and nothing else, and a connection's handler waits for "an item, a heartbeat or a
    hang-up" on the same future (:meth:`wake`) without a timer or a task per wait.
    """

    __slots__ = ("_waiter", "items", "limit", "overflowed", "user_id")

    def __init__(self, user_id: str, limit: int) -> None:
        self.user_id = user_id
        self.limit = limit
        self.items: list[Item] = []
        """Oldest first; a list, not a deque: it is nearly always empty, and an empty deque costs 0.7 KiB."""
        self.overflowed = False
        """The buffer filled up (or the hub cut the connection off): it must end and resume later."""
        self._waiter: asyncio.Future[None] | None = None

    def offer(self, item: Item) -> None:
        """Buffer ``item``, or mark the subscriber overflowed when its buffer is full."""
        if self.overflowed:
            return
        if len(self.items) >= self.limit:
            self.overflowed = True
        else:
            self.items.append(item)
        self.wake()

    def cut_off(self) -> None:
        """End this connection (the client resumes from its last id)."""
        self.overflowed = True
        self.wake()

    def wake(self) -> None:
        """Finish the pending :meth:`wait` (an item arrived, or the handler has something to check)."""
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def wait(self) -> asyncio.Future[None]:
        """A future done at the next :meth:`wake`, or done already if an item is buffered.

        A future, not a coroutine: an open connection waits here nearly all its life, and a suspended
        coroutine frame would be 0.2 KiB more of it.
        """
        future = asyncio.get_running_loop().create_future()
        if self.items or self.overflowed:
            future.set_result(None)
        else:
            self._waiter = future
        return future
