"""python-socketio as the Python peer for live delivery: one room per user, fed through its Redis manager.

The server is python-socketio's ``AsyncServer`` on ASGI under uvicorn (uvloop, httptools, uvicorn's
default WebSocket protocol), with ``AsyncRedisManager``: every server subscribes one Pub/Sub channel
and hears every emit, and delivers to the sockets of the room it names. A client (the load
generator's ``sio`` kind, Engine.IO v4 over WebSocket, token in the query string) is put in its
user's room by the connect handler, before Socket.IO confirms the connection. A broadcast is what a
service using python-socketio would write: :func:`emit_to_each`, a write-only ``AsyncRedisManager``
emitting ``notification`` to each user's room.

    pip install -e '.[peers]'
    python -m benchmarks.peers.socketio_server --port 8200   # NOTIFIER_REDIS_URL, NOTIFIER_KEY_PREFIX
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from benchmarks.floor_server import user_of
from notifier.config import get_settings

INSTALL = "python-socketio is not installed: pip install -e '.[peers]'"


def channel() -> str:
    """The manager's Pub/Sub channel, under the benchmark's key prefix (Pub/Sub ignores the database)."""
    return f"{get_settings().key_prefix}:socketio"


def app() -> Any:
    """The ASGI application: Socket.IO at ``/socket.io/``, ``/healthz`` beside it."""
    import socketio

    sio = socketio.AsyncServer(async_mode="asgi", client_manager=socketio.AsyncRedisManager(
        get_settings().redis_url, channel=channel()))

    @sio.event
    async def connect(sid: str, environ: dict[str, Any], auth: Any) -> bool:
        user = user_of(environ.get("QUERY_STRING", "").encode())
        if user is None:
            return False
        await sio.enter_room(sid, user)
        return True

    async def healthz(scope: dict[str, Any], receive: Any, send: Any) -> None:
        status = 200 if scope["type"] == "http" and scope["path"] == "/healthz" else 404
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    return socketio.ASGIApp(sio, other_asgi_app=healthz)


async def emit_to_each(users: Sequence[str], data: dict[str, Any]) -> None:
    """Emit ``notification`` with ``data`` to each user's room, one after another, as a service would."""
    import socketio

    manager = socketio.AsyncRedisManager(get_settings().redis_url, channel=channel(), write_only=True)
    for user in users:
        await manager.emit("notification", data, room=user)
    if manager.redis is not None:
        await manager.redis.aclose()


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    try:
        application = app()
    except ImportError:
        raise SystemExit(INSTALL) from None
    uvicorn.run(application, host="127.0.0.1", port=args.port, loop="uvloop", http="httptools",
                log_level="warning", access_log=False, backlog=4096)


if __name__ == "__main__":
    main()
