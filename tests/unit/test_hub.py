"""The gateway hub in one process, against real Redis: a Pub/Sub connection that goes silent is found
dead by the liveness check (there is no timeout per read) and its subscribers told to replay."""

from __future__ import annotations

import asyncio

import redis

from notifier.gateway.hub import RESYNC, Hub
from notifier.gateway.hub.topology import ServerTopology
from notifier.redis.keys import Keys
from notifier.state.inbox import UnreadCount
from tests.support.helpers import uid


class Freezable:
    """A TCP proxy to Redis whose open connections can be made to go silent (a half-dead network);
    connections made after that work."""

    def __init__(self) -> None:
        self.frozen = False
        self.server: asyncio.Server | None = None
        self.accepted = 0

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.accepted += 1
        redis_r, redis_w = await asyncio.open_connection("127.0.0.1", 6379)
        frozen_for_this = self.frozen

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while data := await reader.read(65536):
                if self.frozen and not frozen_for_this:
                    continue
                writer.write(data)
                await writer.drain()

        await asyncio.gather(pipe(client_r, redis_w), pipe(redis_r, client_w), return_exceptions=True)
        for w in (client_w, redis_w):
            w.close()

    async def aclose(self) -> None:
        assert self.server is not None
        self.server.close()


def test_a_silent_pubsub_connection_is_found_dead_and_subscribers_replay() -> None:
    async def scenario() -> None:
        proxy = Freezable()
        port = await proxy.start()
        keys = Keys(prefix=uid("hub"))
        hub = Hub(ServerTopology(f"redis://127.0.0.1:{port}/0"), keys.live, buffer=16, max_per_user=2,
                  ping_interval=0.2)
        hub.start()
        publisher = redis.Redis(port=6379)
        try:
            for _ in range(50):
                if hub.connected:
                    break
                await asyncio.sleep(0.05)
            sub = await hub.attach("alice")
            publisher.publish(keys.live("alice"), b'{"event": "unread_count", "unread": 1}')
            await asyncio.wait_for(sub.wait(), 2)
            assert sub.items.pop(0) == UnreadCount(1)

            proxy.frozen = True
            await asyncio.wait_for(sub.wait(), 5)
            assert sub.items.pop(0) is RESYNC, "found dead, reconnected: subscribers replay what they missed"
            assert proxy.accepted == 2, "exactly one reconnect"
            assert hub.connected
            publisher.publish(keys.live("alice"), b'{"event": "unread_count", "unread": 2}')
            await asyncio.wait_for(sub.wait(), 2)
            assert sub.items.pop(0) == UnreadCount(2)
            hub.detach(sub)
        finally:
            publisher.close()
            await hub.stop()
            await proxy.aclose()

    asyncio.run(scenario())
