"""The realtime gateway: SSE, WebSocket and the HTTP API over the inbox (``uvicorn notifier.gateway:app``)."""

from notifier.gateway.app import app, create_app

__all__ = ["app", "create_app"]
