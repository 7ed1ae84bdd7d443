"""One settings object, read once from ``NOTIFIER_*`` environment variables.

Every part of notifier (producers, workers, gateway, CLI) reads configuration through
:func:`get_settings`; nothing else looks at the environment. A bad value fails at start with
a message naming the variable, never deep inside a task.

The settings come in sections, one class each (store, pipeline, email, push, webhooks, SMS, chat,
delivery log, gateway, operations), composed into :class:`Settings` by inheritance: the variables stay flat
(``NOTIFIER_SMTP_HOST``) and so do the attributes (``get_settings().smtp_host``). Each field's
docstring is its README line (:func:`markdown_table`). Durations end in ``_seconds``, sizes in
``_bytes``; a variable set under an old name stops the start with its new one (:data:`RENAMED`).
Values no operator needs to choose are constants where they are used, not settings.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import re
from collections.abc import Mapping
from email.headerregistry import Address
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from notifier import mailboxes
from notifier.errors import ConfigError
from notifier.redis import urls

_RATE = re.compile(r"\s*(\w+)\s*=\s*(\d+)\s*/\s*(\d+)\s*")


def _shown(text: str) -> dict[str, Any]:
    """A field's default as README shows it, when the value itself would mislead (``""`` meaning "derived")."""
    return {"shown": text}


class _Section(BaseSettings):
    """How every section is read: ``NOTIFIER_`` plus the field name, unknown variables ignored."""

    model_config = SettingsConfigDict(env_prefix="NOTIFIER_", extra="ignore", frozen=True,
                                      use_attribute_docstrings=True)
    title: ClassVar[str]
    """The section's heading in README's table."""


class StoreSettings(_Section):
    """Where state lives and where tasks travel: the Redis store and the Celery broker."""

    title = "Store and broker"

    redis_url: str = "redis://127.0.0.1:6379/0"
    """the store (inboxes, preferences, devices, schedule, dead letters): `redis://`, `rediss://`,
    `redis+cluster://[user:password@]h1:7000,h2:7001`,
    `redis+sentinel://[user:password@]s1:26379,s2:26379/mymaster/0[?sentinel_password=...]`
    (see "Growing from one box to many")"""
    broker_url: str = Field("", json_schema_extra=_shown("the Redis URL"))
    """Celery broker: `redis://...` or `amqp://user:pass@host:5672/vhost` (required when the store is a
    Cluster/Sentinel URL)"""
    result_backend: str = Field("", json_schema_extra=_shown("the store or broker Redis, else `rpc://`"))
    """Celery results (only `dlq replay --wait` reads them)"""
    key_prefix: str = Field("notifier", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    """prefix of every Redis key"""

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str) -> str:
        try:
            urls.parse(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("broker_url", "result_backend")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if value and "://" not in value:
            raise ValueError(f"{urls.redact(value)!r} is not a URL (e.g. redis://127.0.0.1:6379/0 or "
                             "amqp://user:password@host:5672//)")
        return value

    @model_validator(mode="after")
    def _check_broker(self) -> StoreSettings:
        if not self.broker_url and not _plain_redis(self.redis_url):
            raise ValueError("NOTIFIER_BROKER_URL must be set when NOTIFIER_REDIS_URL is a Cluster or Sentinel "
                             "URL (Celery's broker cannot use it): use a plain redis:// or amqp:// broker")
        return self

    @property
    def broker(self) -> str:
        """The Celery broker: ``NOTIFIER_BROKER_URL``, or the store's Redis when unset."""
        return self.broker_url or self.redis_url

    @property
    def results(self) -> str:
        """Celery's result backend (only ``notifier dlq replay --wait`` reads results)."""
        if self.result_backend:
            return self.result_backend
        for url in (self.redis_url, self.broker):
            if _plain_redis(url):
                return url
        return "rpc://"


class PipelineSettings(_Section):
    """The send path: which channels, how fast, how often retried, what is remembered and how long,
    and how soon a dead worker's tasks come back."""

    title = "Pipeline"

    default_channels: str = Field("", json_schema_extra=_shown("every channel"))
    """channels used when a notification names none (default: all in the registry, added ones too)"""
    rate_limits: str = ("realtime=120/60,email=20/3600,fcm=60/3600,apns=60/3600,webpush=60/3600,"
                         "sms=10/3600,slack=60/3600,teams=60/3600,discord=60/3600,apprise=60/3600")
    """per user per channel: `LIMIT/SECONDS`"""
    workflows: str = ""
    """a YAML or TOML file of workflows per notification type (`notifier workflows check FILE`); types
    without one go to every enabled channel at once"""
    templates_dir: str = ""
    """a folder of Jinja2 templates per notification type and channel, with gettext catalogues per locale
    (`notifier templates check`; see "Templates and locales"); empty: only the built-in email layout"""
    default_locale: str = "en"
    """the locale of users whose preferences name none, and the end of every fallback chain"""
    batch_size: int = Field(500, ge=1, le=10_000)
    """recipients per router/delivery task"""
    inbox_max_len: int = Field(1000, ge=10, le=1_000_000)
    """inbox cap per user (trimmed in batches)"""
    idempotency_ttl_seconds: int = Field(86400, ge=1)
    """seconds an idempotency key is remembered"""
    idempotency_pending_ttl_seconds: int = Field(30, ge=1)
    """seconds a producer's claim on a key holds until the router takes it over; a producer that fails
    before publishing releases it, one that dies blocks the key this long"""
    receipt_ttl_seconds: int = Field(7 * 86400, ge=60)
    """seconds a delivery receipt prevents a second send"""
    max_retries: int = Field(5, ge=0, le=100)
    """retries of a retryable failure before dead-lettering"""
    retry_backoff_seconds: float = Field(2.0, gt=0)
    """first backoff (doubles each attempt, with jitter)"""
    retry_backoff_max_seconds: float = Field(3600.0, gt=0)
    """longest backoff"""
    countdown_max_seconds: float = Field(30.0, ge=0)
    """waits up to this use Celery's countdown; longer ones the Redis schedule (must stay below the
    visibility timeout; the tests' workers take 2, to send deferred messages through the schedule within
    seconds)"""
    visibility_timeout_seconds: int = Field(50, ge=5)
    """Redis broker: a task a killed or frozen worker held waits this long before another worker takes
    it back (a live worker's tasks never expire)"""
    claim_seconds: int = Field(30, ge=1)
    """a delivery claimed by a worker that died blocks other attempts this long (a live worker renews its
    claims while sending); on RabbitMQ, which returns a dead worker's tasks at once, this alone decides
    how soon they send. Keep it below the visibility timeout"""
    prefetch_multiplier: int = Field(4, ge=1, le=1000)
    """Celery prefetch per worker process"""

    @field_validator("default_locale")
    @classmethod
    def _check_locale(cls, value: str) -> str:
        from notifier.templates.locales import parse_locale, tag

        return tag(parse_locale(value))

    @field_validator("rate_limits")
    @classmethod
    def _check_rates(cls, value: str) -> str:
        parse_rate_limits(value)
        return value

    @field_validator("default_channels")
    @classmethod
    def _check_channels(cls, value: str) -> str:
        names = [c.strip() for c in value.split(",") if c.strip()]
        known = _channel_names()
        unknown = sorted(set(names) - set(known))
        if unknown:
            raise ValueError(f"unknown channel(s) {unknown}; choose from {', '.join(known)}")
        return ",".join(names)

    @model_validator(mode="after")
    def _check_backoff(self) -> PipelineSettings:
        if self.retry_backoff_max_seconds < self.retry_backoff_seconds:
            raise ValueError("NOTIFIER_RETRY_BACKOFF_MAX_SECONDS must be >= NOTIFIER_RETRY_BACKOFF_SECONDS")
        if self.countdown_max_seconds >= self.visibility_timeout_seconds:
            raise ValueError("NOTIFIER_COUNTDOWN_MAX_SECONDS must be below NOTIFIER_VISIBILITY_TIMEOUT_SECONDS: "
                             "a Celery countdown longer than the visibility timeout runs the task twice")
        return self

    @property
    def limits(self) -> dict[str, tuple[int, int]]:
        """Per-channel ``(limit, window_seconds)``."""
        return parse_rate_limits(self.rate_limits)

    @property
    def channels(self) -> tuple[str, ...]:
        """Channels a notification goes to when it names none."""
        return tuple(self.default_channels.split(",")) if self.default_channels else _channel_names()


class EmailSettings(_Section):
    """The SMTP server the email channel sends through (``notifier/channels/email.py``)."""

    title = "Email"

    smtp_host: str = "127.0.0.1"
    """SMTP server host"""
    smtp_port: int = Field(25, ge=1, le=65535)
    """SMTP server port"""
    smtp_user: str = ""
    """SMTP login (skipped when empty)"""
    smtp_password: str = ""
    """SMTP password"""
    smtp_from: str = "notifier@localhost"
    """sender: `address` or `Display Name <address>`"""
    smtp_from_by_type: str = Field("", json_schema_extra=_shown("none"))
    """senders for some notification types, `TYPE=SENDER` items separated by commas
    (`comment=Comments <comments@example.com>,billing=billing@example.com`; quote a display name that
    holds a comma); other types use `NOTIFIER_SMTP_FROM`"""
    smtp_tls: Literal["none", "starttls", "ssl"] = "none"
    """`none`, `starttls` or `ssl`"""
    smtp_timeout_seconds: float = Field(10.0, gt=0)
    """how long one SMTP connection or command may take"""

    @field_validator("smtp_from")
    @classmethod
    def _check_from(cls, value: str) -> str:
        mailboxes.mailbox(value, "sender")
        return value

    @field_validator("smtp_from_by_type")
    @classmethod
    def _check_from_by_type(cls, value: str) -> str:
        mailboxes.senders_by_type(value)
        return value

    def sender(self, notification_type: str) -> Address:
        """The ``From`` of an email about ``notification_type``."""
        return self._senders.get(notification_type) or mailboxes.mailbox(self.smtp_from, "sender")

    @functools.cached_property
    def _senders(self) -> dict[str, Address]:
        return mailboxes.senders_by_type(self.smtp_from_by_type)


class PushSettings(_Section):
    """Credentials and endpoints of the push providers (``notifier/channels/fcm.py``, ``apns.py``,
    ``webpush.py``)."""

    title = "Push"

    fcm_credentials: str = ""
    """path to the Firebase service-account JSON"""
    fcm_project_id: str = Field("", json_schema_extra=_shown("from the credentials"))
    """Firebase project"""
    fcm_endpoint: str = "https://fcm.googleapis.com"
    """FCM base URL (a private gateway; the tests' worker processes point it at their peer)"""
    apns_key_file: str = ""
    """APNs token auth: the .p8 key file"""
    apns_key_id: str = ""
    """APNs token auth: the key's id"""
    apns_team_id: str = ""
    """APNs token auth: your team id"""
    apns_topic: str = ""
    """default topic (the app's bundle id)"""
    apns_use_sandbox: bool = False
    """Apple's development environment"""
    apns_host: str = Field("", json_schema_extra=_shown("Apple's"))
    """another APNs host (a private gateway; the tests' worker processes point it at their peer)"""
    apns_port: int = Field(443, ge=1, le=65535)
    """the APNs port"""
    apns_ca_file: str = Field("", json_schema_extra=_shown("system CAs"))
    """CA bundle that APNs' certificate is checked against, instead of the system CAs"""
    vapid_private_key: str = ""
    """web push private key (`notifier vapid generate`)"""
    vapid_public_key: str = ""
    """web push public key (`notifier vapid generate`)"""
    vapid_subject: str = "mailto:ops@example.com"
    """contact the push services may use"""
    push_timeout_seconds: float = Field(10.0, gt=0)
    """how long one provider request may take"""
    ca_file: str = Field("", json_schema_extra=_shown("system CAs"))
    """extra CA bundle, trusted besides the system CAs, for FCM (sends and OAuth token requests), web
    push, webhook, the SMS providers' and the chat channels' HTTPS"""


class ChatSettings(_Section):
    """The chat channels (``notifier/channels/slack.py``, ``teams.py``, ``discord.py``); Teams and
    Discord targets are the incoming-webhook URLs users and groups register, so they need no setting."""

    title = "Chat"

    slack_bot_token: str = Field("", json_schema_extra=_shown("none"))
    """Slack bot token (`xoxb-...`, scope `chat:write`) that posts to the registered member and channel ids"""
    slack_base_url: str = "https://slack.com"
    """Slack Web API base URL (a private gateway; the tests' worker processes point it at their peer)"""

    @field_validator("slack_base_url")
    @classmethod
    def _check_slack_base(cls, value: str) -> str:
        parts = urlsplit(value)
        host = parts.hostname or ""
        if not host or not (parts.scheme == "https" or (parts.scheme == "http" and is_loopback(host))):
            raise ValueError(f"{value!r} is not an https URL like https://slack.com (plain http only to a "
                             "loopback host)")
        return value.rstrip("/")


class WebhookSettings(_Section):
    """Where the webhook, Apprise, Teams and Discord channels may post (``notifier/channels/webhook.py``,
    ``apprise.py``, ``teams.py``, ``discord.py``)."""

    title = "Webhooks"

    webhook_allow_private: bool = False
    """let webhooks reach private, loopback, link-local and other non-public addresses (checked on the
    connected address, so a name resolving to one is refused too), and Apprise URLs name such an
    address; off, a user cannot point notifier at your internal services. On for a receiver inside your
    network, or on your machine in development"""


class SmsSettings(_Section):
    """The SMS provider the sms channel sends through (``notifier/channels/sms.py``): Twilio or Vonage."""

    title = "SMS"

    sms_provider: Literal["twilio", "vonage"] = "twilio"
    """`twilio` (Messages API) or `vonage` (SMS API)"""
    sms_from: str = ""
    """sender: a number of your account in E.164 (`+15017122661`) or an alphanumeric sender id where the
    destination country allows one (Twilio may use `NOTIFIER_SMS_TWILIO_MESSAGING_SERVICE_SID` instead)"""
    sms_twilio_account_sid: str = ""
    """Twilio Account SID (`AC...`): the API's basic-auth user and part of its URL"""
    sms_twilio_auth_token: str = ""
    """Twilio auth token: the API's basic-auth password; the gateway checks status callbacks'
    `X-Twilio-Signature` with it"""
    sms_twilio_messaging_service_sid: str = ""
    """Twilio Messaging Service (`MG...`) to send from instead of `NOTIFIER_SMS_FROM`"""
    sms_twilio_base_url: str = "https://api.twilio.com"
    """Twilio API base URL (a private gateway; the tests point it at their peer)"""
    sms_vonage_api_key: str = ""
    """Vonage API key"""
    sms_vonage_api_secret: str = ""
    """Vonage API secret"""
    sms_vonage_base_url: str = "https://rest.nexmo.com"
    """Vonage SMS API base URL (a private gateway; the tests point it at their peer)"""
    sms_default_region: str = Field("", json_schema_extra=_shown("none (numbers need +country)"))
    """region (ISO 3166 alpha-2, `DE`) that phone numbers written without `+` and country code are read
    in; unset, such numbers are refused"""
    sms_max_segments: int = Field(3, ge=1, le=10)
    """SMS parts one notification may take (153 GSM-7 or 67 UCS-2 characters each once split); a longer
    text is cut to fit"""
    sms_timeout_seconds: float = Field(10.0, gt=0)
    """how long one SMS provider request may take"""

    @field_validator("sms_default_region")
    @classmethod
    def _check_region(cls, value: str) -> str:
        from notifier.phones import check_region

        return check_region(value)

    @field_validator("sms_twilio_base_url", "sms_vonage_base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError(f"{value!r} is not an http(s) base URL like https://api.twilio.com")
        return value.rstrip("/")


class DeliveryLogSettings(_Section):
    """The delivery log (``notifier/deliverylog``): every decision and outcome as an event, written to a
    database off the delivery path."""

    title = "Delivery log"

    delivery_log: bool = True
    """record every decision and outcome (`notifier status`, `notifier log`, event webhooks); off, no
    event is written"""
    database_url: str = Field("", json_schema_extra=_shown("SQLite file `~/.local/state/notifier/"
                                                           "log.sqlite3` (`$XDG_STATE_HOME`)"))
    """SQLAlchemy URL of the log's database, e.g. `postgresql+psycopg://user@host/db` (run
    `notifier db upgrade` once, and after each upgrade of notifier)"""
    log_retention_days: int = Field(30, ge=1, le=3650)
    """events older than this are deleted (a periodic job, in batches)"""
    event_webhook_disable_days: int = Field(5, ge=1, le=365)
    """an event webhook endpoint failing without a success for this many days is disabled (with a log
    line; `notifier webhooks enable ID` turns it on again)"""


class GatewaySettings(_Section):
    """The gateway (``notifier/gateway``): its address, tokens, and the limits that protect it."""

    title = "Gateway"

    secret_key: str = Field("", json_schema_extra=_shown("none (required outside dev mode)"))
    """signs user tokens"""
    api_key: str = Field("", json_schema_extra=_shown("none"))
    """server key for `POST /v1/notify`"""
    dev_mode: bool = False
    """allows a random per-process secret key (set by `notifier dev`)"""
    gateway_host: str = "127.0.0.1"
    """`notifier gateway` address"""
    gateway_port: int = Field(8000, ge=1, le=65535)
    """`notifier gateway` port"""
    token_ttl_seconds: int = Field(3600, ge=10)
    """how long a token issued without `--ttl` stays valid"""
    max_connections_per_user: int = Field(20, ge=1)
    """open SSE/WebSocket connections per user"""
    heartbeat_seconds: float = Field(15.0, gt=0)
    """SSE heartbeat comments / WebSocket pings (no Pong within as long: closed)"""
    client_buffer: int = Field(256, ge=1)
    """events buffered per slow client before it is disconnected"""
    send_timeout_seconds: float = Field(30.0, gt=0)
    """how long one write to a live client may wait (its socket full, the client not reading) before the
    gateway drops it; it resumes from its last id"""
    max_request_bytes: int = Field(64 * 1024, ge=1024)
    """request body limit (413 above)"""
    api_rate_limit: str = Field("600/60", pattern=r"^\d+/\d+$")
    """HTTP API requests per user, `LIMIT/SECONDS` (429 with `Retry-After` above)"""
    handshake_timeout_seconds: float = Field(5.0, gt=0)
    """how long a connection has to send a complete request head (a WebSocket upgrade's too) before it
    gets 408 and is closed; also how long a closed WebSocket waits for the client's Close reply"""
    max_pending_handshakes: int = Field(1000, ge=1)
    """connections per gateway process still sending their request head (not yet authenticated); a new
    one over that closes the one waiting longest (503)"""
    public_url: str = Field("", json_schema_extra=_shown("none (emails carry no unsubscribe link)"))
    """the gateway's address as users reach it, `https://notify.example.com` (a path prefix may follow);
    emails link to `/v1/unsubscribe/...` there (`List-Unsubscribe`). `http://` only for a loopback
    host (127.0.0.1, ::1, localhost: development)"""

    @field_validator("public_url")
    @classmethod
    def _check_public_url(cls, value: str) -> str:
        return public_base(value)

    @model_validator(mode="after")
    def _check_link_key(self) -> GatewaySettings:
        if self.public_url and not self.secret_key:
            raise ValueError("NOTIFIER_PUBLIC_URL needs NOTIFIER_SECRET_KEY: the workers sign the emails' unsubscribe "
                             "links with it and the gateway checks them, so both need the same key")
        return self

    def sms_status_url(self) -> str:
        """Where Twilio posts an SMS's delivery status (``NOTIFIER_PUBLIC_URL`` must be set)."""
        return f"{self.public_url}/v1/sms/twilio/status"

    def unsubscribe_url(self, token: str) -> str:
        """The link an email's ``List-Unsubscribe`` names (``NOTIFIER_PUBLIC_URL`` must be set)."""
        return f"{self.public_url}/v1/unsubscribe/{token}"

    @property
    def api_limit(self) -> tuple[int, int]:
        """``(limit, window_seconds)`` of HTTP API requests per user."""
        limit, window = self.api_rate_limit.split("/")
        return int(limit), max(1, int(window))


class OperationsSettings(_Section):
    """What operators watch: logs, the workers' metrics endpoint, Flower's login."""

    title = "Operations"

    log_json: bool = False
    """one JSON object per log line"""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """`DEBUG`, `INFO`, `WARNING`, `ERROR`"""
    worker_metrics_port: int = Field(0, ge=0, le=65535, json_schema_extra=_shown("`0` (off)"))
    """a worker's Prometheus endpoint (one port per worker on a host); prefork children share their
    metric files in a fresh temporary folder, or in `PROMETHEUS_MULTIPROC_DIR` when that is set"""
    flower_user: str = Field("", json_schema_extra=_shown("none"))
    """Flower basic auth user (`celery -A workers flower`)"""
    flower_password: str = Field("", json_schema_extra=_shown("none"))
    """Flower basic auth password"""


class Settings(StoreSettings, PipelineSettings, EmailSettings, PushSettings, WebhookSettings, SmsSettings,
               ChatSettings, DeliveryLogSettings, GatewaySettings, OperationsSettings):
    """Configuration for every notifier process: every section's fields, read at once."""


SECTIONS: tuple[type[_Section], ...] = (StoreSettings, PipelineSettings, EmailSettings, PushSettings,
                                        WebhookSettings, SmsSettings, ChatSettings, DeliveryLogSettings,
                                        GatewaySettings, OperationsSettings)
"""README's order of the sections."""

RENAMED: Mapping[str, str] = {
    "NOTIFIER_SMTP_TIMEOUT": "NOTIFIER_SMTP_TIMEOUT_SECONDS",
    "NOTIFIER_PUSH_TIMEOUT": "NOTIFIER_PUSH_TIMEOUT_SECONDS",
    "NOTIFIER_RETRY_BACKOFF": "NOTIFIER_RETRY_BACKOFF_SECONDS",
    "NOTIFIER_RETRY_BACKOFF_MAX": "NOTIFIER_RETRY_BACKOFF_MAX_SECONDS",
    "NOTIFIER_COUNTDOWN_MAX": "NOTIFIER_COUNTDOWN_MAX_SECONDS",
    "NOTIFIER_IDEMPOTENCY_TTL": "NOTIFIER_IDEMPOTENCY_TTL_SECONDS",
    "NOTIFIER_IDEMPOTENCY_PENDING_TTL": "NOTIFIER_IDEMPOTENCY_PENDING_TTL_SECONDS",
    "NOTIFIER_RECEIPT_TTL": "NOTIFIER_RECEIPT_TTL_SECONDS",
    "NOTIFIER_VISIBILITY_TIMEOUT": "NOTIFIER_VISIBILITY_TIMEOUT_SECONDS",
    "NOTIFIER_TOKEN_TTL": "NOTIFIER_TOKEN_TTL_SECONDS",
}
"""Variables renamed for the unit rule: set under the old name, they stop the start (``extra="ignore"``
would drop them silently, and the default would apply unnoticed)."""

REMOVED: Mapping[str, str] = {
    "NOTIFIER_SCHEDULER_INTERVAL": "deferred messages are released every second (workers/scheduler.py)",
    "NOTIFIER_METRICS_DIR": "set PROMETHEUS_MULTIPROC_DIR, prometheus_client's own variable, instead",
    "NOTIFIER_GATEWAY_GC_THRESHOLDS": "the gateway's gc.set_threshold is a constant (GC_THRESHOLDS in "
                                      "notifier/gateway/tuning.py, with its measured gain)",
    "NOTIFIER_GATEWAY_FULL_GC_SECONDS": "the gateway's full collection runs every 600 s (FULL_PASS_SECONDS "
                                        "in notifier/gateway/tuning.py)",
}
"""Variables that are no longer settings, and what takes their place; set, they stop the start too."""


def check_renamed(environ: Mapping[str, str]) -> None:
    """Raise :class:`ConfigError` naming each old variable set in ``environ`` and what replaces it."""
    problems = [f"{old} was renamed {new}" for old, new in RENAMED.items() if old in environ]
    problems += [f"{old} is no longer a setting: {instead}" for old, instead in REMOVED.items() if old in environ]
    if problems:
        raise ConfigError("invalid configuration: " + "; ".join(problems))


def markdown_table() -> str:
    """README's "Configuration" table: one heading row per section, then a row per field (its docstring)."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for section in SECTIONS:
        rows.append(f"| **{section.title}** | | |")
        for name, field in section.model_fields.items():
            extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
            default = str(extra["shown"]) if "shown" in extra else _shown_default(field.default)
            meaning = " ".join((field.description or "").split())
            rows.append(f"| `NOTIFIER_{name.upper()}` | {default} | {meaning} |")
    return "\n".join(rows)


def _shown_default(value: object) -> str:
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if value == "":
        return "empty"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"`{value}`"


def public_base(url: str) -> str:
    """``url`` without a trailing slash, if it is an https URL (or http on a loopback host); else
    ``ValueError`` saying what is wrong."""
    if not url:
        return url
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"{url!r} is not an https URL like https://notify.example.com")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"{url!r} must be a plain base URL: no query, fragment or user")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ValueError(f"{url!r} must use https: mail providers and users open it from outside "
                         "(http is allowed for a loopback host only, in development)")
    return url.rstrip("/")


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` (a URL's host) is this machine: the only host plain http may reach, in
    development and tests."""
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _channel_names() -> tuple[str, ...]:
    """The registry's channel names, imported late: the channel modules import this one."""
    from notifier.channels import registry

    return registry.names()


def _plain_redis(url: str) -> bool:
    return url.startswith(("redis://", "rediss://", "unix://"))


def parse_rate_limits(value: str) -> dict[str, tuple[int, int]]:
    """Parse ``"email=20/3600,fcm=60/3600"`` into ``{"email": (20, 3600), ...}``."""
    limits: dict[str, tuple[int, int]] = {}
    for part in filter(None, (p.strip() for p in value.split(","))):
        match = _RATE.fullmatch(part)
        if not match:
            raise ValueError(f"{part!r} is not CHANNEL=LIMIT/SECONDS (e.g. email=20/3600)")
        channel, limit, window = match.group(1), int(match.group(2)), int(match.group(3))
        if channel not in _channel_names():
            raise ValueError(f"unknown channel {channel!r} in rate limits")
        if window <= 0:
            raise ValueError(f"window for {channel} must be positive")
        limits[channel] = (limit, window)
    return limits


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    check_renamed(os.environ)
    try:
        return Settings()
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else "settings"
            name = f"NOTIFIER_{field.upper()}" if err["loc"] else "settings"
            message = err.get("ctx", {}).get("error", err["msg"]) if err["type"] == "value_error" else err["msg"]
            problems.append(f"{name}: {message}")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None


def reload_settings() -> Settings:
    """Forget the cached settings (tests and ``notifier dev`` change the environment)."""
    get_settings.cache_clear()
    from notifier.redis import store

    store.reset()
    return get_settings()
