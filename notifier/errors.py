"""The one catalogue of errors: every error a user or operator can meet, with its answer.

Each class says, in its own body, the HTTP ``status`` the gateway answers with (``None``: never an
HTTP answer, see below), a stable ``code`` (the ``error`` field of the JSON answer, the SSE ``error``
event and the WebSocket ``error`` frame), ``advice`` (one sentence: what to do), and where it
applies ``retry_seconds`` (the answer's ``Retry-After``) and ``close_code`` (the WebSocket close
code). A subclass that leaves one of ``status``, ``code`` or ``advice`` out fails at import, so a new
error cannot lack an answer; ``notifier.gateway.errors`` builds its answer table from this module.

The answer's ``message`` is the error's own text when ``expose`` is true (it already says the cause
and what to do); otherwise it is ``advice``, and the text, which may name a server, only reaches the
log.

The delivery errors (``DeliveryError`` and below) have no HTTP status on purpose: they are the
adapters' verdict on one target inside a worker (``RetryableError`` is tried again with backoff,
``PermanentError`` goes to the dead-letter queue, ``InvalidTarget`` removes the target), decided
once in the retry policy and never shown to a caller of the API. ``ClientGone`` is the live feed's
own signal that the client left; nobody is there to answer.
"""

from __future__ import annotations

from typing import Any, ClassVar

_REQUIRED = ("status", "code", "advice")


class NotifierError(Exception):
    """Base of every error notifier raises on purpose."""

    status: ClassVar[int | None] = 500
    code: ClassVar[str] = "error"
    advice: ClassVar[str] = "something went wrong in notifier; the message says what"
    expose: ClassVar[bool] = True
    retry_seconds: int | None = None
    close_code: ClassVar[int | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        missing = [name for name in _REQUIRED if name not in cls.__dict__]
        if missing:
            raise TypeError(f"{cls.__qualname__} must set {', '.join(missing)} in its class body "
                            "(see notifier.errors)")

    @property
    def public_message(self) -> str:
        """What the caller is told: the error's text if ``expose``, else :attr:`advice`."""
        return str(self) if self.expose else self.advice

    def headers(self) -> dict[str, str]:
        """HTTP headers that go with the answer (``Retry-After`` when the caller should wait)."""
        return {"Retry-After": str(self.retry_seconds)} if self.retry_seconds is not None else {}


class ConfigError(NotifierError):
    """A setting is missing or invalid: fix the environment and restart."""

    status = 500
    code = "misconfigured"
    advice = ("the server is misconfigured: the message (or the gateway's log) names the setting; "
              "fix it in the environment and restart")
    expose = False


class WorkflowFileError(ConfigError):
    """The workflows file (``NOTIFIER_WORKFLOWS``) cannot be read or says something that is not a
    workflow; the message names the file, line and step."""

    status = 500
    code = "misconfigured"
    advice = ("the workflows file is invalid: run `notifier workflows check FILE`, fix what it names, "
              "and restart")
    expose = False


class TemplateFolderError(ConfigError):
    """The templates folder (``NOTIFIER_TEMPLATES_DIR``) has a template or catalogue that does not
    compile or render with its example data; the message names the file and line."""

    status = 500
    code = "misconfigured"
    advice = ("the templates folder is invalid: run `notifier templates check`, fix what it names, "
              "and restart")
    expose = False


class ValidationError(NotifierError, ValueError):
    """Input from outside (a payload, an argument) is not acceptable; the message says why."""

    status = 422
    code = "invalid_request"
    advice = "fix the input as the message says and send it again"


class InvalidWebhook(ValidationError):
    """An event webhook subscription names a URL that cannot be posted to, or event kinds that do not
    exist; the message says which."""

    status = 422
    code = "invalid_webhook"
    advice = ("give an https URL (http only to a loopback host) and event kinds from the delivery log's "
              "list, e.g. --events sent,failed,read")


class UnknownWebhook(NotifierError):
    """No event webhook subscription has this id (never added, or removed)."""

    status = 404
    code = "unknown_webhook"
    advice = "list the subscriptions (`notifier webhooks list`, GET /v1/admin/webhooks) and use one of their ids"


class Unauthorized(NotifierError):
    """Missing or wrong credentials: a user token or the server API key."""

    status = 401
    code = "unauthorized"
    advice = ("send a valid credential: a user token from `notifier token USER` as "
              "`Authorization: Bearer TOKEN`, or the server API key (NOTIFIER_API_KEY)")
    close_code = 4401

    def headers(self) -> dict[str, str]:
        return {**super().headers(), "WWW-Authenticate": 'Bearer realm="notifier"'}


class InvalidToken(Unauthorized):
    """The user token is missing, malformed, not signed with our key, for another audience, or expired."""

    status = 401
    code = "unauthorized"
    advice = "get a fresh user token (`notifier token USER`, or your backend's token endpoint) and retry"


class TokenExpired(Unauthorized):
    """An open live connection's token expired: the stream ends and the client reconnects."""

    status = 401
    code = "token_expired"
    advice = "reconnect with a fresh token; send the last event id to resume where you were"


class InvalidLink(NotifierError):
    """An email's unsubscribe link is damaged, was not signed with our key, or carries a token made
    for something else (a login token)."""

    status = 400
    code = "invalid_link"
    advice = ("this unsubscribe link is not valid: open the whole link from the email again, or turn "
              "the emails off in the app's notification settings")


class RateLimited(NotifierError):
    """The user made more API requests than ``NOTIFIER_API_RATE_LIMIT`` allows in its window."""

    status = 429
    code = "rate_limited"
    advice = "slow down: wait the Retry-After seconds, then retry"

    def __init__(self, message: str, retry_seconds: int) -> None:
        super().__init__(message)
        self.retry_seconds = retry_seconds


class TooManyConnections(NotifierError):
    """The user already has ``NOTIFIER_MAX_CONNECTIONS_PER_USER`` open live connections."""

    status = 429
    code = "too_many_connections"
    advice = "close one of the user's open streams or sockets, then retry"
    retry_seconds = 5
    close_code = 4429


class Unavailable(NotifierError):
    """A server notifier depends on cannot be reached right now; the caller can only wait it out."""

    status = 503
    code = "unavailable"
    advice = "a server notifier needs is unreachable; retry shortly"
    retry_seconds = 2
    close_code = 1013


class StoreUnavailable(Unavailable):
    """Redis (the notification store) is unreachable; the gateway answers Redis's own errors with this."""

    status = 503
    code = "unavailable"
    advice = "the notification store (Redis) is unreachable; retry shortly"
    expose = False


class BrokerUnavailable(Unavailable):
    """The broker did not take the message: nothing was sent; try again when it is back."""

    status = 503
    code = "unavailable"
    advice = "the message broker is unreachable, so nothing was sent; retry shortly"
    expose = False


class HubUnavailable(Unavailable):
    """The gateway's hub has no Redis connection for this user right now."""

    status = 503
    code = "unavailable"
    advice = "the gateway is reconnecting to Redis; retry shortly"


class SlowConsumer(Unavailable):
    """The connection's buffer filled up: it is closed and the client resumes from its last id.

    Met only once a stream is open (SSE ``error`` event, WebSocket close 1013); the 503 is the
    answer it would get before.
    """

    status = 503
    code = "slow_consumer"
    advice = "reconnect and resume from the last event id; read events faster, or on a faster link"


class InboxReset(Unavailable):
    """The inbox stream was lost and recreated while a connection was open (Redis came back without
    its data): the connection ends, and its client's resume is answered ``recovered: false``.

    Met only once a stream is open (SSE ``error`` event, WebSocket close 1013), like :class:`SlowConsumer`.
    """

    status = 503
    code = "inbox_reset"
    advice = "reconnect and resume from the last event id, then reload the list the answer says was not recovered"


class LogUnavailable(Unavailable):
    """The delivery log's database (``NOTIFIER_DATABASE_URL``) cannot be read or written right now.

    Deliveries are not held up: their events wait in Redis and are written when it is back.
    """

    status = 503
    code = "log_unavailable"
    advice = ("the delivery log's database is unreachable (deliveries go on, their events wait in Redis); "
              "check NOTIFIER_DATABASE_URL and retry shortly")


class LogDatabaseNotUpgraded(NotifierError):
    """The delivery log's database has an older schema than this notifier (or none): PostgreSQL is
    only changed by an operator, so events wait in Redis until it is upgraded."""

    status = 503
    code = "log_not_upgraded"
    advice = "run `notifier db upgrade` against NOTIFIER_DATABASE_URL, then retry"
    expose = False


class ClientGone(NotifierError):
    """The client disconnected (the transport called ``Feed.hang_up``): stop sending. Internal."""

    status = None
    code = "client_gone"
    advice = "nothing to do: the client left and its subscription ends"


class DeliveryError(NotifierError):
    """A channel could not deliver to one target. Internal to the workers (no HTTP status)."""

    status = None
    code = "delivery_failed"
    advice = "nothing to do: the worker retries it or dead-letters it (`notifier dlq list`)"


class RetryableError(DeliveryError):
    """Try again later: timeouts, 429, 5xx, a dropped connection.

    ``retry_after`` (seconds) is the provider's own hint (``Retry-After``); the policy waits at least
    that long.
    """

    status = None
    code = "retryable"
    advice = "nothing to do: the worker retries with backoff, and dead-letters it if it keeps failing"

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(DeliveryError):
    """Trying again will not help (bad credentials, payload rejected): dead-letter with this reason."""

    status = None
    code = "permanent"
    advice = "read the reason with `notifier dlq show ID`, fix the cause, then `notifier dlq replay ID`"


class TemplateRenderError(PermanentError):
    """A notification's template failed to render for one delivery (a variable it uses is missing):
    dead-lettered with the template, line and variable, nothing half-rendered is sent."""

    status = None
    code = "template_failed"
    advice = ("read the template, line and variable with `notifier dlq show ID`, fix the template or the "
              "notification's data, then `notifier dlq replay ID`")

    def __init__(self, message: str, template: str = "", line: int | None = None,
                 variable: str | None = None) -> None:
        super().__init__(message)
        self.template = template
        self.line = line
        self.variable = variable


class InvalidTarget(PermanentError):
    """The target no longer exists (unregistered token, 410): prune it, don't retry or dead-letter."""

    status = None
    code = "invalid_target"
    advice = "nothing to do: the dead device is removed; the app registers it again when it next runs"


class OptedOut(InvalidTarget):
    """The recipient asked for no more messages on this channel (replied STOP to an SMS): the channel
    is turned off in their preferences, with the reason; not retried, not dead-lettered."""

    status = None
    code = "opted_out"
    advice = ("nothing to do: the recipient unsubscribed at their carrier (replied STOP); once they reply "
              "START, turn the channel on again in their preferences")


def catalogue() -> list[type[NotifierError]]:
    """Every error class, base first, each after its parent (a depth-first walk of the class tree)."""
    found: list[type[NotifierError]] = []

    def walk(cls: type[NotifierError]) -> None:
        if cls not in found:
            found.append(cls)
            for sub in cls.__subclasses__():
                walk(sub)

    walk(NotifierError)
    return found


def markdown_table() -> str:
    """README's "Errors" table: each error a caller can be answered with (status, code, what to do)."""
    rows = ["| Error | HTTP | `error` code | WebSocket close | What to do |", "|---|---|---|---|---|"]
    for cls in catalogue()[1:]:
        if cls.status is not None:
            close = str(cls.close_code) if cls.close_code else ""
            rows.append(f"| `{cls.__name__}` | {cls.status} | `{cls.code}` | {close} | {cls.advice} |")
    return "\n".join(rows)
