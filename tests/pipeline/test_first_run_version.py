"""A store older than Redis 7.0 is refused at start, in one line naming the version needed.

The old server is a RESP peer (tests/peers/resp.py) reporting ``redis_version:6.2.14`` to ``INFO``:
every process that uses the store must stop there, not dead-letter ``SET ... NX GET`` later.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.peers.resp import RespPeer
from tests.support.helpers import ROOT
from tests.support.processes import free_port

NEEDED = "notifier needs Redis >= 7.0 (or Valkey >= 7.2)"


@pytest.fixture(scope="module")
def old_redis() -> Iterator[RespPeer]:
    peer = RespPeer("6.2.14").start()
    yield peer
    peer.stop()


def run(argv: list[str], store_url: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, env={**os.environ, "NOTIFIER_REDIS_URL": store_url, **env},
                          capture_output=True, text=True, timeout=60)


def assert_refused(result: subprocess.CompletedProcess[str], url: str) -> None:
    assert result.returncode != 0, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if NEEDED in line]
    assert len(lines) == 1, result.stderr
    assert f"Redis at {url} is 6.2.14; {NEEDED}" in lines[0]
    assert "Traceback" not in result.stderr
    assert "ready" not in result.stdout


@pytest.mark.parametrize("command", [["inbox", "someone"], ["stats", "--timeout", "0.2"],
                                     ["send", "someone", "--type", "t", "--title", "x", "--idempotency-key", "k"]])
def test_cli_commands_refuse_an_old_store(old_redis: RespPeer, command: list[str]) -> None:
    assert_refused(run([sys.executable, "-m", "notifier.cli", *command], old_redis.url), old_redis.url)


def test_the_gateway_refuses_an_old_store(old_redis: RespPeer) -> None:
    result = run([sys.executable, "-m", "notifier.cli", "gateway", "--port", str(free_port())], old_redis.url)
    assert_refused(result, old_redis.url)


def test_a_worker_refuses_an_old_store(old_redis: RespPeer) -> None:
    result = run([sys.executable, "-m", "celery", "-A", "workers", "worker", "-Q", "router", "-c", "1",
                  "--without-gossip", "--without-mingle", "-n", f"old{os.getpid()}@%h"], old_redis.url)
    assert_refused(result, old_redis.url)
    assert "worker not started" in result.stderr


def test_dev_refuses_an_old_store(old_redis: RespPeer, tmp_path: object) -> None:
    result = run([sys.executable, "-m", "notifier.cli", "dev", "--port", str(free_port()), "--flower-port",
                  str(free_port())], old_redis.url, XDG_STATE_HOME=str(tmp_path), NOTIFIER_SECRET_KEY="")
    assert_refused(result, old_redis.url)
    assert not (tmp_path / "notifier" / "dev.env").exists()  # type: ignore[operator]
