"""The one retry policy: from a delivery report, the attempt number and the settings, which targets
are sent again after how long, and which are dead-lettered with what reason.

Pure (no Celery, no Redis): ``workers/base.py`` applies the :class:`Decision`. Retries are per
target, so only the targets that failed are sent again, after an exponential backoff with equal
jitter that honours the provider's ``Retry-After`` (up to the cap). Once ``NOTIFIER_MAX_RETRIES``
retries are used up, the targets still failing are dead-lettered, each on its own, as given up.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from notifier.channels.base import Delivery
from notifier.config import Settings
from notifier.errors import DeliveryError
from notifier.pipeline.delivery import Failure, Report

Jitter = Callable[[float, float], float]
"""Draws a number in ``[a, b]`` (``random.uniform``; a test passes its own)."""


def backoff(attempt: int, settings: Settings, retry_after: float | None = None,
            jitter: Jitter = random.uniform) -> float:
    """Seconds before retry number ``attempt + 1``: equal jitter over ``[c/2, c]`` with
    ``c = min(NOTIFIER_RETRY_BACKOFF_MAX_SECONDS, NOTIFIER_RETRY_BACKOFF_SECONDS * 2**attempt)``, and never less than
    the provider's ``retry_after`` hint (itself capped at the maximum)."""
    ceiling = min(settings.retry_backoff_max_seconds, settings.retry_backoff_seconds * 2 ** attempt)
    delay = ceiling / 2 + jitter(0, ceiling / 2)
    if retry_after is not None:
        delay = max(delay, min(retry_after, settings.retry_backoff_max_seconds))
    return delay


@dataclass(frozen=True)
class Decision:
    """What to do with a delivery report."""

    retry: list[Delivery] = field(default_factory=list)
    """Targets to send again, as one task, after :attr:`delay` seconds."""
    delay: float = 0.0
    reason: str = ""
    """Why they are retried (the last error), for the log line."""
    dead: list[Failure] = field(default_factory=list)
    """Targets dead-lettered, one dead letter each: the permanent failures, then any given up on."""
    pruned: list[tuple[Delivery, DeliveryError]] = field(default_factory=list)
    """Targets the provider says are gone (already forgotten by the channel): logged, not retried."""


def decide(report: Report, attempt: int, settings: Settings, jitter: Jitter = random.uniform) -> Decision:
    """The decision for ``report``, the outcome of attempt number ``attempt`` (0 for the first)."""
    dead = list(report.failed)
    if not report.retry:
        return Decision(dead=dead, pruned=list(report.pruned))
    if attempt >= settings.max_retries:
        dead.extend(Failure(error, delivery, gave_up=True) for delivery, error in report.retry)
        return Decision(dead=dead, pruned=list(report.pruned))
    hints = [e.retry_after for _, e in report.retry if e.retry_after is not None]
    return Decision(retry=[d for d, _ in report.retry],
                    delay=backoff(attempt, settings, max(hints) if hints else None, jitter),
                    reason=str(report.retry[-1][1]), dead=dead, pruned=list(report.pruned))
