"""What the HTTP protocol peers share: a threaded server on 127.0.0.1 whose handler class is bound to
the peer's state, and JSON answers with a length (the channels read them as the providers send them)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


class JsonHandler(BaseHTTPRequestHandler):
    content_type = "application/json"
    """What the provider answers its JSON with."""

    def log_message(self, *args: Any) -> None:
        pass

    def body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))

    def reply(self, status: int, body: Any = None, headers: dict[str, str] | None = None,
              raw: bytes | None = None, content_type: str | None = None) -> None:
        """``body`` as JSON (or ``raw`` bytes, of ``content_type``), with its length and ``headers``."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
        self.send_response(status)
        if data:
            self.send_header("Content-Type", content_type or self.content_type)
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)


class HttpPeer:
    """A server on a free port of 127.0.0.1 answering with ``handler``, whose ``state`` is this peer's."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], state: Any) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), type("Handler", (handler,), {"state": state}))
        self.port = self.server.server_address[1]
        self.origin = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
