"""``notifier gateway``: run the realtime gateway (SSE, WebSocket, HTTP API) under uvicorn."""

from __future__ import annotations

import click

from notifier.cli import main

SHUTDOWN_GRACE = 5
"""Seconds open streams get to finish on shutdown; live clients reconnect and resume anyway."""


@main.command()
@click.option("--host", default=None, help="Interface to listen on (default NOTIFIER_GATEWAY_HOST).")
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              help="Port to listen on (default NOTIFIER_GATEWAY_PORT).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default=None,
              help="uvicorn's log level (default from NOTIFIER_LOG_LEVEL).")
def gateway(host: str | None, port: int | None, log_level: str | None) -> None:
    """Serve live notifications and the inbox API for browsers and apps."""
    import uvicorn

    from notifier import tokens
    from notifier.config import get_settings
    from notifier.gateway import tuning
    from notifier.logs import configure_logging
    from notifier.redis import store
    from notifier.redis.aio import check_url
    from notifier.workflows.files import get_workflows

    configure_logging()
    settings = get_settings()
    tokens.signing_key()
    check_url(settings.redis_url)
    store.get_redis()  # refuses a too-old Redis in one line, before serving anything
    get_workflows()  # and a workflows file that does not parse
    uvicorn.run(
        "notifier.gateway:app",
        host=host or settings.gateway_host,
        port=port or settings.gateway_port,
        log_level=log_level or settings.log_level.lower(),
        http=tuning.HTTP_PROTOCOL,
        ws=tuning.WS_PROTOCOL,
        ws_max_size=settings.max_request_bytes,
        ws_ping_interval=settings.heartbeat_seconds,
        ws_ping_timeout=settings.heartbeat_seconds,
        timeout_graceful_shutdown=SHUTDOWN_GRACE,
        proxy_headers=True,
        server_header=False,
    )
