"""What one gateway process shares between requests: settings, the hub and the stores.

Built at startup (the app's lifespan) and reached from handlers through :func:`gateway_state`, so
nothing is created at import time and tests can start several apps in one process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated

import redis.asyncio as aredis
from fastapi import Depends, FastAPI, Request
from redis.asyncio.cluster import RedisCluster
from starlette.types import Receive, Scope, Send

from notifier.config import Settings
from notifier.gateway.delivered import DeliveredLog
from notifier.gateway.hub import Hub
from notifier.state.inbox import Inbox, LiveInbox
from notifier.state.preferences import PreferenceStore

REDIS_SLOTS = 50
"""Commands a gateway process runs at once on its asyncio client (its pool holds up to 100 connections)."""


@dataclass(frozen=True)
class GatewayState:
    settings: Settings
    hub: Hub
    inbox: Inbox
    preferences: PreferenceStore
    redis: aredis.Redis | RedisCluster
    """The asyncio client, for the health check (a cluster client on a cluster)."""
    live_inbox: LiveInbox
    """The inbox on :attr:`redis`: live connections' starting points, read in the event loop."""
    delivered: DeliveredLog = field(default_factory=DeliveredLog)
    """This process's live deliveries waiting to be logged (``delivered`` events, in batches)."""
    redis_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(REDIS_SLOTS))
    """Bounds the commands in flight on :attr:`redis`: thousands of clients connecting at once queue
    here instead of opening a Redis connection each."""


def gateway_state(app: FastAPI) -> GatewayState:
    state: GatewayState | None = getattr(app.state, "gateway", None)
    if state is None:
        raise RuntimeError("the gateway is not started (its lifespan has not run)")
    return state


def _request_state(request: Request) -> GatewayState:
    return gateway_state(request.app)


State = Annotated[GatewayState, Depends(_request_state)]

LiveHandler = Callable[[GatewayState, Scope, Receive, Send], Awaitable[None]]
"""A live endpoint served in front of FastAPI: ``/v1/stream``, ``/v1/ws``."""
