"""``notifier dev``: the whole system on one machine, for trying it out and for demos."""

from __future__ import annotations

import importlib.util
import os
import secrets
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING

import click

from notifier.cli import main

if TYPE_CHECKING:
    from notifier.devstack import DevStack

DEMO_USER = "demo-user"
WELCOME_KEY = "notifier-dev-welcome"
"""Idempotency key of the welcome notification, so starts close together send it once."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Gateway address.")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True, help="Gateway port.")
@click.option("--flower-port", type=click.IntRange(1, 65535), default=5555, show_default=True)
@click.option("--concurrency", type=click.IntRange(1, 64), default=2, show_default=True)
@click.option("--gateway/--no-gateway", default=True, show_default=True)
@click.option("--flower/--no-flower", default=True, show_default=True)
@click.option("--demo/--no-demo", default=True, show_default=True,
              help="Send a welcome notification when the demo user's inbox is empty.")
@click.option("--verbose", is_flag=True, help="Show Redis', Celery's and Flower's output here instead of the log.")
def dev(host: str, port: int, flower_port: int, concurrency: int, gateway: bool, flower: bool,
        demo: bool, verbose: bool) -> None:
    """Run Redis (embedded if none answers), a worker for every queue, the gateway and Flower.

    Their output goes to a log file (see the start-up block) unless --verbose. Ctrl-C stops every
    process it started.
    """
    from notifier.config import reload_settings
    from notifier.devstack import DevStack, port_taken, remove_secret, state_dir, write_secret
    from notifier.redis import store

    gateway = gateway and importlib.util.find_spec("notifier.gateway.app") is not None
    for wanted, where, option in ((gateway, (host, port), "--port"), (flower, ("127.0.0.1", flower_port),
                                                                      "--flower-port")):
        if wanted and port_taken(*where):
            raise click.ClickException(f"port {where[1]} on {where[0]} is already in use (another notifier dev?); "
                                       f"stop it or choose another with {option}")
    env = dict(os.environ)
    env.setdefault("NOTIFIER_DEV_MODE", "1")
    secret = env.get("NOTIFIER_SECRET_KEY") or ""
    own_secret = not secret
    if own_secret:
        secret = env["NOTIFIER_SECRET_KEY"] = secrets.token_urlsafe(32)
    log_path = state_dir() / "dev.log"
    log = None if verbose else _open_log(log_path)
    hint = "see its output above" if verbose else f"see {log_path}"
    stack = DevStack(env, log=log)
    # SIGTERM (kill, docker stop, systemd) stops the stack as Ctrl-C does, and so does SIGINT when the
    # shell started dev in the background with SIGINT ignored: else its children would outlive it.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _interrupt)
    try:
        url = stack.ensure_redis()
        store.check_server_version(store.connect(url), url)
        if own_secret:
            write_secret(secret)
        os.environ.update(stack.env)
        reload_settings()
        store.reset()
        stack.start_worker(concurrency=concurrency)
        _wait_for_worker(stack, hint)
        if gateway:
            stack.start_gateway(host, port)
            _wait_http(stack, f"http://{host}:{port}/healthz", "gateway", lambda status: status == 200, hint)
        if flower:
            stack.start_flower(flower_port)
            _wait_http(stack, f"http://127.0.0.1:{flower_port}/", "flower", lambda status: status < 500, hint)
        welcome = _welcome() if demo else None
        _print_block(stack, url, concurrency, f"http://{host}:{port}" if gateway else None,
                     f"http://127.0.0.1:{flower_port}/" if flower else None, welcome,
                     None if verbose else log_path)
        click.echo("ready; Ctrl-C to stop")
        while (failed := stack.failed()) is None:
            time.sleep(0.5)
        raise click.ClickException(f"{failed.name} exited with status {failed.proc.returncode}; {hint}")
    except KeyboardInterrupt:
        click.echo("stopping")
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):  # a second Ctrl-C must not cut the stop short:
            signal.signal(signum, signal.SIG_IGN)      # it is bounded (stack.stop's timeout, then SIGKILL)
        stack.stop()
        if own_secret:
            remove_secret(secret)
        if log is not None:
            log.close()


def _open_log(path: Path) -> IO[bytes]:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    return open(path, "ab")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _print_block(stack: DevStack, url: str, concurrency: int, gateway: str | None, flower: str | None,
                 welcome: str | None, log_path: Path | None) -> None:
    """The start-up summary a person looks for, printed once every child is up."""
    from notifier import tokens
    from notifier.config import get_settings

    click.echo("")
    from notifier.redis.urls import redact

    click.echo(f"redis    {redact(url)}" + (f"  (embedded {stack.embedded_redis}: nothing answered at the "
                                            "configured URL)" if stack.embedded_redis else ""))
    click.echo(f"worker   all queues, concurrency {concurrency}")
    token = tokens.issue(DEMO_USER, 24 * 3600)
    if gateway:
        click.echo(f"gateway  {gateway}/")
        click.echo(f"demo     {gateway}/?token={token}")
        click.echo(f"docs     {gateway}/docs")
        click.echo(f"admin    {gateway}/admin  (" + ("the key is NOTIFIER_API_KEY" if get_settings().api_key else
                                                     "set NOTIFIER_API_KEY to use it") + ")")
    if flower:
        click.echo(f"flower   {flower}")
    click.echo(f"token    {token}  (user {DEMO_USER}; `notifier token USER` makes more)")
    if welcome:
        click.echo(f"welcome  sent to {DEMO_USER}'s empty inbox as {welcome}")
    if log_path:
        click.echo(f"logs     {log_path}  (--verbose shows them here)")


def _wait_for_worker(stack: DevStack, hint: str, timeout: float = 60) -> None:
    from notifier.pipeline.producer import producer_app

    deadline = time.monotonic() + timeout
    while not producer_app().control.ping(timeout=0.5):
        if stack.failed() is not None or time.monotonic() > deadline:
            raise click.ClickException(f"the worker did not come up; {hint}")


def _wait_http(stack: DevStack, url: str, what: str, ok: Callable[[int], bool], hint: str,
               timeout: float = 30) -> None:
    """Wait until ``url`` answers with a status ``ok`` accepts while our child still runs.

    The port was free before the child started, and a child that lost it exits, so an answer while
    every child runs is our own.
    """
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        try:
            status = httpx.get(url, timeout=1).status_code
        except httpx.HTTPError:
            status = 0
        if stack.failed() is not None:
            raise click.ClickException(f"the {what} exited instead of answering at {url}; {hint}")
        if status and ok(status):
            return
        if time.monotonic() > deadline:
            raise click.ClickException(f"the {what} did not come up at {url}")
        time.sleep(0.2)


def _welcome() -> str | None:
    """Send the welcome notification when the demo user's inbox is empty; its id once it arrived."""
    from notifier import send_notification
    from notifier.state.inbox import Inbox

    if Inbox().list(DEMO_USER, limit=1).items:
        return None
    sent = send_notification.delay(DEMO_USER, {
        "type": "welcome", "title": "notifier is running",
        "body": "This notification went producer -> router -> realtime -> your inbox.",
        "channels": ["realtime"]}, idempotency_key=WELCOME_KEY)
    deadline = time.monotonic() + 30
    while Inbox().get(DEMO_USER, sent.id) is None:
        if time.monotonic() > deadline:
            raise click.ClickException("the welcome notification did not arrive within 30s")
        time.sleep(0.1)
    return sent.id
