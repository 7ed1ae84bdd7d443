"""``notifier dev`` as a user runs it: comes up (embedded Redis when none answers), delivers a
notification end to end to an SSE client, and leaves no process behind after Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import httpx
import psutil

from tests.helpers import ROOT, wait_for
from tests.peers.smtp import free_port


def test_dev_stack_end_to_end_and_clean_shutdown() -> None:
    redis_port, gateway_port, flower_port = free_port(), free_port(), free_port()
    url = f"redis://127.0.0.1:{redis_port}/0"
    env = {**os.environ, "NOTIFIER_REDIS_URL": url, "NOTIFIER_BROKER_URL": url, "NOTIFIER_SECRET_KEY": "",
           "NOTIFIER_FLOWER_USER": "ops", "NOTIFIER_FLOWER_PASSWORD": "pw"}
    proc = subprocess.Popen([sys.executable, "-m", "notifier.cli", "dev", "--port", str(gateway_port),
                             "--flower-port", str(flower_port)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    children: list[psutil.Process] = []
    threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True).start()
    try:
        wait_for(lambda: any(line.startswith("ready") for line in lines) or proc.poll() is not None,
                 timeout=90, message="notifier dev to be ready")
        out = "".join(lines)
        assert proc.poll() is None, out
        assert "embedded" in out and f"127.0.0.1:{redis_port}" in out
        token = re.search(r"^token\s+(\S+)", out, re.M).group(1)
        assert "demo send delivered" in out
        children = psutil.Process(proc.pid).children(recursive=True)
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
        assert httpx.get(f"http://127.0.0.1:{flower_port}/", timeout=5).status_code == 401

        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
        time.sleep(0.5)
        alive = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
        assert alive == [], f"left behind: {[c.cmdline() for c in alive]}"
    finally:
        if proc.poll() is None:
            proc.kill()
        for child in children:
            if child.is_running():
                child.kill()
