"""The gateway's tuning (``notifier/gateway/tuning.py``) in one process: the collector keeps long-lived
objects out of collections and still frees cycles; the lean WebSocket protocol's receive mailbox and
writable flag behave as the asyncio classes they replace."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator

import pytest

from notifier.gateway.tuning import (
    GC_THRESHOLDS,
    HTTP_PROTOCOL,
    WS_PROTOCOL,
    Collector,
    Flag,
    LeanHttpProtocol,
    LeanWebSocketProtocol,
    Mailbox,
)


class _Node:
    def __init__(self) -> None:
        self.me = self


def test_collector_freezes_survivors_and_frees_cycles_at_each_full_pass() -> None:
    async def scenario() -> None:
        default = gc.get_threshold()
        collector = Collector(full_every=0.3, freeze_every=0.05)
        collector.start()
        try:
            assert gc.get_freeze_count() > 0, "what exists at start-up is frozen"
            assert gc.get_threshold() == GC_THRESHOLDS and GC_THRESHOLDS[0] > default[0], \
                "young collections run less often"
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
        collector = Collector(full_every=60, freeze_every=0.05)
        collector.start()
        gc.disable()  # no automatic collection: only the collector's own can free the cycle
        try:
            node = _Node()
            gone = weakref.ref(node)
            del node
            await asyncio.sleep(0.2)
            assert gone() is None, "a cycle that died young is freed, not frozen until the next full pass"
            assert collector.full_passes == 0
        finally:
            gc.enable()
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


async def _app(scope: object, receive: object, send: object) -> None:
    """An ASGI app for the protocols to be built with (never called)."""


def test_lean_protocols_keep_uvicorns_per_connection_state_in_slots() -> None:
    """uvicorn sets 28-37 attributes per connection; past 30 CPython gives each instance a dict of its
    own (1.6 KB). In slots they leave the instance dict empty: a uvicorn release that adds state
    fails here, and its name goes into the slots."""
    from uvicorn.config import Config
    from uvicorn.server import ServerState

    async def scenario() -> None:
        config = Config(_app, http=HTTP_PROTOCOL, ws=WS_PROTOCOL, lifespan="off")
        config.load()
        for protocol_class in (LeanHttpProtocol, LeanWebSocketProtocol):
            protocol = protocol_class(config=config, server_state=ServerState(), app_state={})
            assert vars(protocol) == {}, f"{protocol_class.__name__} keeps {sorted(vars(protocol))} in its dict"

    asyncio.run(scenario())


@pytest.fixture(autouse=True)
def _unfrozen() -> Iterator[None]:
    yield
    gc.unfreeze()
