"""The retry policy (notifier/pipeline/retry.py) as a pure function: no Celery, no Redis, no worker."""

from __future__ import annotations

import pytest

from notifier.channels import Delivery
from notifier.config import Settings
from notifier.errors import InvalidTarget, PermanentError, RetryableError
from notifier.models import Notification
from notifier.pipeline.delivery import Failure, Report
from notifier.pipeline.retry import backoff, decide

SETTINGS = Settings(retry_backoff_seconds=1.0, retry_backoff_max_seconds=8.0, max_retries=3)
LOW = lambda a, b: a
HIGH = lambda a, b: b


def delivery(target: str, nid: str = "n1") -> Delivery:
    return Delivery("alice", Notification(id=nid, type="t", title="x"), target)


def test_backoff_doubles_per_attempt_with_equal_jitter_up_to_the_cap() -> None:
    assert [backoff(a, SETTINGS, jitter=HIGH) for a in range(6)] == [1, 2, 4, 8, 8, 8]
    assert [backoff(a, SETTINGS, jitter=LOW) for a in range(6)] == [0.5, 1, 2, 4, 4, 4]


def test_backoff_honours_retry_after_up_to_the_cap() -> None:
    assert backoff(0, SETTINGS, retry_after=5.0, jitter=HIGH) == 5.0
    assert backoff(3, SETTINGS, retry_after=5.0, jitter=HIGH) == 8.0, "the backoff when it is longer"
    assert backoff(0, SETTINGS, retry_after=600.0, jitter=HIGH) == 8.0, "a hint is capped at the maximum"


def test_retryable_targets_retry_together_after_the_longest_hint() -> None:
    a, b, gone, bad = delivery("a"), delivery("b"), delivery("gone"), delivery("bad")
    report = Report(delivered=[delivery("ok")],
                    retry=[(a, RetryableError("busy", retry_after=3.0)), (b, RetryableError("later"))],
                    pruned=[(gone, InvalidTarget("unregistered"))],
                    failed=[Failure(PermanentError("refused"), bad)])
    decision = decide(report, 0, SETTINGS, jitter=LOW)
    assert decision.retry == [a, b] and decision.delay == 3.0 and decision.reason == "later"
    assert [(f.delivery, f.reason) for f in decision.dead] == [(bad, "refused")]
    assert decision.pruned == [(gone, report.pruned[0][1])], "pruned targets are neither retried nor dead"


def test_retries_used_up_dead_letter_each_target_as_given_up() -> None:
    a, b = delivery("a"), delivery("b")
    report = Report(retry=[(a, RetryableError("busy")), (b, RetryableError("timeout"))])
    assert decide(report, SETTINGS.max_retries - 1, SETTINGS).retry == [a, b], "the last retry is still sent"
    decision = decide(report, SETTINGS.max_retries, SETTINGS)
    assert decision.retry == [] and decision.delay == 0
    assert [(f.delivery, f.reason, f.gave_up) for f in decision.dead] == [
        (a, "gave up: busy", True), (b, "gave up: timeout", True)]


def test_no_retries_means_nothing_is_sent_again() -> None:
    report = Report(retry=[(delivery("a"), RetryableError("busy"))])
    decision = decide(report, 0, Settings(max_retries=0))
    assert decision.retry == [] and [f.reason for f in decision.dead] == ["gave up: busy"]


LOST = delivery("a", "n9")


@pytest.mark.parametrize("failure, args", [
    (Failure(PermanentError("x"), LOST), [{"n9": LOST.notification.to_dict()}, [["alice", "n9", "a"]]]),
    (Failure(PermanentError("x"), row=["bad", "row"]), [{}, [["bad", "row"]]]),
])
def test_a_failure_replays_as_its_own_task(failure: Failure, args: list) -> None:
    assert failure.args() == args
    assert failure.notification_id == ("n9" if failure.delivery else "?")
