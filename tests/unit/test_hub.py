"""The gateway hub and collector in one process, against real Redis: a Pub/Sub connection that goes
silent is found dead by the liveness check (there is no timeout per read) and its subscribers told to
replay; the collector keeps long-lived objects out of collections and still frees cycles; the lean
WebSocket protocol's receive mailbox and writable flag behave as the asyncio classes they replace."""

from __future__ import annotations

import asyncio
import gc
import weakref

import pytest
import redis

from notifier.gateway.collector import Collector
from notifier.gateway.hub import RESYNC, Hub
from notifier.gateway.hub.topology import ServerTopology
from notifier.gateway.ws_protocol import Flag, Mailbox
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


class _Node:
    def __init__(self) -> None:
        self.me = self


def test_collector_freezes_survivors_and_frees_cycles_at_each_full_pass() -> None:
    async def scenario() -> None:
        default = gc.get_threshold()
        collector = Collector(full_every=0.3, thresholds=(50_000, 20, 100), freeze_every=0.05)
        collector.start()
        try:
            assert gc.get_freeze_count() > 0, "what exists at start-up is frozen"
            assert gc.get_threshold()[0] > default[0], "young collections run less often"
            node = _Node()
            gone = weakref.ref(node)
            await asyncio.sleep(0.12)
            del node
            gc.collect()
            assert gone() is not None, "a frozen cycle is not collected by ordinary collections"
            for _ in range(40):
                if gone() is None:
                    break
                await asyncio.sleep(0.05)
            assert gone() is None, "the periodic full pass frees it"
            assert collector.full_passes >= 1
        finally:
            await collector.stop()
        assert gc.get_freeze_count() == 0, "stopping hands everything back to the normal collector"
        assert gc.get_threshold() == default

    asyncio.run(scenario())


def test_collector_frees_young_cycles_before_freezing_the_survivors() -> None:
    async def scenario() -> None:
        collector = Collector(full_every=60, thresholds=(50_000, 20, 100), freeze_every=0.05)
        collector.start()
        try:
            node = _Node()
            gone = weakref.ref(node)
            del node
            await asyncio.sleep(0.2)
            assert gone() is None, "a cycle that died young is freed, not frozen until the next full pass"
            assert collector.full_passes == 0
        finally:
            await collector.stop()

    asyncio.run(scenario())


def test_mailbox_keeps_order_and_loses_nothing_to_a_cancelled_receiver() -> None:
    async def scenario() -> None:
        box = Mailbox()
        early = asyncio.ensure_future(box.get())
        await asyncio.sleep(0)
        early.cancel()
        box.put_nowait("a")
        box.put_nowait("b")
        await asyncio.gather(early, return_exceptions=True)
        assert early.cancelled()
        assert not box.empty()
        assert [await box.get(), await box.get()] == ["a", "b"]
        assert box.empty()
        waiting = [asyncio.ensure_future(box.get()) for _ in range(2)]
        await asyncio.sleep(0)
        box.put_nowait("c")
        box.put_nowait("d")
        assert sorted(await asyncio.gather(*waiting)) == ["c", "d"]

    asyncio.run(scenario())


def test_flag_holds_writers_while_cleared_and_releases_them_all_when_set() -> None:
    async def scenario() -> None:
        flag = Flag(True)
        await asyncio.wait_for(flag.wait(), 1)
        flag.clear()
        writers = [asyncio.ensure_future(flag.wait()) for _ in range(3)]
        await asyncio.sleep(0.05)
        assert not any(w.done() for w in writers) and not flag.is_set()
        flag.set()
        await asyncio.wait_for(asyncio.gather(*writers), 1)
        assert flag.is_set()

    asyncio.run(scenario())


@pytest.fixture(autouse=True)
def _unfrozen() -> None:
    yield
    gc.unfreeze()
