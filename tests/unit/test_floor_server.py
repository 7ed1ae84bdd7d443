"""The benchmarks' floor server (``benchmarks/floor_server.py``) delivers what the gateway would, on real Redis.

Its frames are sliced from the published bytes, not decoded and encoded again, so this holds it to the
gateway's output: a real inbox append reaches an SSE and a WebSocket client (the load generator's) as
the gateway's item (the notification with ``entry_id`` and ``read``), and an unread-count event
reaches neither.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from benchmarks.floor_server import serve
from benchmarks.harness.load import user_tokens, ws_client
from benchmarks.harness.sse import sse_client
from notifier.state.inbox import Inbox
from tests.support.helpers import uid
from tests.support.processes import free_port


async def _deliver() -> tuple[dict[str, list[dict[str, Any]]], dict[str, dict[str, Any]]]:
    port = free_port()
    server = asyncio.create_task(serve(port))
    users = {"sse": uid(), "ws": uid()}
    got: dict[str, list[dict[str, Any]]] = {"sse": [], "ws": []}
    expected: dict[str, dict[str, Any]] = {}
    clients = []
    try:
        for _ in range(100):
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            await asyncio.sleep(0.05)
        for kind, token in zip(users, user_tokens(list(users.values())), strict=True):
            connected = asyncio.Event()
            client = sse_client if kind == "sse" else ws_client
            clients.append(asyncio.create_task(client(
                port, token, lambda event, data, kind=kind: got[kind].append({"event": event, **data}), connected)))
            await asyncio.wait_for(connected.wait(), 10)
        inbox = Inbox()
        for kind, user in users.items():
            notification = {"id": uid(), "type": "t", "title": f"to {kind} é", "data": {"n": [1, {"k": "}"}]}}
            appended = inbox.append(user, notification)
            expected[kind] = {"event": "notification", **notification, "entry_id": appended.entry_id, "read": False}
            inbox.mark_read(user)
        for _ in range(100):
            if all(got.values()):
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
    finally:
        for task in [*clients, server]:
            task.cancel()
        await asyncio.gather(*clients, server, return_exceptions=True)
    return got, expected


def test_an_inbox_append_reaches_sse_and_websocket_clients_as_the_gateways_item() -> None:
    got, expected = asyncio.run(_deliver())
    assert got == {kind: [expected[kind]] for kind in ("sse", "ws")}
