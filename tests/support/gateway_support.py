"""Test support for the gateway: a real gateway process, and SSE / WebSocket clients that record.

The gateway runs as ``python -m notifier.cli gateway`` (uvicorn) on a free port of 127.0.0.1 with the
test session's environment, so tests talk to it over real HTTP exactly like a browser would.
"""

from __future__ import annotations

import queue
import socket
import sys
import threading
import time
from typing import Any

import httpx
import orjson
from websockets.client import ClientProtocol
from websockets.frames import Close, Frame, Opcode
from websockets.sync.client import ClientConnection, connect
from websockets.uri import parse_uri

from notifier import tokens
from tests.support.helpers import base_env
from tests.support.processes import Child, free_port, wait_healthy

API_KEY = "gateway-test-api-key"


class Gateway(Child):
    """A ``notifier gateway`` subprocess; its output is kept for failure messages."""

    def __init__(self, env: dict[str, str] | None = None, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        self.env = {**base_env(), "NOTIFIER_API_KEY": API_KEY, "NOTIFIER_HEARTBEAT_SECONDS": "1",
                    **(env or {})}
        super().__init__([sys.executable, "-m", "notifier.cli", "gateway", "--port", str(self.port), "--log-level",
                          self.env.get("NOTIFIER_LOG_LEVEL", "INFO").lower()], self.env, "gateway")

    def wait_ready(self, timeout: float = 30) -> Gateway:
        wait_healthy(self, self.url + "/healthz", timeout)
        return self

    def stop(self, timeout: float = 10) -> None:
        super().stop(timeout)

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10)

    def ws(self, token: str | None, last_event_id: str | None = None, epoch: str | None = None,
           **kwargs: Any) -> WsClient:
        query = []
        if token:
            query.append(f"token={token}")
        if last_event_id:
            query.append(f"last_event_id={last_event_id}")
        if epoch:
            query.append(f"epoch={epoch}")
        conn = connect(f"{self.ws_url}/v1/ws?{'&'.join(query)}", open_timeout=10, **kwargs)
        return WsClient(conn.__enter__())


def token(user_id: str, ttl: int = 600) -> str:
    return tokens.issue(user_id, ttl)


class SSE:
    """Reads ``/v1/stream`` in a thread and queues each event as ``(event, id, data)``."""

    def __init__(self, gateway: Gateway, token: str | None = None, last_event_id: str | None = None,
                 query: str = "", headers: dict[str, str] | None = None) -> None:
        self.events: queue.Queue[tuple[str, str | None, Any]] = queue.Queue()
        self.status: int | None = None
        self.body: bytes = b""
        self.comments = 0
        self._ready = threading.Event()
        self._client = httpx.Client(timeout=httpx.Timeout(10, read=30))
        all_headers = dict(headers or {})
        if token:
            all_headers["Authorization"] = f"Bearer {token}"
        if last_event_id:
            all_headers["Last-Event-ID"] = last_event_id
        self._args = (f"{gateway.url}/v1/stream{query}", all_headers)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise AssertionError("the SSE request got no answer")

    def _run(self) -> None:
        url, headers = self._args
        try:
            with self._client.stream("GET", url, headers=headers) as response:
                self.status = response.status_code
                if response.status_code != 200:
                    self.body = response.read()
                    self._ready.set()
                    return
                self._ready.set()
                kind, event_id, data = "message", None, []
                for line in response.iter_lines():
                    if line.startswith(":"):
                        self.comments += 1
                    elif line.startswith("event:"):
                        kind = line[6:].strip()
                    elif line.startswith("id:"):
                        event_id = line[3:].strip()
                    elif line.startswith("data:"):
                        data.append(line[5:].strip())
                    elif line == "" and data:
                        self.events.put((kind, event_id, orjson.loads("\n".join(data))))
                        kind, event_id, data = "message", None, []
        except (httpx.HTTPError, RuntimeError, ValueError):
            pass
        finally:
            self._ready.set()
            self.events.put(("closed", None, None))

    def next(self, kind: str | None = None, timeout: float = 15) -> tuple[str, str | None, Any]:
        """The next event (of ``kind``, skipping others); fails the test after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                event = self.events.get(timeout=max(remaining, 0.01))
            except queue.Empty:
                raise AssertionError(f"no {kind or 'SSE'} event within {timeout}s") from None
            if kind is None or event[0] == kind or event[0] == "closed":
                return event

    def notifications(self, count: int, timeout: float = 15) -> list[tuple[str | None, Any]]:
        found = []
        for _ in range(count):
            kind, event_id, data = self.next("notification", timeout)
            assert kind == "notification", f"stream closed after {len(found)} notifications"
            found.append((event_id, data))
        return found

    def quiet(self, kind: str = "notification", seconds: float = 1.0) -> None:
        """Assert no event of ``kind`` arrives for ``seconds``."""
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                event = self.events.get(timeout=remaining)
            except queue.Empty:
                return
            assert event[0] != kind, f"unexpected {kind}: {event}"

    def close(self) -> None:
        self._client.close()
        self._thread.join(5)


class WsClient:
    """A WebSocket to ``/v1/ws`` that decodes JSON frames."""

    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn

    def send(self, frame: dict[str, Any] | str) -> None:
        self.conn.send(frame if isinstance(frame, str) else orjson.dumps(frame).decode())

    def next(self, kind: str | None = None, timeout: float = 15) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            frame = orjson.loads(self.conn.recv(timeout=max(deadline - time.monotonic(), 0.01)))
            if kind is None or frame.get("type") == kind:
                return frame

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> WsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RawWs:
    """A WebSocket on a plain socket that reads only when told to: a client that stops reading.

    The protocol is websockets' sans-I/O client; the socket's receive buffer is made small, so the
    gateway's writes back up into its own transport as they would behind a stalled phone. The server's
    Ping frames are recorded (monotonic times in ``pings``) and answered unless ``answer_pings`` is
    False: then, once upgraded, the client sends nothing at all, like a peer that vanished.
    """

    def __init__(self, gateway: Gateway, token: str, receive_buffer: int = 4096, answer_pings: bool = True) -> None:
        self.protocol = ClientProtocol(parse_uri(f"{gateway.ws_url}/v1/ws?token={token}"), max_size=None)
        self.pings: list[float] = []
        self.answer_pings = True
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.settimeout(10)
        self.sock.connect(("127.0.0.1", gateway.port))
        self.protocol.send_request(self.protocol.connect())
        self._flush()
        self.frames: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self.close_code: int | None = None
        self.read_until(lambda: not self.frames.empty())
        if self.protocol.handshake_exc is not None:
            raise self.protocol.handshake_exc
        self.answer_pings = answer_pings

    def _flush(self) -> None:
        """Send what the protocol has to say (Pongs, the close reply); the server may have hung up
        already (a client that reads late answers pings the server gave up on): then just read on."""
        for data in self.protocol.data_to_send():
            if data and self.answer_pings:
                try:
                    self.sock.sendall(data)
                except (BrokenPipeError, ConnectionResetError):
                    return

    def read_until(self, done: Any, timeout: float = 15) -> None:
        """Read and decode frames until ``done()`` is true or the connection closes."""
        deadline = time.monotonic() + timeout
        while not done() and self.close_code is None:
            if time.monotonic() > deadline:
                raise TimeoutError("no such frame in time")
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                data = b""
            self.protocol.receive_data(data) if data else self.protocol.receive_eof()
            for event in self.protocol.events_received():
                if isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                    self.frames.put(orjson.loads(event.data))
                elif isinstance(event, Frame) and event.opcode is Opcode.PING:
                    self.pings.append(time.monotonic())
                elif isinstance(event, Frame) and event.opcode is Opcode.CLOSE:
                    self.close_code = Close.parse(event.data).code
            self._flush()
            if not data and self.close_code is None:
                self.close_code = 1006

    def received(self) -> list[dict[str, Any]]:
        """The frames read so far and not yet taken, oldest first."""
        frames = []
        while not self.frames.empty():
            frames.append(self.frames.get_nowait())
        return frames

    def close(self) -> None:
        self.sock.close()
