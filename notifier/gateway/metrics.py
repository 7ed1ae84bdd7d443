"""The gateway's Prometheus metrics, served at ``GET /metrics`` (one uvicorn process, one registry)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, generate_latest
from starlette.requests import Request
from starlette.responses import Response

CONNECTIONS = Gauge("notifier_gateway_connections", "Open live connections.", ["transport"])
CONNECTS = Counter("notifier_gateway_connects_total", "Live connections opened.", ["transport"])
DELIVERED = Counter("notifier_gateway_notifications_delivered_total",
                    "Notifications written to live connections (replayed or live).", ["transport"])
RESUMES = Counter("notifier_gateway_resumes_total", "Connections that resumed from a last event id.",
                  ["transport"])
AUTH_FAILURES = Counter("notifier_gateway_auth_failures_total",
                        "Requests refused for a missing or bad credential.", ["kind"])


async def metrics_endpoint(request: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
