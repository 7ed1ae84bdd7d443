"""``GET /v1/ws``: the live feed over a WebSocket, with JSON frames both ways.

Server to client: ``connected``, ``notification`` (``id`` = inbox entry id), ``unread_count``,
``state`` (a state changed on any connection: ``state``, ``value``, ``ids``, ``all``, ``unread``,
``unseen``), ``pong``, ``marked`` and ``error``. Client to server: ``{"type": "ping"}``,
``{"type": "read", "ids": [...]}`` (notification ids or entry ids) or ``{"type": "read", "all": true}``,
answered by ``{"type": "marked", "marked": N, "unknown": [the ids that named nothing], "unread": N}``;
``seen``, ``archive``, ``unarchive`` and ``unsnooze`` with the same ``ids`` or ``all``, and ``snooze``
with ``ids`` and ``until``, answered by ``marked`` with its ``state`` and the counts (the HTTP
answer); and ``{"type": "resume", "since": "<entry id>", "epoch": "<epoch>"?}``, answered by
``{"type": "resumed", "recovered": bool, "last_event_id": where the replay starts}`` and the replay.
Any frame may carry a ``ref`` that the answer echoes.
Resuming at connect time takes ``?last_event_id=`` and ``?epoch=`` (the epoch of the last ``connected``
frame); the ``connected`` frame then says ``recovered`` (see :mod:`notifier.gateway.feed`).
A bad frame gets an ``error`` frame and the connection stays up; an oversized one closes it with
1009, and a flood of bad ones with 1008.

Close codes: an error's own ``close_code`` from the catalogue (``notifier.errors``): 4401
missing/invalid/expired token, 4429 too many connections for the user, 1013 come back later (Redis
unreachable, or the client fell too far behind: resume from the last id); and the protocol's: 1008
policy violation, 1009 frame too large, 1011 no Pong to the server's keepalive Ping in time.

Keepalive is uvicorn's own: a Ping control frame every ``NOTIFIER_HEARTBEAT_SECONDS``, and a client
that does not answer within as long is closed (``notifier gateway`` sets uvicorn's
``ws_ping_interval`` and ``ws_ping_timeout`` from the setting). The pump's heartbeat ticks only
check the send deadline and the token's expiry.

Like ``/v1/stream``, a bare ASGI handler reached before FastAPI (see ``notifier.gateway.sse``): each
connection is two tasks, uvicorn's (feed to client, :func:`websocket_feed`) and the listener (client frames).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Annotated, Any, Literal

import orjson
import redis
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator
from pydantic import ValidationError as PydanticValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocketDisconnect

from notifier.deliverylog import emission
from notifier.errors import (
    ClientGone,
    InboxReset,
    InvalidToken,
    NotifierError,
    SlowConsumer,
    StoreUnavailable,
    TokenExpired,
)
from notifier.gateway.api import MarkRead, MarkState, Snooze, record_seen, state_answer
from notifier.gateway.auth import live_claims
from notifier.gateway.errors import describe_validation
from notifier.gateway.feed import Event, Feed
from notifier.gateway.state import GatewayState
from notifier.state.inbox import check_entry_id, check_epoch

log = logging.getLogger(__name__)

PATH = "/v1/ws"

CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
MAX_BAD_FRAMES = 20
"""Bad frames in a row before the connection is closed for policy violation."""


class _Frame(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ref: str | int | None = Field(None, description="echoed in the answer")


class Ping(_Frame):
    type: Literal["ping"]


class Read(_Frame, MarkRead):
    """``{"type": "read", "ids": [...]}`` or ``{"type": "read", "all": true}``: the HTTP body as a frame."""

    type: Literal["read"]


class StateFrame(_Frame, MarkState):
    """``{"type": "seen" | "archive" | "unarchive" | "unsnooze", "ids": [...]}`` or ``"all": true``."""

    type: Literal["seen", "archive", "unarchive", "unsnooze"]


class SnoozeFrame(_Frame, Snooze):
    type: Literal["snooze"]


class Resume(_Frame):
    type: Literal["resume"]
    since: str
    epoch: str | None = Field(None, description="the inbox epoch `since` belongs to")

    @model_validator(mode="after")
    def _entry_id(self) -> Resume:
        check_entry_id(self.since)
        if self.epoch is not None:
            check_epoch(self.epoch)
        return self


Frame = Ping | Read | StateFrame | SnoozeFrame | Resume
ClientFrame = TypeAdapter(Annotated[Frame, Field(discriminator="type")])


class _Connection:
    """One accepted WebSocket: a pump from the feed to the client and a loop over client frames.

    Frames go through the ASGI ``receive`` and ``send`` themselves, not Starlette's ``WebSocket``: the
    receive waits for the connection's whole life, and its wrapper's suspended frame was 0.2 KiB of
    it; each send was one coroutine more.
    """

    __slots__ = ("feed", "lock", "max_bytes", "receive", "send_asgi", "state")

    def __init__(self, feed: Feed, state: GatewayState, receive: Receive, send: Send) -> None:
        self.feed = feed
        self.state = state
        self.receive = receive
        self.send_asgi = send
        self.lock = asyncio.Lock()
        """Held while sending feed events, so a replay and live delivery never interleave."""
        self.max_bytes = state.settings.max_request_bytes

    async def send(self, frame: dict[str, Any]) -> None:
        await self.feed.send(self.send_asgi, {"type": "websocket.send", "text": orjson.dumps(frame).decode()})

    async def send_events(self, events: list[Event]) -> None:
        for event in events:
            if event.kind == "notification":
                await self.send({"type": "notification", "id": event.id, "notification": event.data})
            else:
                await self.send({"type": event.kind, **event.data})

    async def error(self, code: str, message: str, ref: Any = None) -> None:
        frame: dict[str, Any] = {"type": "error", "error": code, "message": message}
        if ref is not None:
            frame["ref"] = ref
        await self.send(frame)

    async def close(self, code: int, reason: str) -> None:
        await _close(self.send_asgi, code, reason)

    async def replay(self, since: str, first: dict[str, Any] | None = None) -> None:
        """The entries after ``since``, after the ``first`` frame if given, none of it interleaved with live ones."""
        async with self.lock:
            if first is not None:
                await self.send(first)
            async for batch in self.feed.replay(since):
                await self.send_events(batch)

    async def listen(self) -> None:
        """Client frames until the client disconnects (or floods us with bad frames); then the feed
        hangs up, so the pump ends too."""
        bad = 0
        try:
            while True:
                message = await self.receive()
                if message["type"] == "websocket.disconnect":
                    return
                text = message.get("text")
                size = len(text.encode()) if text is not None else len(message.get("bytes") or b"")
                if size > self.max_bytes:
                    await self.close(CLOSE_TOO_BIG, f"frame larger than {self.max_bytes} bytes")
                    return
                ok = await self.handle(text)
                bad = 0 if ok else bad + 1
                if bad >= MAX_BAD_FRAMES:
                    await self.close(CLOSE_POLICY, "too many invalid frames")
                    return
        finally:
            self.feed.hang_up()

    async def handle(self, text: str | None) -> bool:
        """Answer one client frame; False if it was invalid (an error frame was sent)."""
        if text is None:
            await self.error("bad_frame", "send JSON text frames, not binary")
            return False
        try:
            raw = orjson.loads(text)
        except orjson.JSONDecodeError:
            await self.error("bad_frame", "frame is not valid JSON")
            return False
        ref = raw.get("ref") if isinstance(raw, dict) and isinstance(raw.get("ref"), (str, int)) else None
        try:
            frame = ClientFrame.validate_python(raw)
        except PydanticValidationError as exc:
            message, _ = describe_validation([dict(e) for e in exc.errors()])
            await self.error("invalid_frame", message.replace("invalid request", "invalid frame"), ref)
            return False
        try:
            await self.dispatch(frame)
        except NotifierError as exc:
            await self.error("invalid_frame", str(exc), ref)
            return False
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            await self.error("unavailable", "Redis is unreachable; retry shortly", ref)
        return True

    async def dispatch(self, frame: Frame) -> None:
        reply: dict[str, Any]
        if isinstance(frame, Ping):
            reply = {"type": "pong"}
        elif isinstance(frame, Read):
            marked = await run_in_threadpool(self.state.inbox.mark, self.feed.user_id,
                                             None if frame.all else frame.ids)
            await run_in_threadpool(emission.record, emission.by_user("read", self.feed.user_id, marked.read))
            reply = {"type": "marked", "marked": marked.marked, "unknown": marked.unknown, "unread": marked.unread}
        elif isinstance(frame, (StateFrame, SnoozeFrame)):
            reply = {"type": "marked", "state": frame.type, **await run_in_threadpool(self.change, frame)}
        else:
            recovered, since = await self.feed.recovery(frame.since, frame.epoch)
            resumed: dict[str, Any] = {"type": "resumed", "recovered": recovered, "last_event_id": since}
            if frame.ref is not None:
                resumed["ref"] = frame.ref
            await self.replay(since, resumed)
            return
        if frame.ref is not None:
            reply["ref"] = frame.ref
        await self.send(reply)


    def change(self, frame: StateFrame | SnoozeFrame) -> dict[str, Any]:
        """Carry out a state frame as its HTTP endpoint does (in the thread pool); the answer's fields."""
        inbox, user = self.state.inbox, self.feed.user_id
        if isinstance(frame, SnoozeFrame):
            return state_answer(inbox.snooze(user, frame.ids, frame.until))
        ids = None if frame.all else frame.ids
        if frame.type == "seen":
            return record_seen(inbox, user, ids)
        change = {"archive": inbox.archive, "unarchive": inbox.unarchive, "unsnooze": inbox.unsnooze}[frame.type]
        return state_answer(change(user, ids))


async def websocket_feed(state: GatewayState, scope: Scope, receive: Receive, send: Send) -> None:
    """The live feed over WebSocket (see the module docstring for frames and close codes).

    Feed to client here, client frames in a task (:meth:`_Connection.listen`), until either ends. The
    pump is this coroutine's own loop, not one it calls: each suspended frame is held for the
    connection's life. uvicorn sends the keepalive pings.
    """
    if (await receive())["type"] != "websocket.connect":
        return  # gone before the handshake was answered
    await send({"type": "websocket.accept"})
    opened = await _open(state, scope, receive, send)
    if opened is None:
        return
    conn, resume = opened
    listener: asyncio.Future[None] | None = None
    outcomes: list[BaseException | None] = []
    try:
        if resume is not None:
            await conn.replay(resume)
        listener = asyncio.ensure_future(conn.listen())
        while True:
            item = await conn.feed.next()
            if item is None:
                continue
            async with conn.lock:
                async for batch in conn.feed.process(item):
                    await conn.send_events(batch)
    except ClientGone:
        pass
    except (SlowConsumer, TokenExpired, InboxReset) as exc:
        await conn.close(_close_code(exc), str(exc))
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
        await conn.close(_close_code(StoreUnavailable()), "Redis is unreachable; reconnect and resume shortly")
    except Exception as exc:  # noqa: BLE001  kept and sorted below with the listener's outcome
        outcomes.append(exc)
    finally:
        if listener is not None:
            listener.cancel()
            outcomes += await asyncio.gather(listener, return_exceptions=True)
        conn.feed.close()
    for outcome in outcomes:
        gone = isinstance(outcome, (WebSocketDisconnect, OSError, TimeoutError, asyncio.CancelledError)) or (
            isinstance(outcome, RuntimeError) and "disconnect" in str(outcome).lower())
        if gone:
            log.debug("WebSocket client gone: %r", outcome)
        elif isinstance(outcome, BaseException):
            log.error("WebSocket connection failed", exc_info=outcome)


async def _open(state: GatewayState, scope: Scope, receive: Receive,
                send: Send) -> tuple[_Connection, str | None] | None:
    """Authenticate, subscribe and send ``connected``; None once the connection was closed with a reason.

    The request is read through a throwaway :class:`HTTPConnection`: the WebSocket that stays open
    for hours keeps no parsed headers or query string.
    """
    request = HTTPConnection(scope)
    try:
        claims = live_claims(request)
    except InvalidToken as exc:
        await _close(send, _close_code(exc), str(exc))
        return None
    feed = Feed(state, claims.user_id, claims.expires_at, transport="websocket")
    resume = request.query_params.get("last_event_id") or None
    epoch = request.query_params.get("epoch") or None
    # Read: not held for the connection's life (a browser sends ~1 KB of headers; the query has the token).
    scope["headers"].clear()
    scope["query_string"] = b""
    conn = _Connection(feed, state, receive, send)
    try:
        connected = await feed.open(resume, epoch)
        await conn.send({"type": "connected", **connected, "heartbeat": state.settings.heartbeat_seconds})
    except NotifierError as exc:  # a bad last_event_id has no close code of its own: a policy violation
        await conn.close(_close_code(exc), str(exc) if exc.close_code else f"last_event_id: {exc}")
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
        await conn.close(_close_code(StoreUnavailable()), "Redis is unreachable; retry shortly")
    except (WebSocketDisconnect, OSError, TimeoutError) as exc:
        log.debug("WebSocket client gone: %r", exc)
    else:
        return conn, None if resume is None else connected["last_event_id"]
    feed.close()
    return None


async def _close(send: Send, code: int, reason: str) -> None:
    """Close with ``code`` and ``reason`` (cut to what a Close frame holds); nothing if already closed or gone."""
    with contextlib.suppress(RuntimeError, OSError):
        await send({"type": "websocket.close", "code": code, "reason": reason[:120]})


def _close_code(exc: NotifierError) -> int:
    """The catalogue's close code for ``exc``; 1008 (policy violation) for an error without one."""
    return exc.close_code or CLOSE_POLICY
