"""A worker SIGKILLed as a digest closes: a new worker finishes it, one digest with every event."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from notifier import send_notification
from notifier.state.preferences import PreferenceStore
from notifier.workflows.runs import Runs
from tests.peers.smtp import SmtpPeer
from tests.support.helpers import private_env, start_worker, uid, wait_for, wait_idle

WORKFLOWS = "burst:\n  steps:\n    - digest: {window: 3s}\n    - channel: email\n"


@pytest.fixture
def flow_env(tmp_path: Path, smtp: SmtpPeer, settings_env: Any) -> dict[str, str]:
    (tmp_path / "workflows.yaml").write_text(WORKFLOWS)
    env = {**private_env(), **smtp.env(), "NOTIFIER_WORKFLOWS": str(tmp_path / "workflows.yaml"),
           "NOTIFIER_VISIBILITY_TIMEOUT_SECONDS": "5", "NOTIFIER_CLAIM_SECONDS": "3"}
    settings_env(env)
    return env


@pytest.mark.parametrize("after_due", [0.3, 0.7, 1.1])
def test_a_worker_killed_as_the_digest_closes_still_sends_exactly_one(flow_env: dict[str, str], smtp: SmtpPeer,
                                                                      after_due: float) -> None:
    """Killed 0.3-1.1 s after the digest is due: its timer is released within a second, so the close
    is before, in or after the kill, by turns. Every event has joined first (the positive signal)."""
    user = uid()
    address = f"{user}@example.test"
    PreferenceStore().set(user, {"email": address})
    victim = start_worker(flow_env)
    rescuer = None
    try:
        ids = [send_notification.delay(user, {"type": "burst", "title": f"e{i}"}).id for i in range(30)]
        wait_for(lambda: sum(1 for i in ids if (r := Runs().get(user, i)) and r.status == "done") == 29,
                 message="29 events joined the digest")
        owner = next(r for i in ids if (r := Runs().get(user, i)) and r.status == "waiting")
        assert owner.until is not None
        time.sleep(max(0.0, owner.until - time.time()) + after_due)
        os.killpg(victim.proc.pid, signal.SIGKILL)
        victim.proc.wait(10)
        rescuer = start_worker(flow_env)
        wait_for(lambda: (r := Runs().get(user, owner.run_id)) and r.status == "done", timeout=40,
                 message="the owner's run done")
        wait_for(lambda: smtp.to(address), timeout=10, message="the digest email")
        wait_idle(rescuer)
    finally:
        victim.stop()
        if rescuer is not None:
            rescuer.stop()
    done = Runs().get(user, owner.run_id)
    assert done is not None and done.log[0] == {**done.log[0], "outcome": "closed", "detail": "30 events"}
    assert len(smtp.to(address)) == 1
