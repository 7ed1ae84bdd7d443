"""The gateway's ``delivered`` events: what this process wrote to live connections, logged in batches.

A broadcast writes to thousands of connections at once; each write only appends to this process's
pending list (no Redis call, no event object), and one flush a moment later
(:data:`FLUSH_SECONDS`, or sooner at :data:`FLUSH_EVENTS`) writes everything pending as one stream
entry of the delivery log, off the event loop. Nothing is kept with the log off.
"""

from __future__ import annotations

import asyncio
import time

from starlette.concurrency import run_in_threadpool

from notifier.channels.realtime import Realtime
from notifier.deliverylog import emission
from notifier.deliverylog.events import Event

FLUSH_SECONDS = 0.25
"""How long a live delivery waits to be logged with the others of its moment (a fan-out's)."""
FLUSH_EVENTS = 5000
"""Pending deliveries that are flushed at once rather than at the timer."""


class DeliveredLog:
    """Pending ``(at, user_id, notification id, entry id, transport, replayed)`` rows, flushed in batches.

    An event's channel is the inbox's, its target the transport (``sse``, ``websocket``)."""

    def __init__(self) -> None:
        self.enabled = emission.enabled()
        self._rows: list[tuple[float, str, str, str, str, bool]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._flushing: set[asyncio.Task[None]] = set()

    def add(self, user_id: str, notification_id: str, entry_id: str, transport: str, replayed: bool = False) -> None:
        """Note one notification written to one connection (in the event loop)."""
        if not self.enabled:
            return
        self._rows.append((time.time(), user_id, notification_id, entry_id, transport, replayed))
        if len(self._rows) >= FLUSH_EVENTS:
            self._start_flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(FLUSH_SECONDS, self._start_flush)

    def _start_flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        rows, self._rows = self._rows, []
        if rows:
            task = asyncio.ensure_future(self._write(rows))
            self._flushing.add(task)
            task.add_done_callback(self._flushing.discard)

    async def _write(self, rows: list[tuple[float, str, str, str, str, bool]]) -> None:
        channel = Realtime.name
        events = [Event("delivered", nid, user, channel, transport, {"entry_id": entry, "replayed": True}
                        if replayed else {"entry_id": entry}, at) for at, user, nid, entry, transport, replayed
                  in rows]
        await run_in_threadpool(emission.record, events)

    async def close(self) -> None:
        """Flush what is pending and wait for the writes (the gateway's shutdown)."""
        self._start_flush()
        if self._flushing:
            await asyncio.gather(*self._flushing, return_exceptions=True)
