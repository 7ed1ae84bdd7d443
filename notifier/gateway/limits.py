"""Request size limits: no HTTP body larger than ``NOTIFIER_MAX_REQUEST_BYTES`` is read.

A declared ``Content-Length`` over the limit is refused before reading; a chunked body is counted as
it arrives and refused the moment it passes the limit. Either way the answer is 413, so a client can
never make the gateway buffer more than the limit for one request.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from notifier.config import get_settings
from notifier.gateway.errors import error_response


class _TooLarge(HTTPException):
    """An HTTPException, so that frameworks reading the body pass it on instead of wrapping it."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, _message(max_bytes))


def _message(max_bytes: int) -> str:
    return f"request body is larger than {max_bytes} bytes (NOTIFIER_MAX_REQUEST_BYTES)"


class BodySizeLimit:
    """ASGI middleware enforcing the body limit on every HTTP route."""

    def __init__(self, app: ASGIApp, max_bytes: int | None = None) -> None:
        self.app = app
        self._max_bytes = max_bytes

    @property
    def max_bytes(self) -> int:
        """The limit given, or ``NOTIFIER_MAX_REQUEST_BYTES`` read on first use (not at import)."""
        if self._max_bytes is None:
            self._max_bytes = get_settings().max_request_bytes
        return self._max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await error_response(400, "Content-Length must be a whole number")(scope, receive, send)
                return
            if int(declared) > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if started:
                raise
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(413, _message(self.max_bytes), headers={"Connection": "close"})
        await response(scope, receive, send)
