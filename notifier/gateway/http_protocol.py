"""uvicorn's httptools protocol with limits on what a connection may do before its request is complete.

Why: llhttp (httptools) puts no limit on a request line or on headers, and uvicorn arms no timer
before a connection's first request, so without these a client holding no credentials could make
the gateway buffer headers without end, or hold a file descriptor for ever by sending nothing, or
half a request line. Every request head (a WebSocket upgrade's included) is therefore:

- at most :data:`MAX_REQUEST_LINE` bytes of URL (else 414) and :data:`MAX_HEAD_BYTES` in all (else 431);
- complete within ``NOTIFIER_HANDSHAKE_TIMEOUT_SECONDS`` of the connection opening, or of a kept-alive
  connection starting its next request (else 408);
- one of at most ``NOTIFIER_MAX_PENDING_HANDSHAKES`` heads in progress in the process: a new
  connection over that closes the one that has been waiting longest (503), so idle connections
  cannot keep a real client, whose head arrives in milliseconds, from getting in.

Each refusal is an answer in the API's error shape, then the connection is closed (after reading
what the client was still sending for up to :data:`LINGER_SECONDS`, so that it sees the answer,
not a reset). Once the head is complete the request is uvicorn's (and, for an upgrade, the
WebSocket protocol's: :mod:`notifier.gateway.ws_protocol`). The gateway runs it through
:class:`notifier.gateway.tuning.LeanHttpProtocol`, which keeps less state per connection on top
(``notifier gateway`` selects it; ``--http notifier.gateway.tuning:LeanHttpProtocol`` for plain uvicorn). It overrides
uvicorn's callbacks ``connection_made``, ``data_received``, ``on_url``, ``on_message_begin``,
``on_headers_complete`` and ``send_400_response``, read against the uvicorn range in pyproject.toml.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from notifier.config import get_settings

MAX_REQUEST_LINE = 8 * 1024
"""Bytes of URL in a request line; websockets' own limit for every line of an upgrade is the same."""
MAX_HEAD_BYTES = 32 * 1024
"""Bytes of request line and headers together (cookies included)."""
LINGER_SECONDS = 1.0
"""How long a refused connection's remaining input is read and dropped before it is closed."""

log = logging.getLogger(__name__)
_pending: dict[GuardedHttpProtocol, None] = {}
"""The connections of this process whose request head is not complete yet, oldest first."""


class _Refused(Exception):
    """Raised from a parser callback to stop parsing; :meth:`GuardedHttpProtocol.send_400_response` answers."""


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with the limits of the module docstring on every request head."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = get_settings()
        self._head_timeout = settings.handshake_timeout_seconds
        self._max_pending = settings.max_pending_handshakes
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_bytes = 0
        self._refusal: tuple[int, str, str] | None = None
        self._linger: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(_pending) >= self._max_pending:
            next(iter(_pending))._answer(
                503, "unavailable", f"the gateway has {self._max_pending} connections still sending their request "
                "(NOTIFIER_MAX_PENDING_HANDSHAKES) and this one waited longest; send the request at once",
                b"retry-after: 1\r\n")
        self._head_begins()

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_ends()
        if self._linger is not None:
            self._linger.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._linger is not None:
            return  # refused: read and dropped until the linger ends
        if self._head_timer is not None:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._head_timer is not None and self._head_bytes > MAX_HEAD_BYTES:
            self._answer(*_too_large())

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_begins()

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > MAX_REQUEST_LINE:
            self._refusal = (414, "uri_too_long", f"the request URL is over {MAX_REQUEST_LINE} bytes")
            raise _Refused

    def on_headers_complete(self) -> None:
        self._head_ends()
        if len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers) > MAX_HEAD_BYTES:
            self._refusal = _too_large()
            raise _Refused
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a parser error, which is how a refusal from a callback arrives here."""
        if self._refusal is None:
            super().send_400_response(msg)
        else:
            self._answer(*self._refusal)

    def _head_begins(self) -> None:
        if self._head_timer is None and not self.transport.is_closing():
            self._head_bytes = 0
            _pending[self] = None
            self._head_timer = self.loop.call_later(self._head_timeout, self._head_timed_out)

    def _head_ends(self) -> None:
        _pending.pop(self, None)
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        self._answer(408, "request_timeout", f"no complete request within {self._head_timeout:g} s "
                     "(NOTIFIER_HANDSHAKE_TIMEOUT_SECONDS)")

    def _answer(self, status: int, code: str, message: str, extra_headers: bytes = b"") -> None:
        """Send ``status`` with an error body, then close once the client stops sending (or after the linger)."""
        self._head_ends()
        if self.transport.is_closing():
            return
        log.info("%s:%d - refused before the request was complete: %d %s", *(self.client or ("-", 0)), status, message)
        body = orjson.dumps({"error": code, "message": message})
        self.transport.write(b"".join([
            STATUS_LINE[status], b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body), b"connection: close\r\n", extra_headers, b"\r\n", body]))
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self._linger = self.loop.call_later(LINGER_SECONDS, self.transport.close)
        else:
            self.transport.close()


def _too_large() -> tuple[int, str, str]:
    return 431, "headers_too_large", f"the request line and headers are over {MAX_HEAD_BYTES} bytes"
