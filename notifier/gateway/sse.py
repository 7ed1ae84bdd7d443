"""``GET /v1/stream``: the live feed as Server-Sent Events.

Events: ``connected`` first (its ``id`` is the starting point), then ``notification`` (``id`` = the
inbox entry id, ``data`` = the notification with ``entry_id`` and ``read``) and ``unread_count``;
comments as heartbeats so proxies keep the connection open; and a final ``error`` event when the
server ends the stream (slow client, expired token). Resuming takes the standard ``Last-Event-ID``
header (or ``?last_event_id=``, for clients that cannot set it) and replays what was missed first;
``?epoch=`` names the inbox epoch the client's last ``connected`` event gave, and the resumed
``connected`` event says ``recovered: false`` when entries were lost to the client (see
:mod:`notifier.gateway.feed`).

This is a bare ASGI handler, reached before FastAPI (``notifier.gateway.app``): a stream is open for
hours, and under the framework each one would hold the middleware and routing stack's frames, about
twice what the stream itself needs. Errors before the stream starts get the API's JSON error shape
(:func:`notifier.gateway.errors.response_for`); the route is described in the OpenAPI schema by
:data:`OPENAPI`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
import redis
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from notifier.errors import (
    ClientGone,
    InboxReset,
    SlowConsumer,
    StoreUnavailable,
    TokenExpired,
    ValidationError,
)
from notifier.gateway.auth import live_claims
from notifier.gateway.errors import error_response, response_for
from notifier.gateway.feed import Event, Feed
from notifier.gateway.state import GatewayState

log = logging.getLogger(__name__)

PATH = "/v1/stream"
RETRY_MS = 2000
"""Reconnect delay suggested to plain EventSource clients."""
HEARTBEAT = b": heartbeat\n\n"
HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache, no-transform"),
           (b"x-accel-buffering", b"no")]


def format_event(kind: str, data: dict[str, Any], event_id: str | None = None) -> bytes:
    """One SSE event; the JSON is compact, so ``data`` is always a single line."""
    head = f"event: {kind}\n" + (f"id: {event_id}\n" if event_id else "")
    return head.encode() + b"data: " + orjson.dumps(data) + b"\n\n"


def _format(events: list[Event]) -> bytes:
    return b"".join(format_event(e.kind, e.data, e.id) for e in events)


async def stream(state: GatewayState, scope: Scope, receive: Receive, send: Send) -> None:
    """Serve one ``/v1/stream`` request until the client leaves or the stream must end."""
    if scope["method"] != "GET":
        await error_response(405, "use GET for /v1/stream", "method_not_allowed",
                             headers={"Allow": "GET"})(scope, receive, send)
        return
    try:
        feed, connected, resume = await _open(state, scope)
    except Exception as exc:
        response = response_for(exc)
        if response is None:
            raise
        await response(scope, receive, send)
        return
    watcher = asyncio.ensure_future(_until_disconnect(receive, feed))
    try:
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        await _write(feed, send, f"retry: {RETRY_MS}\n".encode() + format_event(
            "connected", connected, connected["last_event_id"]))
        del connected  # this frame lives as long as the stream: keep only what it needs
        final = None
        try:  # the pump: replay, then live events, until the feed ends (here: one frame less held)
            if resume is not None:
                async for batch in feed.replay(resume):
                    await _write(feed, send, _format(batch))
            while True:
                item = await feed.next()
                if item is None:
                    await _write(feed, send, HEARTBEAT)
                    continue
                async for batch in feed.process(item):
                    await _write(feed, send, _format(batch))
        except ClientGone:
            pass
        except (SlowConsumer, TokenExpired, InboxReset) as exc:
            final = format_event("error", {"error": exc.code, "message": str(exc)})
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            final = format_event("error", {"error": StoreUnavailable.code,
                                           "message": "Redis is unreachable; reconnect and resume shortly"})
        if final is not None:
            await _write(feed, send, final)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
    except (OSError, TimeoutError) as exc:
        log.debug("SSE client dropped: %r", exc)
    finally:
        watcher.cancel()
        feed.close()


async def _open(state: GatewayState, scope: Scope) -> tuple[Feed, dict[str, Any], str | None]:
    """Authenticate, subscribe and fix the starting point; raises what :func:`response_for` answers."""
    request = Request(scope)
    claims = live_claims(request)
    resume = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
    if resume is not None and not resume.strip():
        resume = None
    epoch = request.query_params.get("epoch") or None
    scope["headers"].clear()  # read: a stream open for hours need not hold them (a browser sends ~1 KB)
    feed = Feed(state, claims.user_id, claims.expires_at)
    try:
        connected = await feed.open(resume, epoch)
    except ValidationError as exc:
        raise ValidationError(f"Last-Event-ID: {exc}") from None
    connected["heartbeat"] = state.settings.heartbeat_seconds
    return feed, connected, None if resume is None else connected["last_event_id"]


async def _until_disconnect(receive: Receive, feed: Feed) -> None:
    """Notice the client leaving at once, not at the next write, so its subscription ends now."""
    while (await receive())["type"] != "http.disconnect":
        pass
    feed.hang_up()


async def _write(feed: Feed, send: Send, body: bytes) -> None:
    """One chunk; a client that takes nothing for ``send_timeout_seconds`` is dropped (it resumes)."""
    await feed.send(send, {"type": "http.response.body", "body": body, "more_body": True})


_ERROR = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
OPENAPI: dict[str, Any] = {"get": {
    "tags": ["live"],
    "summary": "Live notifications as Server-Sent Events",
    "description": "Subscribe to the caller's notifications; send `Last-Event-ID` to get the missed ones first.",
    "operationId": "stream_v1_stream_get",
    "security": [{"HTTPBearer": []}],
    "parameters": [
        {"name": "token", "in": "query", "required": False, "schema": {"type": "string"},
         "description": "User token, for clients that cannot set Authorization (EventSource); keep it short-lived"},
        {"name": "last_event_id", "in": "query", "required": False, "schema": {"type": "string"},
         "description": "Resume after this inbox entry id"},
        {"name": "epoch", "in": "query", "required": False, "schema": {"type": "string"},
         "description": "The inbox epoch the last `connected` event named: resuming from another epoch "
                        "answers `recovered: false`"},
        {"name": "Last-Event-ID", "in": "header", "required": False, "schema": {"type": "string"},
         "description": "Resume after this inbox entry id (what EventSource sends when it reconnects)"},
    ],
    "responses": {
        "200": {"content": {"text/event-stream": {}},
                "description": "Events `connected`, `notification` (id = inbox entry id), `unread_count`, "
                               "`error`; comment lines are heartbeats."},
        "401": {**_ERROR, "description": "Missing, malformed, tampered or expired credentials"},
        "422": {**_ERROR, "description": "The Last-Event-ID is not an inbox entry id"},
        "429": {**_ERROR, "description": "Too many open connections for this user"},
        "503": {**_ERROR, "description": "Redis is unreachable; retry later"},
    },
}}
"""The route's OpenAPI description (FastAPI never sees the route, so it cannot describe it)."""
