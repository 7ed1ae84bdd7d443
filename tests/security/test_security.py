"""Secrets stay secret: never logged, compared in constant time, and never weak or missing in production.

Who may see what over the gateway is ``tests/security/test_security_matrix.py``; Flower's basic auth is
``tests/pipeline/test_operations.py::test_flower_requires_basic_auth``; ``SECURITY.md`` has the threat model.
"""

from __future__ import annotations

import ast
import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from urllib.parse import quote

import httpx
import pytest
import redis
from py_vapid import Vapid
from pydantic import ValidationError as PydanticValidationError

from notifier import tokens
from notifier.channels.webpush import private_key, public_key
from notifier.errors import ValidationError
from notifier.models import Notification, check_user_id
from notifier.state import idempotency
from notifier.state.deadletters import DeadLetters
from notifier.state.devices import Registration
from notifier.state.groups import check_group_id
from notifier.state.inbox import Inbox, check_entry_id
from notifier.state.preferences import PreferenceStore
from tests.peers.smtp import SmtpPeer
from tests.support.gateway_support import API_KEY, SSE, Gateway
from tests.support.helpers import ROOT, Worker, uid, wait_for
from tests.support.processes import free_port

SECRET_NAMES = ("secret", "api_key", "apikey", "signature", "password", "passwd", "expected", "offered",
                "digest", "credential")


def _secretish(node: ast.expr) -> bool:
    return isinstance(node, (ast.Name, ast.Attribute, ast.Subscript, ast.Call)) and any(
        name in ast.unparse(node).lower() for name in SECRET_NAMES)


def test_secrets_are_compared_in_constant_time_only() -> None:
    """No ``==``, ``!=`` or ``in`` on a secret anywhere in notifier (their time leaks how much matched),
    and the two places that check one (token signature, server API key) use ``hmac.compare_digest``."""
    leaky = []
    for path in sorted((ROOT / "notifier").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare) and any(
                    isinstance(op, (ast.Eq, ast.NotEq, ast.In, ast.NotIn)) for op in node.ops):
                if any(_secretish(side) for side in (node.left, *node.comparators)):
                    leaky.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    assert leaky == []

    def calls(path: str, function: str, callee: str) -> int:
        tree = ast.parse((ROOT / path).read_text())
        [fn] = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == function]
        return sum(1 for n in ast.walk(fn) if isinstance(n, ast.Call) and ast.unparse(n.func) == callee)

    def compare_digest_calls(path: str, function: str) -> int:
        return calls(path, function, "hmac.compare_digest")

    # both kinds of token (login, unsubscribe link) are checked by the one function that compares
    assert compare_digest_calls("notifier/tokens.py", "_checked") == 1
    assert calls("notifier/tokens.py", "verify", "_checked") == calls("notifier/tokens.py", "verify_unsubscribe",
                                                                      "_checked") == 1
    assert compare_digest_calls("notifier/gateway/auth.py", "require_service") == 1


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "notifier.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=60)


@pytest.mark.parametrize("key", ["", "secret", "changeme", "x" * 31])
def test_token_cli_refuses_a_missing_or_weak_secret_key(key: str) -> None:
    out = cli("token", "alice", NOTIFIER_SECRET_KEY=key, NOTIFIER_DEV_MODE="0")
    assert out.returncode == 1 and out.stdout == ""
    assert "NOTIFIER_SECRET_KEY" in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_gateway_refuses_to_start_with_a_weak_secret_key() -> None:
    """(A missing key is ``tests/gateway/test_gateway_api.py::test_gateway_refuses_to_start_without_a_secret_key``.)"""
    out = cli("gateway", "--port", str(free_port()), NOTIFIER_SECRET_KEY="changeme", NOTIFIER_DEV_MODE="0")
    assert out.returncode == 1 and "NOTIFIER_SECRET_KEY is 8 characters" in out.stderr, out.stderr


# Logs ---------------------------------------------------------------------------------------------
class PasswordRedis:
    """A redis-server of this test's own that wants a password (so its URL carries one)."""

    def __init__(self, password: str) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--requirepass", password],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"redis://:{password}@127.0.0.1:{self.port}/0"
        wait_for(self._pings, timeout=10, message="redis-server with a password")

    def _pings(self) -> bool:
        try:
            return bool(redis.Redis.from_url(self.url, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture
def password_redis() -> Iterator[PasswordRedis]:
    assert shutil.which("redis-server"), "redis-server is installed by scripts/services.sh"
    server = PasswordRedis("redis-pw-" + secrets.token_hex(8))
    yield server
    server.stop()


def test_no_secret_reaches_a_log_a_dead_letter_or_an_error(password_redis: PasswordRedis, smtp: SmtpPeer,
                                                          settings_env: Callable[[dict[str, str]], None],
                                                          worker_factory: Callable[..., Worker]) -> None:
    """A gateway and a worker at DEBUG (uvicorn's too, which logs every WebSocket handshake header),
    on a Redis with a password, used with user tokens in headers and in ``?token=`` (SSE, WebSocket,
    API), the API key both ways, and a cookie: every line they print is scanned for every secret."""
    vapid = Vapid()
    vapid.generate_keys()
    secret = {
        "NOTIFIER_SECRET_KEY": "signing-" + secrets.token_urlsafe(32),
        "NOTIFIER_API_KEY": "service-" + secrets.token_urlsafe(24),
        "NOTIFIER_SMTP_PASSWORD": "smtp-pw-" + secrets.token_hex(8),
        "NOTIFIER_VAPID_PRIVATE_KEY": private_key(vapid),
    }
    env = {**smtp.env(), **secret, "NOTIFIER_REDIS_URL": password_redis.url, "NOTIFIER_BROKER_URL": password_redis.url,
           "NOTIFIER_SMTP_USER": "notifier", "NOTIFIER_VAPID_PUBLIC_KEY": public_key(vapid),
           "NOTIFIER_LOG_LEVEL": "DEBUG", "NOTIFIER_RATE_LIMITS": "realtime=100/60,email=100/60"}
    settings_env(env)
    worker = worker_factory(env, queues="router,realtime,email", concurrency=1)
    gateway = Gateway(env).wait_ready()
    user = uid("logged")
    PreferenceStore().set(user, {"email": f"{user}@example.test"})
    used = {f"token for {use}": tokens.issue(user, 600 + n) for n, use in enumerate(
        ("SSE ?token=", "SSE header", "WebSocket ?token=", "WebSocket header", "API header", "API ?token="))}
    assert len(set(used.values())) == len(used)
    cookie = {"Cookie": f"session={secrets.token_urlsafe(16)}"}
    used["cookie"] = cookie["Cookie"].partition("=")[2]
    header, payload, signature = used["token for API header"].split(".")
    used["a token's signature"] = signature
    api_key = secret["NOTIFIER_API_KEY"]
    streams = [SSE(gateway, query=f"?token={used['token for SSE ?token=']}", headers=cookie),
               SSE(gateway, used["token for SSE header"], headers=cookie)]
    try:
        for stream in streams:
            assert stream.next("connected")[0] == "connected"
        with gateway.ws(used["token for WebSocket ?token="], additional_headers=cookie) as ws:
            ws.next("connected")
        with gateway.ws(None, additional_headers={**cookie,
                                                  "Authorization": f"Bearer {used['token for WebSocket header']}"}) as ws:
            ws.next("connected")
        with httpx.Client(base_url=gateway.url, timeout=10, headers=cookie) as http:
            bearer = {"Authorization": f"Bearer {used['token for API header']}"}
            assert http.get("/v1/notifications", headers=bearer).status_code == 200
            assert http.get(f"/v1/notifications?token={used['token for API ?token=']}").status_code == 401
            tampered = f"{header}.{tokens.issue('mallory', 600).split('.')[1]}.{signature}"
            assert http.get("/v1/notifications", headers={"Authorization": f"Bearer {tampered}"}).status_code == 401
            used["a near miss of the API key"] = near_miss = api_key[:-1] + "x"
            body = {"user_id": user, "notification": {"type": "t", "title": "hello"}}
            assert http.post("/v1/notify", json=body, headers={"X-API-Key": near_miss}).status_code == 401
            assert http.post("/v1/notify", json=body, headers={"X-API-Key": api_key}).status_code == 202
            assert http.post("/v1/notify", json=body, headers={"Authorization": f"Bearer {api_key}"}).status_code == 202
        for stream in streams:
            assert [n[1]["title"] for n in stream.notifications(2)] == ["hello", "hello"]
        entry = wait_for(lambda: DeadLetters().list(10), timeout=20, message="the email dead-lettered")[0]
        assert "SMTP" in entry["error"] and Inbox().unread_count(user) == 2
        stats = cli("stats", "--timeout", "0.2")
    finally:
        gateway.stop()
        for stream in streams:
            stream.close()
    redis_password = password_redis.url.split(":")[2].split("@")[0]
    every = {**secret, "redis password": redis_password, **used}
    lines = {"worker": worker.output, "gateway": gateway.output,
             "dead letters": json.dumps(DeadLetters().list(10)).splitlines(),
             "notifier stats": (stats.stdout + stats.stderr).splitlines()}
    leaks = [(name, where, line) for name, value in every.items()
             for where, text in lines.items() for line in text if value in line]
    scanned = sum(map(len, lines.values()))
    print(f"log scan: {len(every)} secrets, {scanned} lines ({len(gateway.output)} gateway, "
          f"{len(worker.output)} worker), {len(leaks)} found")
    assert leaks == []
    gateway_log = gateway.log()
    assert "< authorization: ***" in gateway_log and "< cookie: ***" in gateway_log, \
        "uvicorn logged the handshake headers (DEBUG was on), masked"
    assert "/v1/stream?token=***" in gateway_log, "the query token was logged, masked"
    assert "dead-lettered" in worker.log() and "DEBUG" in worker.log(), "the worker logged at DEBUG"


# Identifiers ---------------------------------------------------------------------------------------
CONTROL = [chr(c) for c in (*range(0x20), 0x7F)]


def _refuses(check: Callable[[str], object], value: str) -> bool:
    try:
        check(value)
    except (ValidationError, PydanticValidationError, ValueError):
        return True
    return False


VALIDATORS: dict[str, tuple[Callable[[str], object], str]] = {
    "user id": (check_user_id, "victim"),
    "group id": (check_group_id, "team"),
    "entry id": (check_entry_id, "1700000000000-0"),
    "idempotency key": (idempotency.check_key, "order-42"),
    "notification type": (lambda v: Notification(type=v, title="t"), "order_update"),
    "notification id": (lambda v: Notification(id=v, type="t", title="t"), "abc123"),
    "FCM token": (lambda v: Registration(platform="fcm", token=v), "f" * 20),
    "APNs token": (lambda v: Registration(platform="apns", token=v), "a" * 64),
    "APNs topic": (lambda v: Registration(platform="apns", token="a" * 64, topic=v), "com.example.app"),
}


@pytest.mark.parametrize("name", VALIDATORS)
def test_every_identifier_refuses_every_control_character(name: str) -> None:
    """``$`` matches before a final newline and pydantic strips whitespace (``\\n`` included): every
    validator must refuse the value, not accept or silently trim it."""
    check, good = VALIDATORS[name]
    check(good)
    accepted = [f"U+{ord(c):04X} at {where}" for c in CONTROL for where, value in
                (("end", good + c), ("start", c + good), ("middle", good[:1] + c + good[1:]))
                if not _refuses(check, value)]
    assert accepted == []


def test_the_api_refuses_control_characters_in_ids_and_types() -> None:
    gateway = Gateway().wait_ready()
    try:
        with gateway.client(tokens.issue(uid("ctl"), 600)) as http:
            for c in ("\n", "\x00", "\x1f", "\x7f"):
                quoted = quote(c)
                assert http.get(f"/v1/notifications/abc{quoted}").status_code == 422, repr(c)
                assert http.delete(f"/v1/devices/fcm-0123{quoted}").status_code == 422, repr(c)
                assert http.get("/v1/notifications", params={"before": f"1-0{c}"}).status_code == 422, repr(c)
                for body in ({"user_id": f"victim{c}", "notification": {"type": "t", "title": "x"}},
                             {"user_id": "victim", "notification": {"type": f"t{c}", "title": "x"}},
                             {"user_id": "victim", "notification": {"type": "t", "title": "x"},
                              "idempotency_key": f"k{c}"}):
                    answer = http.post("/v1/notify", json=body, headers={"X-API-Key": API_KEY})
                    assert answer.status_code == 422, (repr(c), body, answer.text)
    finally:
        gateway.stop()
