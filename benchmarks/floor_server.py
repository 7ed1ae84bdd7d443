"""The floor: the least a Python server must do to deliver a live event, for the gateway to be measured against.

Issue 15 asks the gateway to stay within 2.5x of this. It serves the clients the load generator opens
(``benchmarks/harness/sse.py`` at ``/v1/stream``, WebSocket at ``/v1/ws``) on a bare uvloop
``asyncio.Protocol``: no framework, no HTTP parser beyond finding the request line and the
WebSocket key, the user read from the token's payload without checking its signature. It subscribes
each user's live channel (``Keys.live``, the gateway's) on one Redis connection read with hiredis, and
for each published notification writes one frame, built by slicing the published bytes (no JSON
decoding), that carries the same JSON the gateway sends: an SSE ``notification`` event in a chunk, or
one unmasked WebSocket text frame ``{"type": "notification", ...}``.

What it leaves out, on purpose: the replay from the inbox, the unread-count event, heartbeats, flow
control and buffer limits, send deadlines, token checks, reconnecting to Redis, Cluster and Sentinel,
WebSocket frames from the client (a close is answered, nothing else is read). So the workers, Redis
and the load generator do the same work for both servers, and only the server differs.

    python -m benchmarks.floor_server --port 8100     # settings from NOTIFIER_* (one Redis server)
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import re
import sys
from typing import cast
from urllib.parse import parse_qs, urlsplit

import hiredis
import orjson
import uvloop

from notifier.config import get_settings
from notifier.redis.keys import Keys
from notifier.state.inbox import NEW_ENTRY_EVENT

SSE_PATH, WS_PATH = b"/v1/stream", b"/v1/ws"
MAX_HEAD = 8192
_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_HEAD, _AFTER_ID, _AFTER_UNREAD, _TAIL = (piece.encode() for piece in re.split(r"%[sd]", NEW_ENTRY_EVENT))
"""The literal text of a published notification event around its entry id, unread count and notification."""
_SSE_HEAD = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
             b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n")


def user_of(query: bytes) -> str | None:
    """The ``sub`` of the ``?token=`` JWT, unchecked: the floor prices delivery, not authentication."""
    token = parse_qs(query.decode()).get("token", [""])[0]
    try:
        payload = token.split(".")[1]
        user = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))).get("sub")
    except (IndexError, ValueError, AttributeError):
        return None
    return user if isinstance(user, str) else None


def notification(message: bytes) -> tuple[bytes, bytes] | None:
    """(entry id, the gateway's item JSON: the notification with ``entry_id`` and ``read``) of a
    published notification event, by slicing; None for any other live event."""
    if not message.startswith(_HEAD) or not message.endswith(_TAIL):
        return None
    end = message.find(_AFTER_ID, len(_HEAD))
    start = message.find(_AFTER_UNREAD, end)
    if end < 0 or start < 0:
        return None
    entry_id = message[len(_HEAD):end]
    body = message[start + len(_AFTER_UNREAD):-len(_TAIL)]
    return entry_id, body[:-1] + b',"entry_id":"' + entry_id + b'","read":false}'


def sse_chunk(event: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(event), event)


def ws_frame(text: bytes) -> bytes:
    """One unmasked text frame (RFC 6455 5.2)."""
    n = len(text)
    if n < 126:
        return bytes((0x81, n)) + text
    if n < 65536:
        return bytes((0x81, 126)) + n.to_bytes(2, "big") + text
    return bytes((0x81, 127)) + n.to_bytes(8, "big") + text


def resp(*parts: bytes) -> bytes:
    """A Redis command in RESP."""
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)


class Client(asyncio.Protocol):
    """One SSE or WebSocket connection: its request head, then only writes (and a WebSocket close)."""

    __slots__ = ("channel", "head", "kind", "pubsub", "transport", "user")

    def __init__(self, pubsub: PubSub) -> None:
        self.pubsub = pubsub
        self.head = b""
        self.kind = b""
        self.channel = b""
        self.user = ""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is one, without subclassing it

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        if self.kind:
            if self.kind == WS_PATH and data[0] & 0x0F == 0x8:
                self.transport.write(b"\x88\x00")
                self.transport.close()
            return
        self.head += data
        if b"\r\n\r\n" not in self.head:
            if len(self.head) > MAX_HEAD:
                self.transport.close()
            return
        lines = self.head.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
        target = lines[0].split(b" ")[1] if lines[0].count(b" ") == 2 else b""
        path, _, query = target.partition(b"?")
        self.head = b""
        if path == b"/healthz":
            self._refuse(b"200 OK", b"ok")
            return
        user = user_of(query)
        if user is None:
            self._refuse(b"401 Unauthorized", b"no token")
            return
        if path == SSE_PATH:
            self.transport.write(_SSE_HEAD)
        elif path == WS_PATH:
            key = next((line.split(b":", 1)[1].strip() for line in lines[1:]
                        if line.lower().startswith(b"sec-websocket-key:")), b"")
            accept = base64.b64encode(hashlib.sha1(key + _WS_GUID).digest())
            self.transport.write(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n"
                                 b"connection: Upgrade\r\nsec-websocket-accept: " + accept + b"\r\n\r\n")
        else:
            self._refuse(b"404 Not Found", b"not found")
            return
        self.kind, self.user = path, user
        self.channel = self.pubsub.keys.live(user).encode()
        self.pubsub.attach(self)

    def _refuse(self, status: bytes, body: bytes) -> None:
        assert self.transport is not None
        self.transport.write(b"HTTP/1.1 %s\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s"
                             % (status, len(body), body))
        self.transport.close()

    def live(self) -> None:
        """The subscription is confirmed: from now on nothing published is missed."""
        assert self.transport is not None
        hello = orjson.dumps({"user_id": self.user})
        if self.kind == SSE_PATH:
            self.transport.write(sse_chunk(b"event: connected\ndata: " + hello + b"\n\n"))
        else:
            self.transport.write(ws_frame(b'{"type":"connected",' + hello[1:]))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.channel:
            self.pubsub.detach(self)


class PubSub(asyncio.Protocol):
    """The one Redis Pub/Sub connection: a channel per user that connected, subscribed on the first."""

    def __init__(self, keys: Keys, lost: asyncio.Future[None]) -> None:
        self.keys = keys
        self.lost = lost
        self.reader = hiredis.Reader()
        self.live: dict[bytes, list[Client]] = {}
        self.pending: dict[bytes, list[Client]] = {}
        """Channels whose SUBSCRIBE Redis has not confirmed yet, with who waits for it."""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is one, without subclassing it

    def attach(self, client: Client) -> None:
        assert self.transport is not None
        channel = client.channel
        if channel in self.live:
            self.live[channel].append(client)
            client.live()
        elif channel in self.pending:
            self.pending[channel].append(client)
        else:
            self.pending[channel] = [client]
            self.transport.write(resp(b"SUBSCRIBE", channel))

    def detach(self, client: Client) -> None:
        """Forget a closed connection. Its channel stays subscribed (the floor serves one benchmark
        run), so a pending SUBSCRIBE and an UNSUBSCRIBE never cross."""
        for table in (self.live, self.pending):
            clients = table.get(client.channel)
            if clients and client in clients:
                clients.remove(client)

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            if not isinstance(reply, list) or len(reply) < 3:
                if isinstance(reply, hiredis.ReplyError):
                    self._fail(RuntimeError(f"Redis refused a command: {reply}"))
                continue
            kind, channel = reply[0], reply[1]
            if kind == b"message":
                clients = self.live.get(channel)
                parsed = notification(reply[2]) if clients else None
                if parsed is not None:
                    self._deliver(clients or [], *parsed)
            elif kind == b"subscribe":
                waiting = self.pending.pop(channel, [])
                self.live.setdefault(channel, []).extend(waiting)
                for client in waiting:
                    client.live()

    @staticmethod
    def _deliver(clients: list[Client], entry_id: bytes, item: bytes) -> None:
        sse = ws = b""
        for client in clients:
            assert client.transport is not None
            if client.kind == SSE_PATH:
                sse = sse or sse_chunk(b"event: notification\nid: " + entry_id + b"\ndata: " + item + b"\n\n")
                client.transport.write(sse)
            else:
                ws = ws or ws_frame(b'{"type":"notification","id":"' + entry_id + b'","notification":' + item + b"}")
                client.transport.write(ws)

    def _fail(self, exc: Exception) -> None:
        if not self.lost.done():
            self.lost.set_exception(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(exc or ConnectionError("Redis closed the Pub/Sub connection"))


async def serve(port: int, host: str = "127.0.0.1") -> None:
    """Connect to Redis, then serve until the Redis connection is lost."""
    settings = get_settings()
    url = urlsplit(settings.redis_url)
    if url.scheme != "redis":
        raise SystemExit(f"the floor server talks to one redis:// server, not {settings.redis_url!r}")
    loop = asyncio.get_running_loop()
    lost: asyncio.Future[None] = loop.create_future()
    pubsub = PubSub(Keys(settings.key_prefix), lost)
    await loop.create_connection(lambda: pubsub, url.hostname or "127.0.0.1", url.port or 6379)
    if url.password:
        assert pubsub.transport is not None
        pubsub.transport.write(resp(b"AUTH", *(p.encode() for p in (url.username, url.password) if p)))
    server = await loop.create_server(lambda: Client(pubsub), host, port, backlog=4096)
    async with server:
        await lost


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    try:
        uvloop.run(serve(args.port))
    except (ConnectionError, RuntimeError) as exc:
        sys.exit(f"floor server: {exc}")


if __name__ == "__main__":
    main()
