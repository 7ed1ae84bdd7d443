"""Garbage collection for a process that holds thousands of long-lived connections.

CPython's full collection walks every tracked object. A gateway holding 10,000 connections tracks
about 750,000 of them, and one full pass stalls the event loop for most of a second; the default
policy runs one whenever the long-lived objects grew by a quarter — while clients connect, or in
the middle of a broadcast, which then reaches its last clients a second late.

So the gateway freezes (``gc.freeze``, constant time) whatever survived the last few seconds:
automatic collections then look only at recent objects, and a connection's objects are never
walked again while it stays open. Every ``NOTIFIER_GATEWAY_FULL_GC_SECONDS`` one full pass (unfreeze,
collect, freeze) frees the reference cycles closed connections left behind, at a known rhythm and
logged with its duration, instead of at random moments.

Young collections run less often, too (``NOTIFIER_GATEWAY_GC_THRESHOLDS``): a broadcast holds one
message per connection for a moment, and at CPython's default of 700 allocations per collection
those messages are walked, and promoted, several times before they are freed by reference counting.
So that short-lived cycles are not frozen with the survivors (and kept until the next full pass),
each freeze follows a collection of the two young generations, which holds only the last second's
objects.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

log = logging.getLogger(__name__)

FREEZE_SECONDS = 1.0
"""How often what survived is frozen: short enough that a burst of connections is frozen soon after."""


class Collector:
    """Runs the freeze / periodic full collection policy while the gateway runs (see the module docstring)."""

    def __init__(self, full_every: float, thresholds: tuple[int, int, int] | None = None,
                 freeze_every: float = FREEZE_SECONDS) -> None:
        self.full_every = full_every
        self.thresholds = thresholds
        """``gc.set_threshold`` while running, or None to keep CPython's."""
        self.freeze_every = freeze_every
        self.full_passes = 0
        self._task: asyncio.Task[None] | None = None
        self._default_thresholds = gc.get_threshold()

    def start(self) -> None:
        gc.collect()
        gc.freeze()
        if self.thresholds is not None:
            gc.set_threshold(*self.thresholds)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="notifier-gc")

    async def stop(self) -> None:
        """Stop, and hand everything back to the normal collector (tests start many gateways in one process)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        gc.unfreeze()
        gc.set_threshold(*self._default_thresholds)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        last_full = loop.time()
        while True:
            await asyncio.sleep(self.freeze_every)
            if loop.time() - last_full >= self.full_every:
                self.full_pass()
                last_full = loop.time()
            gc.collect(1)
            gc.freeze()

    def full_pass(self) -> int:
        """One full collection over everything, frozen or not; returns the objects it freed."""
        gc.unfreeze()
        started = time.perf_counter()
        freed = gc.collect()
        elapsed = time.perf_counter() - started
        gc.freeze()
        self.full_passes += 1
        log.info("gc: full collection freed %d objects in %.0f ms; %d objects frozen until the next one",
                 freed, elapsed * 1000, gc.get_freeze_count())
        return freed
