"""A server that speaks just enough RESP to pass for a Redis of a given version.

Real old servers are not installable here (the embedded one is now Valkey 9), so this peer answers the
handshake a client makes (``HELLO`` in RESP2 or RESP3, ``CLIENT``, ``SELECT``, ``AUTH``, ``PING``) and
``INFO`` with the version it was given; every other command is an error, as a server without it would
answer.
"""

from __future__ import annotations

import socketserver
import threading
from typing import BinaryIO


def _read_command(stream: BinaryIO) -> list[bytes] | None:
    """One command: a RESP array of bulk strings, or an inline command line; None at end of stream."""
    line = stream.readline()
    if not line:
        return None
    if not line.startswith(b"*"):
        return line.split()
    args = []
    for _ in range(int(line[1:])):
        size = int(stream.readline()[1:])
        args.append(stream.read(size + 2)[:-2])
    return args


class RespPeer:
    """Listens on 127.0.0.1 (a free port) and reports ``redis_version:<version>`` in ``INFO``."""

    def __init__(self, version: str) -> None:
        self.version = version
        self.commands: list[str] = []
        peer = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                while (args := _read_command(self.rfile)) is not None:
                    if args:
                        self.wfile.write(peer._answer(args))

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def _answer(self, args: list[bytes]) -> bytes:
        name = args[0].decode().upper()
        self.commands.append(name)
        if name == "PING":
            return b"+PONG\r\n"
        if name in ("CLIENT", "SELECT", "AUTH"):
            return b"+OK\r\n"
        if name == "HELLO":
            proto = int(args[1]) if len(args) > 1 else 2
            fields = [b"server", b"redis", b"version", self.version.encode(), b"proto", b"%d" % proto]
            head = b"%%%d\r\n" % (len(fields) // 2) if proto == 3 else b"*%d\r\n" % len(fields)
            return head + b"".join(b"$%d\r\n%s\r\n" % (len(f), f) for f in fields[:-1]) + b":%d\r\n" % proto
        if name == "INFO":
            body = f"# Server\r\nredis_version:{self.version}\r\nredis_mode:standalone\r\n".encode()
            return b"$%d\r\n%s\r\n" % (len(body), body)
        return f"-ERR unknown command '{args[0].decode()}'\r\n".encode()

    def start(self) -> RespPeer:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
