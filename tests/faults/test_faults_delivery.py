"""Faults at the delivery end, injected for real: a worker SIGKILLed mid-run, providers that fail.

Every provider is a local peer that speaks the real protocol (SMTP, FCM HTTP v1, APNs over HTTP/2,
web push with encryption). A :class:`Switch` in front of all of them decides how they answer right
now: normally, not yet (requests are held), 503, or not at all (the sender's timeout fires). What a
user would see is counted where they would see it: at the providers and in the inboxes.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from py_vapid import Vapid

from notifier import send_bulk
from notifier.channels.webpush import private_key, public_key
from notifier.pipeline.queues import QUEUES
from notifier.pipeline.streams_transport import in_flight, waiting
from notifier.state.deadletters import DeadLetters
from notifier.state.devices import Devices
from notifier.state.inbox import Inbox
from notifier.state.preferences import PreferenceStore
from tests.peers import fcm as fcm_peer
from tests.peers.apns import ApnsPeer
from tests.peers.fcm import FcmPeer
from tests.peers.smtp import SmtpPeer
from tests.peers.webpush import WebPushPeer
from tests.support.helpers import ROOT, Worker, private_env, uid, use_env, wait_for, wait_idle

UP, HOLD, DOWN, SILENT = "up", "hold", "down", "silent"
PLATFORMS = ("fcm", "apns", "webpush")
NO_LIMITS = ",".join(f"{c}=1000000/60" for c in ("realtime", "email", "fcm", "apns", "webpush"))


class Switch:
    """How every fake provider answers right now.

    ``up``: normally. ``hold``: requests wait at the door, not yet accepted (so a worker killed now
    has nothing in the ambiguous state "provider accepted, worker never heard"); on release they are
    dropped, as their sender is gone. ``down``: 503. ``silent``: no answer until the switch changes.
    """

    def __init__(self) -> None:
        self.mode = UP
        self.held = 0
        self.drop_held = False
        self.attempts: list[tuple[str, float, str]] = []
        """Every request that reached the switch: (target, time, how it was answered)."""
        self._changed = threading.Condition()

    def set(self, mode: str, drop_held: bool = False) -> None:
        with self._changed:
            self.mode, self.drop_held = mode, drop_held
            self._changed.notify_all()

    def gate(self, target: str) -> str:
        """What to do with one request to ``target``: ``up``, ``down``, ``silent`` or ``drop``."""
        with self._changed:
            action = self.mode
            if action == HOLD:
                self.held += 1
                self._changed.wait_for(lambda: self.mode != HOLD)
                self.held -= 1
                action = "drop" if self.drop_held else self.mode
            self.attempts.append((target, time.time(), action))
            return action

    def silence(self, limit: float = 30) -> None:
        """Say nothing until the switch leaves ``silent`` (or ``limit`` seconds pass)."""
        with self._changed:
            self._changed.wait_for(lambda: self.mode != SILENT, timeout=limit)

    def attempts_to(self, target: str) -> list[tuple[float, str]]:
        with self._changed:
            return [(at, action) for t, at, action in self.attempts if t == target]


def _switch_http(peer: FcmPeer | WebPushPeer, switch: Switch, is_send: Callable[[str], bool],
                 down: Callable[[Any], None]) -> None:
    """Put ``switch`` in front of a peer's HTTP handler (its sends only, not its token endpoint)."""
    handler = peer.server.RequestHandlerClass
    original = handler.do_POST

    def do_post(self: Any) -> None:
        if not is_send(self.path):
            original(self)
            return
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        action = switch.gate(target_of(self.path, body))
        if action == UP:
            self.rfile = io.BytesIO(body)
            original(self)
            return
        if action == DOWN:
            down(self)
        elif action == SILENT:
            switch.silence()
        self.close_connection = True

    handler.do_POST = do_post  # type: ignore[method-assign]


def target_of(path: str, body: bytes) -> str:
    """The FCM token or web push subscription id a request is for."""
    if path.startswith("/push/"):
        return path.rsplit("/", 1)[-1]
    try:
        return str(json.loads(body)["message"]["token"])
    except (ValueError, KeyError, TypeError):
        return "?"


def _switch_apns(peer: ApnsPeer, switch: Switch) -> None:
    """APNs multiplexes one connection: a silent stream is simply never answered, and a dropped one
    closes the connection, so the streams queued behind it are never accepted either."""
    original = peer._respond

    def respond(h2: Any, stream_id: int, request: dict[str, Any], connection: int, alpn: str | None) -> None:
        action = switch.gate(request["headers"].get(":path", "").rsplit("/", 1)[-1])
        if action == UP:
            original(h2, stream_id, request, connection, alpn)
        elif action == DOWN:
            apns_id = request["headers"].get("apns-id", "")
            h2.send_headers(stream_id, [(":status", "503"), ("apns-id", apns_id), ("content-type", "application/json")])
            h2.send_data(stream_id, b'{"reason": "ServiceUnavailable"}', end_stream=True)
        elif action == "drop":
            raise OSError("sender gone: connection dropped")

    peer._respond = respond  # type: ignore[method-assign]


def _switch_smtp(peer: SmtpPeer, switch: Switch) -> None:
    handler = peer.handler
    original = handler.handle_DATA

    async def handle_data(server: Any, session: Any, envelope: Any) -> str:
        target = envelope.rcpt_tos[0] if envelope.rcpt_tos else "?"
        action = await asyncio.get_running_loop().run_in_executor(None, switch.gate, target)
        if action == UP:
            return await original(server, session, envelope)
        return "421 4.3.0 service not available"

    handler.handle_DATA = handle_data  # type: ignore[method-assign]


class Providers:
    """SMTP, FCM, APNs and web push peers behind one switch, and the settings that point at them."""

    def __init__(self, directory: Path) -> None:
        vapid = Vapid()
        vapid.generate_keys()
        self.switch = Switch()
        self.smtp = SmtpPeer().start()
        self.fcm = FcmPeer().start()
        self.apns = ApnsPeer(directory).start()
        self.push = WebPushPeer(public_key(vapid)).start()
        _switch_smtp(self.smtp, self.switch)
        _switch_http(self.fcm, self.switch, lambda p: p.endswith("/messages:send"),
                     lambda h: h._reply(*fcm_peer.ANSWERS["unavailable"]))
        _switch_http(self.push, self.switch, lambda p: p.startswith("/push/"), lambda h: h._reply(503, "unavailable"))
        _switch_apns(self.apns, self.switch)
        self.env = {**self.smtp.env(), **self.fcm.env(self.fcm.service_account(directory / "sa.json")),
                    **self.apns.env(), "NOTIFIER_VAPID_PRIVATE_KEY": private_key(vapid),
                    "NOTIFIER_VAPID_PUBLIC_KEY": public_key(vapid), "NOTIFIER_RATE_LIMITS": NO_LIMITS}
        self._read: dict[str, int] = {}
        self._received: Counter[tuple[str, str]] = Counter()

    def stop(self) -> None:
        self.switch.set(UP)
        for peer in (self.smtp, self.fcm, self.apns, self.push):
            peer.stop()

    def received(self) -> Counter[tuple[str, str]]:
        """``(target, notification id)`` -> how many times a provider accepted it.

        Peers only ever append what they receive, so each call reads just what arrived since the last.
        """
        for name, items, key in (
                ("smtp", self.smtp.messages, lambda m: (str(m["To"]), str(m["X-Notification-Id"]))),
                ("fcm", self.fcm.state.received, lambda r: (r.token, r.message["data"]["notification_id"])),
                ("apns", self.apns.state.received, lambda r: (r.token, r.payload["id"])),
                ("webpush", self.push.state.received, lambda r: (r.subscription, r.json["id"]))):
            new = list(items[self._read.get(name, 0):])
            self._read[name] = self._read.get(name, 0) + len(new)
            self._received.update(key(item) for item in new)
        return Counter(self._received)


@pytest.fixture(scope="module")
def providers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Providers]:
    peers = Providers(tmp_path_factory.mktemp("providers"))
    yield peers
    peers.stop()


@pytest.fixture
def stack(providers: Providers, settings_env: Callable[[dict[str, str]], None]) -> dict[str, str]:
    """A Redis database of this test's own as store and broker, with every provider configured."""
    env = {**private_env(), **providers.env}
    providers.switch.set(UP)
    settings_env(env)
    return env


class Population:
    """Users with an email address and devices; what each one should receive."""

    def __init__(self, providers: Providers, users: int, platforms: Callable[[int], list[str]]) -> None:
        self.targets: dict[str, list[str]] = {}
        """user -> every provider-side target: the email address, then device tokens/subscription ids."""
        devices, prefs = Devices(), PreferenceStore()
        for i in range(users):
            user = uid(f"u{i}")
            address = f"{user}@example.test"
            prefs.set(user, {"email": address})
            self.targets[user] = [address]
            for platform in platforms(i):
                if platform == "webpush":
                    subscription = providers.push.subscribe()
                    devices.register(user, {"platform": "webpush", "subscription": subscription})
                    self.targets[user].append(WebPushPeer.id_of(subscription))
                else:
                    token = os.urandom(32).hex() if platform == "apns" else f"fcm-{os.urandom(12).hex()}"
                    devices.register(user, {"platform": platform, "token": token})
                    self.targets[user].append(token)

    def send(self, per_user: int, **extra: Any) -> dict[str, list[str]]:
        """Send ``per_user`` notifications to every user (bulk, in router batches); ids per user."""
        items = [(user, {"type": "fault", "title": f"#{k} for {user}", **extra})
                 for k in range(per_user) for user in self.targets]
        ids = send_bulk(items)
        sent: dict[str, list[str]] = {user: [] for user in self.targets}
        for (user, _), nid in zip(items, ids):
            sent[user].append(nid)
        return sent

    def expected(self, sent: dict[str, list[str]]) -> Counter[tuple[str, str]]:
        return Counter({(target, nid): 1 for user, ids in sent.items() for nid in ids
                        for target in self.targets[user]})


def inbox_counts(sent: dict[str, list[str]]) -> Counter[tuple[str, str]]:
    """``(user, notification id)`` -> how many entries of the user's inbox stream hold it."""
    box = Inbox()
    got: Counter[tuple[str, str]] = Counter()
    for user in sent:
        for _, fields in box.r.xrange(box.keys.inbox(user)):
            got[(user, fields["nid"])] += 1
    return got


def settled(env: dict[str, str]) -> bool:
    """Nothing left anywhere: broker queues, unacknowledged messages, the deferred schedule."""
    broker = redis.Redis.from_url(env["NOTIFIER_BROKER_URL"])
    queued = sum(waiting(broker, q) for q in QUEUES)
    return queued == 0 and in_flight(broker) == 0 and Inbox().r.zcard(Inbox().keys.schedule()) == 0


def losses_and_duplicates(expected: Counter[Any], got: Counter[Any]) -> tuple[list[Any], list[Any]]:
    lost = [k for k in expected if got[k] == 0]
    twice = [(k, n) for k, n in got.items() if k in expected and n > 1]
    return lost, twice


# Worker killed ------------------------------------------------------------------------------------
KILL_ENV = {"NOTIFIER_VISIBILITY_TIMEOUT_SECONDS": "5", "NOTIFIER_CLAIM_SECONDS": "3", "NOTIFIER_BATCH_SIZE": "50"}


def test_worker_killed_mid_run_of_2000_delivers_each_exactly_once(
        providers: Providers, stack: dict[str, str], settings_env: Callable[[dict[str, str]], None],
        worker_factory: Callable[..., Worker]) -> None:
    env = {**stack, **KILL_ENV}
    settings_env(env)
    population = Population(providers, 200, lambda i: [PLATFORMS[i % 3], PLATFORMS[(i + 1) % 3]][:1 + (i % 4 == 0)])
    first = worker_factory(env, concurrency=2)
    sent = population.send(10)
    expected = population.expected(sent)
    assert sum(len(ids) for ids in sent.values()) == 2000
    wait_for(lambda: sum(providers.received().values()) >= len(expected) // 3, timeout=90,
             message="a third of the deliveries")
    providers.switch.set(HOLD)
    wait_for(lambda: providers.switch.held >= 2, timeout=30, message="both pool processes inside a provider call")
    first.kill()
    providers.switch.set(UP, drop_held=True)
    at_kill = sum(providers.received().values())
    assert at_kill < len(expected), "the kill came too late to interrupt anything"

    second = worker_factory(env, concurrency=2)
    wait_for(lambda: sum(providers.received().values()) >= len(expected), timeout=120,
             message=f"all {len(expected)} provider deliveries after the restart")
    wait_for(lambda: settled(env), timeout=30, message="queues, unacked messages and schedule drained")
    wait_idle(second, timeout=30)

    lost, twice = losses_and_duplicates(expected, providers.received())
    assert (lost[:5], twice[:5]) == ([], []), f"{len(lost)} lost, {len(twice)} duplicated of {len(expected)}"
    inbox_expected = Counter({(user, nid): 1 for user, ids in sent.items() for nid in ids})
    lost, twice = losses_and_duplicates(inbox_expected, inbox_counts(sent))
    assert (lost[:5], twice[:5]) == ([], []), f"inbox: {len(lost)} lost, {len(twice)} duplicated"
    assert DeadLetters().size() == 0, DeadLetters().list(3)
    assert "Traceback" not in second.log(), second.log()[-3000:]


# Provider outage ----------------------------------------------------------------------------------
PUSH_ONLY = {"channels": list(PLATFORMS)}
OUTAGE_ENV = {"NOTIFIER_PUSH_TIMEOUT_SECONDS": "0.5", "NOTIFIER_RETRY_BACKOFF_SECONDS": "0.3",
              "NOTIFIER_RETRY_BACKOFF_MAX_SECONDS": "1.5"}


def push_targets(population: Population) -> list[str]:
    return [t for targets in population.targets.values() for t in targets[1:]]


def test_push_outage_then_recovery_delivers_everything_once_by_backed_off_retries(
        providers: Providers, stack: dict[str, str], worker_factory: Callable[..., Worker]) -> None:
    env = {**stack, **OUTAGE_ENV, "NOTIFIER_MAX_RETRIES": "10"}
    population = Population(providers, 4, lambda i: list(PLATFORMS))
    targets = push_targets(population)
    worker = worker_factory(env, concurrency=2)
    switch = providers.switch
    switch.set(DOWN)
    sent = population.send(1, **PUSH_ONLY)
    wait_for(lambda: all(len(switch.attempts_to(t)) >= 2 for t in targets), timeout=20,
             message="every device refused twice with 503")
    switch.set(SILENT)
    by_platform = [population.targets[u][1:] for u in population.targets][0]
    wait_for(lambda: all(SILENT in (a for _, a in switch.attempts_to(t)) for t in by_platform), timeout=30,
             message="a device on each platform timed out")
    got = providers.received()
    assert not any(got[(t, nid)] for t in targets for ids in sent.values() for nid in ids)
    switch.set(UP)

    expected = Counter({(t, nid): 1 for user, ids in sent.items() for nid in ids
                        for t in population.targets[user][1:]})
    wait_for(lambda: (got := providers.received()) and all(got[k] for k in expected), timeout=30,
             message="delivery after recovery")
    wait_for(lambda: settled(env), timeout=15, message="nothing left queued")
    assert losses_and_duplicates(expected, providers.received()) == ([], [])
    assert DeadLetters().size() == 0, DeadLetters().list(3)
    for target in targets:
        times = [at for at, _ in switch.attempts_to(target)]
        gaps = [b - a for a, b in zip(times, times[1:])]
        floors = [0.5 * min(1.5, 0.3 * 2 ** k) for k in range(len(gaps))]
        assert all(gap >= floor * 0.95 for gap, floor in zip(gaps, floors)), (target, gaps)
    chosen = [(int(n), float(s)) for s, n in re.findall(r"retry in ([\d.]+)s \(attempt (\d+)\)", worker.log())]
    assert {n for n, _ in chosen} >= {1, 2, 3}, chosen
    assert all(within_backoff(n - 1, delay, base=0.3, cap=1.5, rounding=0.05) for n, delay in chosen), chosen
    assert len(set(chosen)) > len({n for n, _ in chosen}), f"jittered: one attempt's delays differ ({chosen})"


def within_backoff(attempt: int, delay: float, base: float, cap: float, rounding: float = 0.0) -> bool:
    """Whether ``delay`` is one the documented backoff allows before retry ``attempt + 1``: equal jitter,
    between half and all of ``min(cap, base * 2 ** attempt)``."""
    ceiling = min(cap, base * 2 ** attempt)
    return ceiling / 2 - rounding <= delay <= ceiling + rounding


def test_backoff_doubles_up_to_the_cap_with_equal_jitter() -> None:
    """notifier.pipeline.retry.backoff: each attempt's delay is drawn from [c/2, c] with c = min(max, base * 2^attempt),
    so the typical delay doubles per attempt until the cap, and samples of one attempt spread over that range."""
    from notifier.config import get_settings
    from notifier.pipeline.retry import backoff

    with use_env({"NOTIFIER_RETRY_BACKOFF_SECONDS": "0.5", "NOTIFIER_RETRY_BACKOFF_MAX_SECONDS": "10"}):
        s = get_settings()
        samples = {attempt: [backoff(attempt, s) for _ in range(400)] for attempt in range(8)}
        hinted = [backoff(0, s, retry_after=7.0) for _ in range(50)] + [backoff(0, s, retry_after=60.0)
                                                                       for _ in range(50)]
    for attempt, delays in samples.items():
        ceiling = min(10, 0.5 * 2 ** attempt)
        assert all(within_backoff(attempt, d, base=0.5, cap=10) for d in delays), (attempt, min(delays), max(delays))
        assert min(delays) < ceiling * 0.6 and max(delays) > ceiling * 0.9, f"attempt {attempt} spreads over [c/2, c]"
        assert len(set(delays)) == len(delays), "jitter: no two samples alike"
    medians = [sorted(d)[len(d) // 2] for d in samples.values()]
    assert all(1.75 < b / a < 2.25 for a, b in zip(medians, medians[1:5])), f"doubles per attempt: {medians}"
    assert medians[5:] == pytest.approx([7.5] * 3, rel=0.1), "capped at NOTIFIER_RETRY_BACKOFF_MAX_SECONDS"
    assert min(hinted[:50]) >= 7.0 and max(hinted[50:]) <= 10, "Retry-After is honoured, up to the cap"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "notifier.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          env=os.environ.copy(), timeout=60)


def test_outage_longer_than_the_retry_budget_dead_letters_and_replay_delivers_once(
        providers: Providers, stack: dict[str, str], worker_factory: Callable[..., Worker]) -> None:
    env = {**stack, **OUTAGE_ENV, "NOTIFIER_MAX_RETRIES": "2"}
    population = Population(providers, 4, lambda i: list(PLATFORMS))
    targets = push_targets(population)
    worker = worker_factory(env, concurrency=2)
    providers.switch.set(DOWN)
    sent = population.send(2, **PUSH_ONLY)
    expected = Counter({(t, nid): 1 for user, ids in sent.items() for nid in ids
                        for t in population.targets[user][1:]})
    entries = wait_for(lambda: (e := DeadLetters().list(1000)) and len(e) >= len(expected) and e, timeout=30,
                       message=f"{len(expected)} dead letters")
    assert len(entries) == len(expected), "one dead letter per device and notification"
    odd = [(e["error"], e["attempts"]) for e in entries
           if not (e["error"].startswith("gave up: ") and "503" in e["error"] and e["attempts"] == 3)]
    assert odd == [], "every dead letter says the provider failed 3 times with 503"
    assert all(len(providers.switch.attempts_to(t)) == 3 * 2 for t in targets), "2 notifications x 3 attempts"
    got = providers.received()
    assert not any(got[k] for k in expected)

    providers.switch.set(UP)
    out = cli("dlq", "replay", "--all")
    assert out.returncode == 0 and f"queued {len(expected)} for replay" in out.stdout, out.stdout + out.stderr
    wait_for(lambda: (got := providers.received()) and all(got[k] for k in expected), timeout=20,
             message="replayed deliveries")
    wait_for(lambda: settled(env), timeout=15, message="nothing left queued")
    assert losses_and_duplicates(expected, providers.received()) == ([], [])
    assert DeadLetters().size() == 0
    again = cli("dlq", "replay", "--all")
    assert again.returncode == 0 and "queued 0 for replay" in again.stdout, again.stdout + again.stderr
    wait_idle(worker)
    assert losses_and_duplicates(expected, providers.received()) == ([], [])
