"""A task that runs longer than the visibility timeout and the receipt claim is neither taken back by
another worker nor sent twice: its worker keeps both alive while it runs. A killed worker's work, by
default, comes back within a minute."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from notifier import send_notification
from notifier.config import Settings
from notifier.pipeline.celeryconfig import celery_config
from notifier.pipeline.producer import producer_app
from notifier.pipeline.queues import deliver_task
from notifier.state.preferences import PreferenceStore
from tests.peers.smtp import SmtpPeer
from tests.support.helpers import Worker, own_broker_env, uid, use_env, wait_for


@pytest.mark.timeout(180)
def test_a_send_slower_than_the_visibility_timeout_and_the_claim_runs_once(
        worker_factory: Callable[..., Worker], smtp: SmtpPeer) -> None:
    env = {**own_broker_env(), **smtp.env(), "NOTIFIER_VISIBILITY_TIMEOUT_SECONDS": "5", "NOTIFIER_CLAIM_SECONDS": "2",
           "NOTIFIER_COUNTDOWN_MAX_SECONDS": "1", "NOTIFIER_SMTP_TIMEOUT_SECONDS": "30"}
    with use_env(env):
        user = uid()
        address = f"{user}@example.test"
        PreferenceStore().set(user, {"email": address})
        smtp.handler.slow[address] = 12.0  # two visibility timeouts, six claims
        first = worker_factory(env, queues="router,email", concurrency=1)
        other = worker_factory(env, queues="email", concurrency=1)
        send_notification.delay(user, {"type": "alert", "title": "slow", "channels": ["email"]})
        wait_for(lambda: smtp.to(address), timeout=40, message="the slow email")
        wait_for(lambda: _succeeded(first) + _succeeded(other) == 1, timeout=20,
                 message="the email task acked")
        assert smtp.attempts(address) == 1, "a second attempt reached the SMTP server while the first ran"
        assert len(smtp.to(address)) == 1
        assert "took back" not in first.log() + other.log()


@pytest.mark.timeout(180)
def test_a_second_run_of_a_slow_send_waits_for_the_first_instead_of_sending_again(
        worker_factory: Callable[..., Worker], smtp: SmtpPeer) -> None:
    """The same delivery task twice at once (a redelivery to a frozen worker's task, say): the first
    run's claim outlives NOTIFIER_CLAIM_SECONDS while it sends, so the second run does not send."""
    env = {**own_broker_env(), **smtp.env(), "NOTIFIER_CLAIM_SECONDS": "2", "NOTIFIER_SMTP_TIMEOUT_SECONDS": "30"}
    with use_env(env):
        worker = worker_factory(env, queues="email", concurrency=2)
        user = uid()
        address = f"{user}@example.test"
        smtp.handler.slow[address] = 8.0  # four claims long
        notification = {"id": uid("n").replace("-", ""), "type": "alert", "title": "once"}
        args = [{notification["id"]: notification}, [[user, notification["id"], address]]]
        producer_app().send_task(deliver_task("email"), args=args, queue="email")
        wait_for(lambda: smtp.attempts(address) == 1, message="the first run at the SMTP server")
        producer_app().send_task(deliver_task("email"), args=args, queue="email")
        wait_for(lambda: smtp.to(address), timeout=30, message="the email")
        wait_for(lambda: _succeeded(worker) >= 2, timeout=30, message="both runs (and any retry) acked")
        assert smtp.attempts(address) == 1 and len(smtp.to(address)) == 1


def _succeeded(worker: Worker) -> int:
    return sum(1 for line in worker.output if "notifier.deliver.email[" in line and " succeeded " in line)


def test_by_default_a_killed_workers_tasks_come_back_within_a_minute() -> None:
    defaults = {name: Settings.model_fields[name].default
                for name in ("visibility_timeout_seconds", "claim_seconds", "countdown_max_seconds")}
    settings = Settings(broker_url="redis://127.0.0.1:6379/0", **defaults)
    options = celery_config(settings)["broker_transport_options"]
    assert options["visibility_timeout"] + options["unacked_restore_interval"] <= 60
    assert settings.claim_seconds < options["visibility_timeout"], "a dead worker's claims lapse before its tasks return"
