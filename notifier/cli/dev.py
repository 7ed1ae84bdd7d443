"""``notifier dev``: the whole system on one machine, for trying it out and for demos."""

from __future__ import annotations

import importlib.util
import os
import secrets
import time

import click

from notifier.cli import main

DEMO_USER = "demo-user"


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Gateway address.")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True, help="Gateway port.")
@click.option("--flower-port", type=click.IntRange(1, 65535), default=5555, show_default=True)
@click.option("--concurrency", type=click.IntRange(1, 64), default=2, show_default=True)
@click.option("--gateway/--no-gateway", default=True, show_default=True)
@click.option("--flower/--no-flower", default=True, show_default=True)
@click.option("--demo/--no-demo", default=True, show_default=True, help="Send a demo notification once up.")
def dev(host: str, port: int, flower_port: int, concurrency: int, gateway: bool, flower: bool,
        demo: bool) -> None:
    """Run Redis (embedded if none answers), a worker for every queue, the gateway and Flower.

    Ctrl-C stops every process it started.
    """
    from notifier.config import reload_settings
    from notifier.devstack import DevStack

    env = dict(os.environ)
    env.setdefault("NOTIFIER_DEV_MODE", "1")
    if not env.get("NOTIFIER_SECRET_KEY"):
        env["NOTIFIER_SECRET_KEY"] = secrets.token_urlsafe(32)
    stack = DevStack(env)
    try:
        url = stack.ensure_redis()
        click.echo(f"redis    {url}" + ("  (embedded: nothing answered at the configured URL)"
                                        if stack.embedded_redis else ""))
        os.environ.update(stack.env)
        reload_settings()
        stack.start_worker(concurrency=concurrency)
        _wait_for_worker(stack)
        click.echo(f"worker   all queues, concurrency {concurrency}")
        if gateway and importlib.util.find_spec("notifier.gateway.app") is not None:
            stack.start_gateway(host, port)
            _wait_http(stack, f"http://{host}:{port}/healthz", "gateway")
            click.echo(f"gateway  http://{host}:{port}/  (API docs at /docs)")
        if flower:
            stack.start_flower(flower_port)
            click.echo(f"flower   http://127.0.0.1:{flower_port}/")
        token = _token()
        if token:
            click.echo(f"token    {token}  (user {DEMO_USER})")
            if gateway:
                click.echo(f"demo     http://{host}:{port}/?token={token}")
        if demo:
            click.echo(f"demo send delivered to {DEMO_USER}'s inbox as {_demo_send()}")
        click.echo("ready; Ctrl-C to stop")
        while (failed := stack.failed()) is None:
            time.sleep(0.5)
        raise click.ClickException(f"{failed.name} exited with status {failed.proc.returncode}")
    except KeyboardInterrupt:
        click.echo("stopping")
    finally:
        stack.stop()


def _wait_for_worker(stack: object, timeout: float = 60) -> None:
    from notifier.producer import producer_app

    deadline = time.monotonic() + timeout
    while not producer_app().control.ping(timeout=0.5):
        if getattr(stack, "failed")() is not None or time.monotonic() > deadline:
            raise click.ClickException("the worker did not come up; see its output above")


def _wait_http(stack: object, url: str, what: str, timeout: float = 30) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if getattr(stack, "failed")() is not None or time.monotonic() > deadline:
            raise click.ClickException(f"the {what} did not come up at {url}")
        time.sleep(0.2)


def _token() -> str | None:
    try:
        from notifier import tokens
    except ImportError:
        return None
    return tokens.issue(DEMO_USER, 24 * 3600)


def _demo_send() -> str:
    from notifier import send_notification
    from notifier.inbox import Inbox

    sent = send_notification.delay(DEMO_USER, {
        "type": "welcome", "title": "notifier is running",
        "body": "This notification went producer -> router -> realtime -> your inbox.",
        "channels": ["realtime"]})
    deadline = time.monotonic() + 30
    while Inbox().get(DEMO_USER, sent.id) is None:
        if time.monotonic() > deadline:
            raise click.ClickException("the demo notification did not arrive within 30s")
        time.sleep(0.1)
    return sent.id
