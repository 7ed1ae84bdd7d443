"""One event-loop timer for every open connection's timers: the heartbeats and WebSocket keepalive pings.

Every open connection has a heartbeat due (``Feed``) and, on WebSocket, a keepalive ping (uvicorn's).
``loop.call_later`` costs 0.54 KiB a timer under uvloop (a handle, a libuv timer, a copied context and
the callback), held for the connection's life; 10,000 connections held 10 MiB of them. A
:class:`Timers` keeps them in one heap, each a slotted :class:`Timer` (0.15 KiB with its callback),
and arms one loop timer for the earliest. Cancelling only marks a timer; it leaves the heap when due.
"""

from __future__ import annotations

import asyncio
import heapq
import weakref
from collections.abc import Callable


class Timer:
    """A callback due at ``when`` (the loop's clock), unless cancelled: what ``loop.call_later`` returns, lighter."""

    __slots__ = ("callback", "when")

    def __init__(self, when: float, callback: Callable[[], object]) -> None:
        self.when = when
        self.callback: Callable[[], object] | None = callback

    def cancel(self) -> None:
        self.callback = None

    def cancelled(self) -> bool:
        return self.callback is None

    def __lt__(self, other: Timer) -> bool:
        return self.when < other.when


class Timers:
    """Many timers on one loop timer (see the module docstring)."""

    __slots__ = ("_armed", "_due", "_heap", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._heap: list[Timer] = []
        self._armed: asyncio.TimerHandle | None = None
        self._due = float("inf")
        """When the loop timer fires (infinity when none is armed)."""

    def call_later(self, delay: float, callback: Callable[[], object]) -> Timer:
        timer = Timer(self._loop.time() + delay, callback)
        heapq.heappush(self._heap, timer)
        if timer.when < self._due:
            self._arm(timer.when)
        return timer

    def __len__(self) -> int:
        """Timers in the heap, cancelled ones included until they are due."""
        return len(self._heap)

    def _arm(self, when: float) -> None:
        if self._armed is not None:
            self._armed.cancel()
        self._due = when
        self._armed = self._loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._armed, self._due = None, float("inf")
        heap, now, due = self._heap, self._loop.time(), []
        while heap and heap[0].when <= now:
            due.append(heapq.heappop(heap))
        for timer in due:
            callback = timer.callback
            if callback is None:
                continue
            try:
                callback()
            except Exception as exc:  # noqa: BLE001  reported as the loop reports a failing call_later
                self._loop.call_exception_handler({"message": "timer callback failed", "exception": exc})
        while heap and heap[0].callback is None:
            heapq.heappop(heap)
        if heap and heap[0].when < self._due:
            self._arm(heap[0].when)


_per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Timers] = weakref.WeakKeyDictionary()


def timers() -> Timers:
    """The running loop's :class:`Timers` (tests run several loops in one process)."""
    loop = asyncio.get_running_loop()
    found = _per_loop.get(loop)
    if found is None:
        found = _per_loop[loop] = Timers(loop)
    return found
