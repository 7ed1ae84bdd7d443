"""Operations: worker metrics move, JSON logs carry the notification id, Flower needs auth, stats."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable

import httpx

from notifier import send_notification
from notifier.pipeline.queues import QUEUES
from notifier.state.inbox import Inbox
from tests.support.helpers import ROOT, Worker, base_env, private_env, uid, wait_for
from tests.support.processes import free_port


def metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_worker_metrics_and_json_logs(worker_factory: Callable[..., Worker],
                                     settings_env: Callable[[dict[str, str]], None]) -> None:
    port = free_port()
    private = private_env()
    w = worker_factory({**private, "NOTIFIER_WORKER_METRICS_PORT": str(port), "NOTIFIER_LOG_JSON": "1"},
                       queues="router,realtime")
    settings_env(private)
    url = f"http://127.0.0.1:{port}/metrics"
    wait_for(lambda: _get(url) is not None, message="metrics endpoint")
    before = _get(url) or ""
    user = uid()
    sent = send_notification.delay(user, {"type": "t", "title": "measured", "channels": ["realtime"]})
    wait_for(lambda: Inbox().get(user, sent.id), message="delivery")

    def moved() -> str | None:
        text = _get(url) or ""
        return text if metric(text, "notifier_deliveries_total", channel="realtime", outcome="sent") > \
            metric(before, "notifier_deliveries_total", channel="realtime", outcome="sent") else None

    after = wait_for(moved, message="deliveries counter to move")
    assert metric(after, "notifier_routed_total", channel="realtime", decision="queued") >= 1
    assert metric(after, "notifier_delivery_latency_seconds_count", channel="realtime") >= 1

    lines = wait_for(lambda: [json.loads(line) for line in w.output if line.startswith("{")
                              and sent.id in line], message="JSON log lines")
    assert {e["notification_id"] for e in lines} == {sent.id}
    assert {e["logger"] for e in lines} >= {"notifier.worker"}
    messages = " | ".join(e["msg"] for e in lines)
    assert "routed" in messages and "realtime: sent 1" in messages


def _get(url: str) -> str | None:
    try:
        response = httpx.get(url, timeout=2)
        return response.text if response.status_code == 200 else None
    except httpx.HTTPError:
        return None


def test_flower_requires_basic_auth_and_shows_readable_tasks(worker: Worker) -> None:
    port = free_port()
    env = {**os.environ, **base_env(), "NOTIFIER_FLOWER_USER": "ops", "NOTIFIER_FLOWER_PASSWORD": "s3cret"}
    proc = subprocess.Popen([sys.executable, "-m", "celery", "-A", "workers", "flower", f"--port={port}",
                             "--address=127.0.0.1"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}/"
        status = wait_for(lambda: _status(url), timeout=30, message="flower")
        assert status == 401
        ok = httpx.get(url, auth=("ops", "s3cret"), timeout=5)
        assert ok.status_code == 200 and "Flower" in ok.text
        assert httpx.get(url, auth=("ops", "wrong"), timeout=5).status_code == 401
        time.sleep(2)  # Flower subscribes to task events after it starts serving
        user = uid()
        sent = send_notification.delay(user, {"type": "order_update", "title": "Order Shipped",
                                              "channels": ["realtime"]})

        def seen() -> dict | None:
            tasks = httpx.get(f"{url}api/tasks", auth=("ops", "s3cret"), timeout=5).json()
            return tasks.get(sent.id)

        task = wait_for(seen, timeout=20, message="the router task in Flower")
        assert task["name"] == "notifier.route"
        assert task["args"] == f"{user}: order_update 'Order Shipped'"
    finally:
        proc.terminate()
        proc.wait(10)


def _status(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return None


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "notifier.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=60)


def test_stats_shows_queues_dlq_and_workers(worker: Worker) -> None:
    out = cli("stats", "--json", "--timeout", "5")  # a loaded machine answers a ping later than the 1 s default
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert set(report["queues"]) == set(QUEUES) >= {"router", "realtime", "email", "fcm", "apns", "webpush", "sms"}
    assert any(name.startswith("test-") for name in report["workers"])
    assert isinstance(report["dead_letters"], int) and isinstance(report["deferred"], int)


def test_cli_errors_are_one_line_and_nonzero() -> None:
    down = {"NOTIFIER_REDIS_URL": "redis://127.0.0.1:1/0", "NOTIFIER_BROKER_URL": "redis://127.0.0.1:1/0"}
    for args in (("inbox", "u"), ("stats",), ("send", "u", "--type", "t", "--title", "x"), ("dlq", "list"),
                 ("prefs", "get", "u"), ("groups", "list")):
        res = cli(*args, env=down)
        assert res.returncode == 1, (args, res.stdout, res.stderr)
        assert "Traceback" not in res.stderr and re.search(r"cannot reach (Redis|the broker)", res.stderr), args
    res = cli("inbox", "u", env={"NOTIFIER_INBOX_MAX_LEN": "lots"})
    assert res.returncode == 1 and "NOTIFIER_INBOX_MAX_LEN" in res.stderr
    assert cli("nonsense").returncode == 2
    helps = cli("--help").stdout
    commands = ["send", "token", "prefs get", "prefs set", "devices list", "devices add", "devices remove",
                "groups add", "groups remove", "groups list", "dlq list", "dlq show", "dlq replay", "dlq purge",
                "inbox", "stats", "vapid generate", "dev", "gateway"]
    for command in commands:
        assert command.split()[0] in helps
        res = cli(*command.split(), "--help")
        assert res.returncode == 0 and "Usage: notifier " + command in res.stdout, command
