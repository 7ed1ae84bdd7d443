"""Adding a channel is one module plus an entry point: a throwaway channel (tests/support/throwaway.py),
installed like a user's package would install it, is routed, retried, dead-lettered and shown in
preferences by a real worker, the gateway and the CLI, with no edit anywhere in notifier."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import httpx
import orjson
import pytest

from notifier import send_notification
from notifier.channels import registry
from notifier.redis import store
from notifier.state.deadletters import DeadLetters, readable
from notifier.state.preferences import PreferenceStore
from tests.support import throwaway
from tests.support.gateway_support import Gateway, token
from tests.support.helpers import ROOT, Worker, own_broker_env, uid, use_env, wait_for

ENTRY_POINT = "throwaway = tests.support.throwaway:Throwaway"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The throwaway channel's distribution metadata on the path of this process and of every
    process it starts (what ``pip install`` of a package declaring the entry point leaves behind),
    with a store and broker of their own: the session's shared worker does not know the channel."""
    site = tmp_path_factory.mktemp("site")
    info = site / "notifier_throwaway-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: notifier-throwaway\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{registry.GROUP}]\n{ENTRY_POINT}\n")
    sys.path.insert(0, str(site))
    registry.reload()
    env = {**own_broker_env(), "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    try:
        with use_env(env):
            yield env
    finally:
        sys.path.remove(str(site))
        registry.reload()


@pytest.fixture(scope="module")
def channel_worker(installed: dict[str, str]) -> Iterator[Worker]:
    from tests.support.helpers import start_worker

    w = start_worker(installed, "router,realtime,throwaway")
    yield w
    w.stop()


def settled(worker: Worker, *task_ids: str) -> None:
    """Wait until the worker has finished every task it received (``wait_idle`` cannot send its marker
    to the throwaway queue: this process read its queue list before the channel was installed)."""
    worker.wait_finished(*task_ids)


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "notifier.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, **env}, timeout=60, check=False)


def sent() -> list[list[str]]:
    return [orjson.loads(raw) for raw in store.get_redis().lrange(throwaway.sent_key(), 0, -1)]


def dead_letters(nid: str) -> list[dict]:
    return [readable(e) for e in DeadLetters().list(1000) if nid in json.dumps(e["args"])]


def note(**extra: object) -> dict[str, object]:
    return {"type": "test", "title": "hello", "channels": ["throwaway"], **extra}


def test_an_added_channel_is_routed_retried_and_dead_lettered(channel_worker: Worker) -> None:
    user = uid()
    plain, flaky, refused, big = (uid("n") for _ in range(4))
    for nid, extra in ((plain, {}), (flaky, {"data": {"fail": "once"}}), (refused, {"data": {"fail": "always"}}),
                       (big, {"body": "x" * throwaway.MAX_PAYLOAD})):
        send_notification.delay(user, note(id=nid, **extra))
    wait_for(lambda: {plain, flaky} <= {nid for _, nid in sent()}, timeout=20, message="throwaway sends")
    refused_entry = wait_for(lambda: dead_letters(refused), message="dead letter of the refused one")[0]
    big_entry = wait_for(lambda: dead_letters(big), message="dead letter of the oversized one")[0]
    settled(channel_worker, plain, flaky, refused, big)

    assert sorted(nid for _, nid in sent()) == sorted([plain, flaky]), "each delivered once"
    r = store.get_redis()
    assert int(r.get(throwaway.attempts_key(flaky))) == 2, "failed once, retried once"
    assert refused_entry["task"] == "notifier.deliver.throwaway" and refused_entry["channel"] == "throwaway"
    assert refused_entry["error_type"] == "PermanentError" and "refuses this one" in refused_entry["error"]
    assert big_entry["error"].startswith("throwaway payload is ") and f"limit is {throwaway.MAX_PAYLOAD}" \
        in big_entry["error"], big_entry
    assert r.get(throwaway.attempts_key(big)) is None, "an oversized payload is refused unsent"
    assert dead_letters(plain) == [] and dead_letters(flaky) == []
    log = channel_worker.log()
    assert "throwaway queued" in log and "retry in" in log


def test_an_added_channel_shows_in_preferences_and_is_honoured(installed: dict[str, str],
                                                              channel_worker: Worker) -> None:
    user = uid()
    turned_off = cli(installed, "prefs", "set", user, "--channel", "throwaway=off", "--json")
    assert turned_off.returncode == 0, turned_off.stderr
    shown = cli(installed, "prefs", "get", user, "--json")
    assert json.loads(shown.stdout)["channels"] == {"throwaway": False}, shown
    assert PreferenceStore().get(user).channels == {"throwaway": False}

    gateway = Gateway(installed).wait_ready()
    try:
        auth = {"Authorization": f"Bearer {token(user)}"}
        listed = httpx.get(f"{gateway.url}/v1/channels", headers=auth).json()["channels"]
        assert {"name": "throwaway", "devices": False, "interruptive": False} in listed
        assert [c["name"] for c in listed if c["devices"]] == ["fcm", "apns", "webpush", "webhook", "apprise",
                                                               "slack", "teams", "discord"]
        assert httpx.get(f"{gateway.url}/v1/preferences", headers=auth).json()["channels"] == {"throwaway": False}
    finally:
        gateway.stop()

    nid = uid("n")
    send_notification.delay(user, {"type": "test", "title": "to the default channels", "id": nid})
    settled(channel_worker, nid)
    assert "throwaway channel_disabled" in channel_worker.log()
    assert nid not in {n for _, n in sent()}


def test_a_channel_without_an_entry_point_is_unknown() -> None:
    with pytest.raises(Exception, match="unknown channel 'pigeon'; choose from realtime, email"):
        registry.check("pigeon")
