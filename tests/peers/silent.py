"""A TCP server on 127.0.0.1 that accepts every connection and never answers.

It stands for a Redis or broker that hangs (a stopped process behind a live socket, a half-open
connection through a firewall): clients connect at once and then wait for a reply that never comes.
"""

from __future__ import annotations

import socket
import threading

from tests.support.processes import free_port


class SilentPeer:
    """Accepts connections, reads and drops whatever arrives, sends nothing."""

    def __init__(self) -> None:
        self.port = free_port()
        self._sock = socket.create_server(("127.0.0.1", self.port))
        self._conns: list[socket.socket] = []
        self._stopped = threading.Event()
        self.accepted = 0

    @property
    def url(self) -> str:
        return f"redis://admin:s3cretPW@127.0.0.1:{self.port}/0"

    def start(self) -> SilentPeer:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.accepted += 1
            self._conns.append(conn)

    def stop(self) -> None:
        self._stopped.set()
        self._sock.close()
        for conn in self._conns:
            conn.close()
