"""uvicorn's WebSocket protocol with the request-head limits of :mod:`notifier.gateway.http_protocol`.

It answers an upgrade that websockets refuses before it is parsed (a line over 8 KiB: 414 or 431),
which uvicorn leaves unsent on an open connection, and it waits ``NOTIFIER_HANDSHAKE_TIMEOUT_SECONDS``,
not uvicorn's 10 s, for the reply to its Close frame (e.g. 4401 to a bad token), so a refused client
cannot hold a socket for longer than one that never finished its head.

The gateway runs it through :class:`notifier.gateway.tuning.LeanWebSocketProtocol`, which adds less
state per connection on top. It overrides uvicorn's ``data_received`` and reads ``conn``,
``handshake_initiated``, ``handshake_complete`` and ``close_sent``, so the ``uvicorn`` requirement in
pyproject.toml names the version range it was read against, and ``tests/security`` runs through it.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from notifier.config import get_settings


class GuardedWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol, answering every refused upgrade and waiting less for a Close reply."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.close_timeout = get_settings().handshake_timeout_seconds

    def data_received(self, data: bytes) -> None:
        """Send websockets' own refusal of a malformed upgrade (414, 431, or nothing for a request
        that is not HTTP) and close: uvicorn only writes answers to a request that parsed."""
        super().data_received(data)
        if not self.handshake_initiated and self.conn.handshake_exc is not None and not self.transport.is_closing():
            self.transport.write(b"".join(self.conn.data_to_send()))
            self.handshake_complete = self.close_sent = True
            self.transport.close()
