"""What one gateway process shares between requests: settings, the hub and the stores.

Built at startup (the app's lifespan) and reached from handlers through :func:`gateway_state`, so
nothing is created at import time and tests can start several apps in one process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import redis.asyncio as aredis
from redis.asyncio.cluster import RedisCluster
from fastapi import Depends, FastAPI, Request

from notifier.config import Settings
from notifier.gateway.hub import Hub
from notifier.inbox import Inbox
from notifier.preferences import PreferenceStore


@dataclass(frozen=True)
class GatewayState:
    settings: Settings
    hub: Hub
    inbox: Inbox
    preferences: PreferenceStore
    redis: aredis.Redis | RedisCluster
    """The asyncio client, for the health check (a cluster client on a cluster)."""


def gateway_state(app: FastAPI) -> GatewayState:
    state: GatewayState | None = getattr(app.state, "gateway", None)
    if state is None:
        raise RuntimeError("the gateway is not started (its lifespan has not run)")
    return state


def _request_state(request: Request) -> GatewayState:
    return gateway_state(request.app)


State = Annotated[GatewayState, Depends(_request_state)]
