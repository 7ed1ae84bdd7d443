"""The error tree that decides what happens to a failed delivery.

``RetryableError`` is tried again with backoff; ``PermanentError`` goes to the dead-letter queue;
``InvalidTarget`` (a dead device token) removes the target and is neither retried nor dead-lettered.
Adapters turn provider answers (HTTP statuses, SMTP codes) into these at their boundary, so the retry
policy lives in one place (``workers/base.py``) and never looks at a provider's protocol.
"""

from __future__ import annotations


class NotifierError(Exception):
    """Base of every error notifier raises on purpose."""


class ConfigError(NotifierError):
    """A setting is missing or invalid: fix the environment and restart."""


class ValidationError(NotifierError, ValueError):
    """Input from outside (a payload, an argument) is not acceptable; the message says why."""


class DeliveryError(NotifierError):
    """A channel could not deliver to one target."""


class RetryableError(DeliveryError):
    """Try again later: timeouts, 429, 5xx, a dropped connection.

    ``retry_after`` (seconds) is the provider's own hint (``Retry-After``); the policy waits at least
    that long.
    """

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(DeliveryError):
    """Trying again will not help (bad credentials, payload rejected): dead-letter with this reason."""


class InvalidTarget(PermanentError):
    """The target no longer exists (unregistered token, 410): prune it, don't retry or dead-letter."""
