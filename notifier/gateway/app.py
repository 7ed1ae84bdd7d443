"""The gateway's ASGI application: ``uvicorn notifier.gateway:app``.

:func:`create_app` wires the parts: the API routes, error handlers, the body size limit, the
JavaScript client and demo page, the API docs, and a lifespan that checks the signing key, connects the hub and
builds the shared state. The two live endpoints are served in front of FastAPI (:class:`Gateway`), so
an open connection holds only what it needs. Nothing touches Redis or the settings at import time.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from importlib import resources
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.types import Receive, Scope, Send

from notifier import tokens
from notifier.config import get_settings
from notifier.gateway import admin, errors, metrics, sms_status, sse, unsubscribe, ws
from notifier.gateway import api as api_routes
from notifier.gateway import event_webhooks as event_webhook_routes
from notifier.gateway.hub import Hub
from notifier.gateway.hub.topology import topology
from notifier.gateway.limits import BodySizeLimit
from notifier.gateway.state import GatewayState, LiveHandler, gateway_state
from notifier.gateway.tuning import Collector
from notifier.logs import configure_logging
from notifier.redis.aio import check_url, connect
from notifier.state.inbox import Inbox, LiveInbox
from notifier.state.preferences import PreferenceStore
from notifier.workflows.files import get_workflows

log = logging.getLogger(__name__)

STATIC = resources.files("notifier.gateway").joinpath("static")
HEALTH_TIMEOUT = 2.0
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; "
                               "base-uri 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
"""The demo page reads a token from its URL: never leak it in a Referer, never let it be framed."""


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    configure_logging()
    settings = get_settings()
    tokens.signing_key()
    check_url(settings.redis_url)
    get_workflows()
    if settings.dev_mode and not settings.secret_key:
        # Printed, not logged (log lines never show a token): the only way in under a throwaway key.
        print(f"dev mode: open /?token={tokens.issue('demo')} to try the demo as user 'demo'", file=sys.stderr)
    inbox = Inbox()
    hub = Hub(topology(settings.redis_url), inbox.live_channel, settings.client_buffer,
              settings.max_connections_per_user)
    client = connect(settings.redis_url, socket_timeout=HEALTH_TIMEOUT)
    app.state.gateway = GatewayState(settings=settings, hub=hub, inbox=inbox, preferences=PreferenceStore(),
                                     redis=client, live_inbox=LiveInbox(client))
    hub.start()
    collector = Collector()
    collector.start()
    try:
        yield
    finally:
        await collector.stop()
        await hub.stop()
        await app.state.gateway.delivered.close()
        await client.aclose()


async def healthz(request: Request) -> JSONResponse:
    """200 when Redis answers and the hub is connected; 503 otherwise (for load balancers)."""
    state = gateway_state(request.app)
    try:
        await asyncio.wait_for(state.redis.ping(), HEALTH_TIMEOUT)
        reachable = True
    except (TimeoutError, redis.exceptions.RedisError, redis.exceptions.RedisClusterException, OSError):
        reachable = False
    ok = reachable and state.hub.connected
    body = {"status": "ok" if ok else "unavailable", "redis": "ok" if reachable else "unreachable",
            "hub": "connected" if state.hub.connected else "reconnecting",
            "connections": state.hub.connection_count, "pubsub_connections": state.hub.pubsub_connections}
    return JSONResponse(body, status_code=200 if ok else 503)


def demo_page() -> FileResponse:
    """The demo inbox (``/?token=…``), built on the JavaScript client."""
    return FileResponse(str(STATIC.joinpath("index.html")), media_type="text/html", headers=PAGE_HEADERS)


def admin_page() -> FileResponse:
    """The support staff's page (``/admin``): search the delivery log, replay dead letters, see the
    queues, through the ``/v1/admin`` API with the API key it asks for."""
    return FileResponse(str(STATIC.joinpath("admin.html")), media_type="text/html", headers=PAGE_HEADERS)


class Gateway:
    """The ASGI application: ``/v1/stream`` and ``/v1/ws`` go straight to their handlers, the rest to FastAPI.

    Why in front: a live connection stays open for hours, and inside FastAPI it would hold the whole
    middleware and routing stack (its frames and closures) all that time, half of its memory; the
    live handlers authenticate and answer errors in the API's shape themselves.
    """

    def __init__(self, api: FastAPI) -> None:
        self.api = api
        self.live: dict[tuple[str, str], LiveHandler] = {("http", sse.PATH): sse.stream,
                                                          ("websocket", ws.PATH): ws.websocket_feed}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self.live.get((scope["type"], scope.get("path", "")))
        if handler is None:
            await self.api(scope, receive, send)
        else:
            await handler(gateway_state(self.api), scope, receive, send)


def create_app() -> Gateway:
    """A new gateway application (settings are read when it starts, not now).

    ``FastAPIOffline`` is FastAPI with ``/docs`` and ``/redoc`` served from the Swagger UI and ReDoc
    files that the ``fastapi-offline`` package ships (under ``/static-offline-docs``), not from a CDN,
    so the docs work on a machine without Internet access.
    """
    api = FastAPIOffline(
        title="notifier gateway",
        version="1",
        summary="Live notifications (SSE, WebSocket) and the inbox, preferences and devices API.",
        description=(
            "User endpoints take a user token (`notifier token USER_ID`) as `Authorization: Bearer`; "
            "`/v1/stream` and `/v1/ws` also accept `?token=` because browsers cannot set headers "
            "there — such URLs reach logs and history, so keep those tokens short-lived. "
            "`/v1/notify` takes the server API key instead; `/v1/unsubscribe/{token}` (the emails' "
            "`List-Unsubscribe` link) takes nothing but its signed token, and `/v1/sms/twilio/status` "
            "Twilio's `X-Twilio-Signature`. Errors share one shape: "
            "`{\"error\": code, \"message\": sentence}`. The WebSocket `/v1/ws` (not shown: OpenAPI "
            "cannot describe it) carries the same feed as JSON frames; see `notifier/gateway/ws.py`."),
        lifespan=lifespan,
    )
    errors.install(api)
    api.include_router(api_routes.router)
    api.include_router(admin.router)
    api.include_router(unsubscribe.router)
    api.include_router(sms_status.router)
    api.include_router(event_webhook_routes.router)
    api.add_api_route("/healthz", healthz, methods=["GET"], tags=["operations"],
                      summary="Redis reachable: 200, else 503")
    api.add_api_route("/metrics", metrics.metrics_endpoint, methods=["GET"], tags=["operations"],
                      summary="Prometheus metrics: connections, deliveries, resumes, auth failures")
    api.add_api_route("/", demo_page, methods=["GET"], include_in_schema=False)
    api.add_api_route("/admin", admin_page, methods=["GET"], include_in_schema=False)
    api.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    api.add_middleware(BodySizeLimit)
    api.openapi = partial(_with_stream, api, api.openapi)  # type: ignore[method-assign]
    return Gateway(api)


def _with_stream(api: FastAPI, build: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """FastAPI's schema plus ``/v1/stream``, which FastAPI does not route and so cannot describe."""
    first = api.openapi_schema is None
    schema = build()
    if first:
        schema["paths"][sse.PATH] = sse.OPENAPI
    return schema


app = create_app()
