"""A Redis or broker that accepts connections and never answers: every command gives up within seconds.

The silent peer (``tests/peers/silent.py``) accepts TCP connections and sends nothing, as a hung
server or a half-open connection does. Each CLI command must exit non-zero within ``LIMIT`` seconds
with one line naming the URL that did not answer, without its password; the producer API raises
``BrokerUnavailable`` as quickly.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from notifier import send_bulk, send_notification
from notifier.pipeline.producer import BrokerUnavailable
from notifier.state.deadletters import DeadLetters
from tests.peers.silent import SilentPeer
from tests.support.helpers import ROOT, uid, use_env

LIMIT = 15.0
"""Seconds a command may take to give up (the store's and broker's timeouts, plus one retry each)."""
PASSWORD = "s3cretPW"


@pytest.fixture(scope="module")
def silent() -> Iterator[SilentPeer]:
    peer = SilentPeer().start()
    yield peer
    peer.stop()


def _run_all(commands: dict[str, tuple[list[str], dict[str, str]]]) -> dict[str, tuple[float, subprocess.CompletedProcess[str]]]:
    """Run the CLI commands, a few at once (each mostly waits on a socket); time and outcome by name."""
    def run(args: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
        started = time.monotonic()
        try:
            res = subprocess.run([sys.executable, "-m", "notifier.cli", *args], cwd=ROOT, env={**os.environ, **env},
                                 capture_output=True, text=True, timeout=2 * LIMIT)
        except subprocess.TimeoutExpired as exc:
            res = subprocess.CompletedProcess(exc.cmd, -9, str(exc.stdout or ""), str(exc.stderr or ""))
        return time.monotonic() - started, res

    with ThreadPoolExecutor(4) as pool:
        futures = {name: pool.submit(run, args, env) for name, (args, env) in commands.items()}
        return {name: future.result() for name, future in futures.items()}


def _assert_gave_up(name: str, elapsed: float, res: subprocess.CompletedProcess[str], port: int) -> None:
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 1, (name, res.returncode, res.stderr)
    assert elapsed < LIMIT, f"{name} took {elapsed:.1f}s to give up"
    assert len(lines) == 1 and lines[0].startswith("Error: "), (name, res.stderr)
    assert f"127.0.0.1:{port}" in lines[0], (name, lines[0])
    assert PASSWORD not in res.stderr + res.stdout, (name, lines[0])


def test_cli_gives_up_on_a_silent_store_or_broker(silent: SilentPeer) -> None:
    prefix = uid("hang")
    with use_env({"NOTIFIER_KEY_PREFIX": prefix}):
        letter = DeadLetters().add(task="notifier.deliver.email", args=[{}, []], kwargs={}, queue="email",
                                   error="test", error_type="PermanentError", attempts=1)
    store = {"NOTIFIER_REDIS_URL": f"redis://admin:{PASSWORD}@127.0.0.1:{silent.port}/0"}
    redis_broker = {"NOTIFIER_BROKER_URL": f"redis://admin:{PASSWORD}@127.0.0.1:{silent.port}/0",
                    "NOTIFIER_KEY_PREFIX": prefix}
    amqp_broker = {"NOTIFIER_BROKER_URL": f"amqp://guest:{PASSWORD}@127.0.0.1:{silent.port}//",
                   "NOTIFIER_KEY_PREFIX": prefix}
    send = ["send", "u", "--type", "t", "--title", "x"]
    commands = {
        "inbox (store)": (["inbox", "u"], store),
        "dlq list (store)": (["dlq", "list"], store),
        "stats (store)": (["stats"], store),
        "prefs get (store)": (["prefs", "get", "u"], store),
        "groups list (store)": (["groups", "list"], store),
        "send (redis broker)": (send, redis_broker),
        "stats (redis broker)": (["stats"], redis_broker),
        "dlq replay (redis broker)": (["dlq", "replay", letter], redis_broker),
        "dlq replay (amqp broker)": (["dlq", "replay", letter], amqp_broker),
        "send (amqp broker)": (send, amqp_broker),
        "stats (amqp broker)": (["stats"], amqp_broker),
    }
    results = _run_all(commands)
    for name, (elapsed, res) in results.items():
        _assert_gave_up(name, elapsed, res, silent.port)
    assert "Redis at" in results["inbox (store)"][1].stderr
    assert "the broker at" in results["send (redis broker)"][1].stderr
    assert "the broker at" in results["stats (amqp broker)"][1].stderr


@pytest.mark.parametrize("scheme", ["redis", "amqp"])
def test_producer_gives_up_on_a_silent_broker(silent: SilentPeer, scheme: str,
                                              settings_env: Callable[[dict[str, str]], None]) -> None:
    path = "0" if scheme == "redis" else ""
    settings_env({"NOTIFIER_BROKER_URL": f"{scheme}://admin:{PASSWORD}@127.0.0.1:{silent.port}/{path}"})
    for call in (lambda: send_notification.delay("u", {"type": "t", "title": "x"}),
                 lambda: send_bulk([("u", {"type": "t", "title": "x"})])):
        started = time.monotonic()
        with pytest.raises(BrokerUnavailable) as info:
            call()
        assert time.monotonic() - started < LIMIT
        assert f"127.0.0.1:{silent.port}" in str(info.value) and PASSWORD not in str(info.value)
