"""One client connection's feed: replay what it missed from the inbox, then go live, with no gap
and no duplicate at the seam. SSE and WebSocket are thin transports over this.

The order is what makes it exact: subscribe first (the hub returns only once Redis confirmed it), so
everything published from then on is buffered; then replay the inbox after the client's last id;
then deliver buffered and new messages, dropping any whose entry id is not after the last one sent.
The same replay fills the gap after the hub reconnects to Redis (:data:`~notifier.gateway.hub.RESYNC`).

A client that sends no last id gets "live from now": the newest entry id when it connects is its
starting point, sent in the ``connected`` event so it can resume from there, with the inbox's
``epoch``. A client that resumes is told in that event whether it missed nothing (``recovered``, see
:meth:`notifier.state.inbox.Position.resume`): false when the cap trimmed entries it had not seen or
its id comes from a stream that was lost since (then its replay starts over from the first entry).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter
from starlette.concurrency import run_in_threadpool
from starlette.types import Message, Send

from notifier.errors import ClientGone, InboxReset, SlowConsumer, TokenExpired
from notifier.gateway.hub import RESYNC, Hub, Item, Subscriber
from notifier.gateway.metrics import CONNECTIONS, CONNECTS, DELIVERED, RESUMES
from notifier.gateway.state import GatewayState
from notifier.gateway.timers import Timer, timers
from notifier.state.inbox import (
    START,
    Inbox,
    NewEntry,
    Position,
    StateChange,
    UnreadCount,
    check_entry_id,
    check_epoch,
    entry_key,
)

REPLAY_PAGE = 200


@dataclass(frozen=True)
class Event:
    """What a transport sends: ``notification`` (with its entry ``id``), ``unread_count`` or ``state``."""

    kind: str
    data: dict[str, Any]
    id: str | None = None


def notification_event(item: dict[str, Any]) -> Event:
    """An inbox item (a notification with ``entry_id`` and ``read``) as an event."""
    return Event("notification", item, item["entry_id"])


def unread_event(unread: int) -> Event:
    return Event("unread_count", {"unread": unread})


@dataclass(eq=False, slots=True)
class Feed:
    """Replay-then-live delivery for one connection of one user (see the module docstring)."""

    state: GatewayState
    user_id: str
    expires_at: float
    transport: str = "sse"
    last_id: str | None = None
    """The newest entry id this connection has sent (or was told the client has)."""
    epoch: str | None = None
    """The inbox epoch the connection started in (None: the inbox had none yet)."""
    _sub: Subscriber | None = field(default=None, init=False)
    _beat: Timer | None = field(default=None, init=False)
    _beat_due: bool = field(default=False, init=False)
    _gone: bool = field(default=False, init=False)
    _writer: asyncio.Task[Any] | None = field(default=None, init=False)
    """The task whose write to the client is pending (the latest, if two are), or None."""
    _write_since: float = field(default=0.0, init=False)
    """When that write started (monotonic seconds)."""
    _stalled: asyncio.Task[Any] | None = field(default=None, init=False)
    """The writer this feed cancelled for taking too long: its cancellation becomes a TimeoutError."""
    _delivered: Counter = field(init=False)
    """This transport's delivered-events counter, looked up once rather than per event."""

    def __post_init__(self) -> None:
        self._delivered = DELIVERED.labels(self.transport)

    async def open(self, last_event_id: str | None, epoch: str | None = None) -> dict[str, Any]:
        """Subscribe, then fix the starting point; returns the ``connected`` event's data: when
        resuming, its ``last_event_id`` is the id to replay after and ``recovered`` says whether the
        client missed nothing. ``epoch`` is the one the client's last ``connected`` event named."""
        resuming = last_event_id is not None
        if last_event_id is not None:
            check_entry_id(last_event_id)
        if epoch is not None:
            check_epoch(epoch)
        self._sub = await self.hub.attach(self.user_id)
        try:
            position = await self._position()
        except BaseException:
            self.close()
            raise
        connected: dict[str, Any] = {"user_id": self.user_id}
        self.epoch = position.epoch
        if last_event_id is not None:
            recovered, self.last_id = position.resume(last_event_id, epoch)
            connected["recovered"] = recovered
        else:
            self.last_id = position.newest or START
        self._arm()
        CONNECTIONS.labels(self.transport).inc()
        CONNECTS.labels(self.transport).inc()
        if resuming:
            RESUMES.labels(self.transport).inc()
        return {**connected, "last_event_id": self.last_id, "epoch": position.epoch, "unread": position.unread,
                "expires_at": int(self.expires_at)}

    async def send(self, send: Send, message: Message) -> None:
        """``send(message)`` to the client, which may wait at most ``send_timeout_seconds``.

        A client that reads nothing makes the write wait (its socket and the server's buffer are full);
        then it raises TimeoutError and the connection ends, the client resuming later from its last
        id. The deadline is checked by the connection's heartbeat timer, not by a timer per write: a
        broadcast writes to every connection at once.
        """
        task = asyncio.current_task()
        self._writer, self._write_since = task, time.monotonic()
        try:
            await send(message)
        except asyncio.CancelledError:
            if task is not None and self._stalled is task and task.uncancel() == 0:
                raise TimeoutError("the client took nothing within NOTIFIER_SEND_TIMEOUT_SECONDS") from None
            raise
        finally:
            if self._writer is task:
                self._writer = None

    def close(self) -> None:
        if self._beat is not None:
            self._beat.cancel()
            self._beat = None
        if self._sub is not None:
            self.hub.detach(self._sub)
            self._sub = None
            if self.last_id is not None:
                CONNECTIONS.labels(self.transport).dec()

    async def replay(self, since: str) -> AsyncIterator[list[Event]]:
        """Pages of entries after ``since``, oldest first, then the unread count."""
        check_entry_id(since)
        cursor = since
        while True:
            items = await run_in_threadpool(self.inbox.since, self.user_id, cursor, REPLAY_PAGE)
            if items:
                cursor = items[-1]["entry_id"]
                self._advance(cursor)
                self._delivered.inc(len(items))
                yield [notification_event(item) for item in items]
                for item in items:  # written (a failed write ends the feed before this)
                    self.state.delivered.add(self.user_id, item["id"], item["entry_id"], self.transport, True)
            if len(items) < REPLAY_PAGE:
                break
        yield [unread_event(await run_in_threadpool(self.inbox.unread_count, self.user_id))]

    @property
    def hub(self) -> Hub:
        return self.state.hub

    @property
    def inbox(self) -> Inbox:
        return self.state.inbox

    def hang_up(self) -> None:
        """The client left: the pending (and every later) :meth:`next` raises :class:`ClientGone`."""
        self._gone = True
        if self._sub is not None:
            self._sub.wake()

    async def next(self) -> Item | None:
        """The next raw hub item, or None when a heartbeat is due.

        Raises :class:`ClientGone`, :class:`SlowConsumer` or :class:`TokenExpired` when the
        connection must end. Waiting costs one future: the heartbeat is a timer per connection
        (on the process's shared :mod:`~notifier.gateway.timers`), re-armed when it fires, not one per wait.
        """
        sub = self._require()
        while True:
            if self._gone:
                raise ClientGone("the client disconnected")
            if sub.overflowed:
                raise SlowConsumer("connection fell too far behind; resume from the last event id")
            if time.time() >= self.expires_at:
                raise TokenExpired("token expired; reconnect with a fresh token")
            if sub.items:
                return sub.items.pop(0)
            if self._beat_due:
                self._arm()
                return None
            await sub.wait()

    def _arm(self) -> None:
        """Wake :meth:`next` one heartbeat interval from now (busy or not), or at the token's expiry if sooner."""
        self._beat_due = False
        delay = min(self.state.settings.heartbeat_seconds, max(self.expires_at - time.time(), 0.0))
        self._schedule(delay)

    def _schedule(self, delay: float) -> None:
        if self._beat is not None:
            self._beat.cancel()
        self._beat = timers().call_later(delay, self._on_beat)

    def _on_beat(self) -> None:
        """A heartbeat is due; and if a write has been pending too long, end it (see :meth:`send`)."""
        self._beat = None
        self._beat_due = True
        writer = self._writer
        if writer is not None:
            left = self._write_since + self.state.settings.send_timeout_seconds - time.monotonic()
            if left > 0:
                self._schedule(left)
            elif self._stalled is None:
                self._stalled = writer
                writer.cancel()
            return
        if self._sub is not None:
            self._sub.wake()

    async def process(self, item: Item) -> AsyncIterator[list[Event]]:
        """Turn one hub item into events, dropping what this connection already sent."""
        if item is RESYNC:
            await self._check_epoch()
            async for batch in self.replay(self.last_id or START):
                yield batch
            return
        if isinstance(item, NewEntry):
            if self.last_id is not None and entry_key(item.entry_id) <= entry_key(self.last_id):
                return
            self._advance(item.entry_id)
            self._delivered.inc()
            events = [notification_event(item.item())]
            if item.unread is not None:
                events.append(unread_event(item.unread))
            yield events
            self.state.delivered.add(self.user_id, item.notification["id"], item.entry_id, self.transport)
        elif isinstance(item, UnreadCount):
            yield [unread_event(item.unread)]
        elif isinstance(item, StateChange):
            yield [Event("state", item.data())]

    async def _position(self) -> Position:
        """Where the inbox stands, its stream given an epoch first if it has none."""
        async with self.state.redis_slots:
            position = await self.state.live_inbox.position(self.user_id)
        if position.exists and position.epoch is None:
            epoch, since, trimmed = await run_in_threadpool(self.inbox.epoch, self.user_id)
            position = dataclasses.replace(position, epoch=epoch, since=since, trimmed=trimmed)
        return position

    async def recovery(self, last_id: str, epoch: str | None) -> tuple[bool, str]:
        """For a resume asked for on an open connection: whether nothing after ``last_id`` (of ``epoch``)
        was lost, and the id to replay after (see :meth:`notifier.state.inbox.Position.resume`)."""
        return (await self._position()).resume(check_entry_id(last_id), epoch)

    async def _check_epoch(self) -> None:
        """After the hub reconnected to Redis: raise :class:`InboxReset` if the inbox is no longer the
        stream this connection was replaying (the client's resume then says ``recovered: false``)."""
        position = await self._position()
        if self.last_id is not None and not position.resume(self.last_id, self.epoch)[0]:
            raise InboxReset("the inbox was lost and recreated; reconnect, resume and reload the list")
        self.epoch = self.epoch or position.epoch

    def _advance(self, entry_id: str) -> None:
        if self.last_id is None or entry_key(entry_id) > entry_key(self.last_id):
            self.last_id = entry_id

    def _require(self) -> Subscriber:
        if self._sub is None:
            raise RuntimeError("Feed.open() was not called")
        return self._sub
