"""``notifier dev`` as a user runs it: comes up (embedded Redis when none answers), delivers a
notification end to end to an SSE client, shares its token key with ``notifier token``, refuses a
taken port, and leaves no process (nor its key file) behind after Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import psutil
import pytest

from tests.support.helpers import ROOT, private_env, wait_for
from tests.support.processes import free_port


class Dev:
    """A running ``notifier dev`` whose output is collected line by line."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "notifier.cli", "dev", *args], cwd=ROOT, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        threading.Thread(target=lambda: self.lines.extend(iter(self.proc.stdout.readline, "")),  # type: ignore[union-attr]
                         daemon=True).start()

    @property
    def out(self) -> str:
        return "".join(self.lines)

    def wait_ready(self) -> str:
        wait_for(lambda: any(line.startswith("ready") for line in self.lines) or self.proc.poll() is not None,
                 timeout=90, message="notifier dev to be ready")
        assert self.proc.poll() is None, self.out
        return self.out

    def stop(self, signum: int = signal.SIGINT) -> int:
        self.proc.send_signal(signum)
        return self.proc.wait(30)


def dev_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "NOTIFIER_SECRET_KEY": "", "XDG_STATE_HOME": str(tmp_path), **extra}


def test_dev_stack_end_to_end_and_clean_shutdown(tmp_path: Path) -> None:
    redis_port, gateway_port, flower_port = free_port(), free_port(), free_port()
    url = f"redis://127.0.0.1:{redis_port}/0"
    env = dev_env(tmp_path, NOTIFIER_REDIS_URL=url, NOTIFIER_BROKER_URL=url, NOTIFIER_FLOWER_USER="ops",
                  NOTIFIER_FLOWER_PASSWORD="pw", NOTIFIER_DATABASE_URL="")  # the embedded delivery log
    dev = Dev(env, "--port", str(gateway_port), "--flower-port", str(flower_port))
    proc = dev.proc
    secret_file = tmp_path / "notifier" / "dev.env"
    children: list[psutil.Process] = []
    try:
        out = dev.wait_ready()
        assert "embedded" in out and f"127.0.0.1:{redis_port}" in out
        block = out[out.index("\nredis "):]
        for name in ("gateway", "demo", "docs", "admin", "flower", "token", "logs"):
            assert re.search(rf"^{name}\s+\S+", block, re.M), f"{name} missing from the start-up block:\n{out}"
        assert re.search(r"^welcome\s+sent to demo-user's empty inbox", block, re.M), out
        log = tmp_path / "notifier" / "dev.log"
        assert f"logs     {log}" in block
        assert "celery@" not in out and "[tasks]" not in out, "Celery's banner belongs in the log"
        assert "[tasks]" in log.read_text(), "the worker's banner went to the log"
        children = psutil.Process(proc.pid).children(recursive=True)
        assert secret_file.stat().st_mode & 0o777 == 0o600

        minted = subprocess.run([sys.executable, "-m", "notifier.cli", "token", "demo-user"], env=env,
                                capture_output=True, text=True, timeout=30)
        assert minted.returncode == 0, minted.stderr
        token = minted.stdout.strip()
        listing = httpx.get(f"http://127.0.0.1:{gateway_port}/v1/notifications",
                            headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert listing.status_code == 200, listing.text
        assert [item["type"] for item in listing.json()["items"]] == ["welcome"]
        assert len(children) >= 4, "redis, worker, gateway and flower run as children"

        received: list[dict] = []

        def listen() -> None:
            with httpx.stream("GET", f"http://127.0.0.1:{gateway_port}/v1/stream", params={"token": token},
                              timeout=30) as response:
                event = None
                for line in response.iter_lines():
                    if line.startswith("event:"):
                        event = line.split(":", 1)[1].strip()
                    elif line.startswith("data:") and event == "notification":
                        received.append(json.loads(line.split(":", 1)[1]))
                        return

        listener = threading.Thread(target=listen, daemon=True)
        listener.start()
        time.sleep(1.0)
        sent = subprocess.run([sys.executable, "-m", "notifier.cli", "send", "demo-user", "--type", "hello",
                               "--title", "live through the dev stack", "--channel", "realtime"],
                              env=env, capture_output=True, text=True, timeout=30)
        assert sent.returncode == 0, sent.stderr
        listener.join(20)
        assert received and received[-1]["id"] == sent.stdout.strip()
        assert received[-1]["title"] == "live through the dev stack"

        def logged() -> subprocess.CompletedProcess[str]:  # from another folder: the log is in the state folder
            return subprocess.run([sys.executable, "-m", "notifier.cli", "status", received[-1]["id"], "--json"],
                                  env=env, capture_output=True, text=True, timeout=30, cwd=tmp_path)

        status = wait_for(lambda: (found := logged()).returncode == 0 and found, timeout=15,
                          message="the send in the embedded delivery log")
        states = {(d["channel"], d["target"], d["state"]) for d in json.loads(status.stdout)["deliveries"]}
        assert {("realtime", None, "queued"), ("realtime", "live", "sent")} <= states, states
        assert (tmp_path / "notifier" / "log.sqlite3").exists()
        assert httpx.get(f"http://127.0.0.1:{flower_port}/", timeout=5).status_code == 401

        assert dev.stop() == 0
        time.sleep(0.5)
        alive = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
        assert alive == [], f"left behind: {[c.cmdline() for c in alive]}"
        assert not secret_file.exists(), "the key file outlived the stack"
        refused = subprocess.run([sys.executable, "-m", "notifier.cli", "token", "demo-user"], env=env,
                                 capture_output=True, text=True, timeout=30)
        assert refused.returncode == 1 and "no `notifier dev` is running" in refused.stderr
        assert "NOTIFIER_DEV_MODE" not in refused.stderr, "advice that does not help the token command"
    finally:
        if proc.poll() is None:
            proc.kill()
        for child in children:
            if child.is_running():
                child.kill()


class _Healthy(BaseHTTPRequestHandler):
    """Answers 200 to everything, as a naive readiness check would want from our gateway."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def squatter() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Healthy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("option", ["--port", "--flower-port"])
def test_dev_refuses_a_taken_port(tmp_path: Path, squatter: int, option: str) -> None:
    assert httpx.get(f"http://127.0.0.1:{squatter}/healthz", timeout=5).status_code == 200
    ports = {"--port": str(free_port()), "--flower-port": str(free_port()), option: str(squatter)}
    dev = Dev(dev_env(tmp_path, **private_env()), *[part for pair in ports.items() for part in pair])
    try:
        assert dev.proc.wait(60) == 1, dev.out
    finally:
        if dev.proc.poll() is None:
            dev.proc.kill()
    wait_for(lambda: "\n" in dev.out, message="its one line")
    assert not re.search(r"^ready", dev.out, re.M)
    assert dev.out.strip() == (f"Error: port {squatter} on 127.0.0.1 is already in use (another notifier dev?); "
                               f"stop it or choose another with {option}")


def test_a_second_start_sends_no_second_welcome(tmp_path: Path) -> None:
    env = dev_env(tmp_path, **private_env())
    for start in range(2):
        dev = Dev(env, "--no-gateway", "--no-flower")
        try:
            out = dev.wait_ready()
            assert ("welcome  sent" in out) == (start == 0), out
        finally:
            assert dev.stop() == 0
    from notifier.redis.store import connect
    from notifier.state.inbox import Inbox

    items = Inbox(connect(env["NOTIFIER_REDIS_URL"])).list("demo-user").items
    assert [item["type"] for item in items] == ["welcome"]


def _stopped_with_every_child(tmp_path: Path, stop: Callable[[Dev], object]) -> None:
    """Start a stack on the embedded Redis (no gateway, no Flower), ``stop`` it, and check that no
    child (Redis, the worker and its pool) outlives it."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    dev = Dev(dev_env(tmp_path, NOTIFIER_REDIS_URL=url, NOTIFIER_BROKER_URL=url), "--no-gateway", "--no-flower")
    try:
        dev.wait_ready()
        children = psutil.Process(dev.proc.pid).children(recursive=True)
        assert any("redis" in " ".join(c.cmdline()) for c in children), "the embedded Redis is a child"
        stop(dev)
        gone, alive = psutil.wait_procs(children, timeout=15)
        assert [c for c in alive if c.status() != psutil.STATUS_ZOMBIE] == [], "children outlived the stack"
    finally:
        if dev.proc.poll() is None:
            dev.proc.kill()


def test_sigterm_stops_the_stack_and_every_child(tmp_path: Path) -> None:
    """``kill``, ``docker stop`` and systemd send SIGTERM: the stack must not leave its children behind."""
    def sigterm(dev: Dev) -> None:
        assert dev.stop(signal.SIGTERM) == 0

    _stopped_with_every_child(tmp_path, sigterm)


def test_a_second_ctrl_c_while_stopping_still_stops_every_child(tmp_path: Path) -> None:
    """Impatient users press Ctrl-C again; the stop it interrupts must still stop Redis and the rest."""
    def impatient(dev: Dev) -> None:
        dev.proc.send_signal(signal.SIGINT)
        wait_for(lambda: any(line.startswith("stopping") for line in dev.lines), message="stopping")
        for _ in range(3):
            dev.proc.send_signal(signal.SIGINT)
            time.sleep(0.05)
        dev.proc.wait(40)

    _stopped_with_every_child(tmp_path, impatient)
