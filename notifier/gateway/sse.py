"""``GET /v1/stream``: the live feed as Server-Sent Events.

Events: ``connected`` first (its ``id`` is the starting point), then ``notification`` (``id`` = the
inbox entry id, ``data`` = the notification with ``entry_id`` and ``read``) and ``unread_count``;
comments as heartbeats so proxies keep the connection open; and a final ``error`` event when the
server ends the stream (slow client, expired token). Resuming takes the standard ``Last-Event-ID``
header (or ``?last_event_id=``, for clients that cannot set it) and replays what was missed first.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

import anyio
import orjson
import redis
from fastapi import APIRouter, Header, Query, Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from notifier.errors import ValidationError
from notifier.gateway.auth import live_claims
from notifier.gateway.errors import RESPONSES, ErrorBody
from notifier.gateway.feed import SEND_TIMEOUT, Event, Feed, SlowConsumer, TokenExpired
from notifier.gateway.state import gateway_state

log = logging.getLogger(__name__)
router = APIRouter(tags=["live"])

RETRY_MS = 2000
"""Reconnect delay suggested to plain EventSource clients."""


def format_event(kind: str, data: dict[str, Any], event_id: str | None = None) -> str:
    """One SSE event; the JSON is compact, so ``data`` is always a single line."""
    head = f"event: {kind}\n" + (f"id: {event_id}\n" if event_id else "")
    return head + "data: " + orjson.dumps(data).decode() + "\n\n"


def _format(events: list[Event]) -> str:
    return "".join(format_event(e.kind, e.data, e.id) for e in events)


class EventStreamResponse(StreamingResponse):
    """A streaming response that notices a client leaving at once (not at the next write) and drops
    a client that cannot take a write within ``SEND_TIMEOUT`` seconds."""

    media_type = "text/event-stream"

    def __init__(self, content: AsyncIterator[str], on_close: Callable[[], None],
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(content, headers=headers)
        self.on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def timed_send(message: Any) -> None:
            with anyio.fail_after(SEND_TIMEOUT):
                await send(message)

        try:
            async with anyio.create_task_group() as group:
                async def stream() -> None:
                    try:
                        await self.stream_response(timed_send)
                    except (OSError, TimeoutError) as exc:
                        log.debug("SSE client dropped: %r", exc)
                    group.cancel_scope.cancel()

                group.start_soon(stream)
                await self.listen_for_disconnect(receive)
                group.cancel_scope.cancel()
        finally:
            self.on_close()


async def _events(feed: Feed, connected: dict[str, Any], resume: str | None,
                  heartbeat: float) -> AsyncIterator[str]:
    try:
        yield f"retry: {RETRY_MS}\n" + format_event("connected", connected, connected["last_event_id"])
        if resume is not None:
            async for batch in feed.replay(resume):
                yield _format(batch)
        while True:
            item = await feed.receive(heartbeat)
            if item is None:
                yield ": heartbeat\n\n"
                continue
            async for batch in feed.process(item):
                yield _format(batch)
    except SlowConsumer as exc:
        yield format_event("error", {"error": "slow_consumer", "message": str(exc)})
    except TokenExpired as exc:
        yield format_event("error", {"error": "token_expired", "message": str(exc)})
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
        yield format_event("error", {"error": "unavailable",
                                     "message": "Redis is unreachable; reconnect and resume shortly"})
    finally:
        feed.close()


@router.get(
    "/v1/stream",
    summary="Live notifications as Server-Sent Events",
    response_class=EventStreamResponse,
    status_code=200,
    responses={
        200: {"content": {"text/event-stream": {}},
              "description": "Events `connected`, `notification` (id = inbox entry id), `unread_count`, "
                             "`error`; comment lines are heartbeats."},
        **RESPONSES,
        429: {"model": ErrorBody, "description": "Too many open connections for this user"},
    },
)
async def stream(
    request: Request,
    token: Annotated[str | None, Query(description="User token, for clients that cannot set "
                                                    "Authorization (EventSource); keep it short-lived")] = None,
    last_event_id: Annotated[str | None, Query(description="Resume after this inbox entry id")] = None,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> EventStreamResponse:
    """Subscribe to the caller's notifications; send ``Last-Event-ID`` to get the missed ones first."""
    claims = live_claims(request)
    resume = last_event_id_header or last_event_id
    if resume is not None and not resume.strip():
        resume = None
    state = gateway_state(request.app)
    feed = Feed(state.hub, state.inbox, claims.user_id, claims.expires_at)
    try:
        connected = await feed.open(resume)
    except ValidationError as exc:
        raise ValidationError(f"Last-Event-ID: {exc}") from None
    connected["heartbeat"] = state.settings.heartbeat_seconds
    headers = {"Cache-Control": "no-cache, no-transform", "X-Accel-Buffering": "no"}
    return EventStreamResponse(_events(feed, connected, resume, state.settings.heartbeat_seconds),
                               on_close=feed.close, headers=headers)
