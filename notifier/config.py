"""One settings object, read once from ``NOTIFIER_*`` environment variables.

Every part of notifier (producers, workers, gateway, CLI) reads configuration through
:func:`get_settings`; nothing else looks at the environment. A bad value fails at start with
a message naming the variable, never deep inside a task.
"""

from __future__ import annotations

import functools
import re
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from notifier.errors import ConfigError
from notifier.redis import urls

_RATE = re.compile(r"\s*(\w+)\s*=\s*(\d+)\s*/\s*(\d+)\s*")


class Settings(BaseSettings):
    """Configuration for every notifier process; see README "Configuration" for each variable."""

    model_config = SettingsConfigDict(env_prefix="NOTIFIER_", extra="ignore", frozen=True)

    redis_url: str = "redis://127.0.0.1:6379/0"
    broker_url: str = ""
    result_backend: str = ""
    key_prefix: str = Field("notifier", pattern=r"^[A-Za-z0-9_.-]{1,64}$")

    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(25, ge=1, le=65535)
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_from: str = "notifier@localhost"
    smtp_tls: Literal["none", "starttls", "ssl"] = "none"
    smtp_timeout: float = Field(10.0, gt=0)

    max_retries: int = Field(5, ge=0, le=100)
    retry_backoff: float = Field(2.0, gt=0)
    retry_backoff_max: float = Field(3600.0, gt=0)
    countdown_max: float = Field(30.0, ge=0)
    """Retries due sooner than this use Celery's countdown; later ones go to the schedule."""

    rate_limits: str = "realtime=120/60,email=20/3600,fcm=60/3600,apns=60/3600,webpush=60/3600"
    default_channels: str = ""
    """Channels a notification names none goes to; empty: every channel in the registry."""
    inbox_max_len: int = Field(1000, ge=10, le=1_000_000)
    idempotency_ttl: int = Field(86400, ge=1)
    idempotency_pending_ttl: int = Field(30, ge=1)
    """How long a producer's claim on a key holds until the router takes it over (notifier/state/idempotency.py):
    a producer that dies between claiming and publishing blocks the key for this long."""
    receipt_ttl: int = Field(7 * 86400, ge=60)
    claim_seconds: int = Field(30, ge=1)
    """How long a delivery claimed by a worker that then died blocks another attempt."""
    visibility_timeout: int = Field(50, ge=5)
    prefetch_multiplier: int = Field(4, ge=1, le=1000)
    batch_size: int = Field(500, ge=1, le=10_000)
    scheduler_interval: float = Field(1.0, gt=0, le=60)
    log_json: bool = False
    worker_metrics_port: int = Field(0, ge=0, le=65535)
    """Port of a worker's Prometheus endpoint (0: none). One per worker host/pool."""
    metrics_dir: str = ""
    """Where prefork children share metric files (default: a fresh temporary folder per worker)."""
    flower_user: str = ""
    flower_password: str = ""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # Push providers (channels/fcm.py, apns.py, webpush.py) ------------------------------------
    fcm_credentials: str = ""
    """Path to the Firebase service-account JSON (its project id is used unless fcm_project_id)."""
    fcm_project_id: str = ""
    fcm_endpoint: str = "https://fcm.googleapis.com"
    apns_key_file: str = ""
    """Path to the APNs token-auth key (.p8)."""
    apns_key_id: str = ""
    apns_team_id: str = ""
    apns_topic: str = ""
    apns_use_sandbox: bool = False
    apns_host: str = ""
    """Overrides the Apple host (a private gateway or a test peer); empty means Apple's."""
    apns_port: int = Field(443, ge=1, le=65535)
    apns_ca_file: str = ""
    vapid_private_key: str = ""
    vapid_public_key: str = ""
    vapid_subject: str = "mailto:ops@example.com"
    push_timeout: float = Field(10.0, gt=0)
    ca_file: str = ""
    """Extra CA bundle trusted, besides the system CAs, for provider HTTPS (FCM and its OAuth, web push)."""

    # Gateway (notifier/gateway) ------------------------------------------------------------
    secret_key: str = ""
    api_key: str = ""
    dev_mode: bool = False
    gateway_host: str = "127.0.0.1"
    gateway_port: int = Field(8000, ge=1, le=65535)
    token_ttl: int = Field(3600, ge=10)
    max_connections_per_user: int = Field(20, ge=1)
    heartbeat_seconds: float = Field(15.0, gt=0)
    client_buffer: int = Field(256, ge=1)
    send_timeout_seconds: float = Field(30.0, gt=0)
    """Seconds one write to a live client may wait; a client that takes nothing for that long is dropped."""
    gateway_full_gc_seconds: float = Field(600.0, gt=0)
    """Seconds between the gateway's full garbage collections (``notifier.gateway.collector``)."""
    gateway_gc_thresholds: str = Field("50000,20,100", pattern=r"^\d+,\d+,\d+$")
    """The gateway's ``gc.set_threshold`` (young, middle, old), as ``N,N,N``."""
    max_request_bytes: int = Field(64 * 1024, ge=1024)
    api_rate_limit: str = Field("600/60", pattern=r"^\d+/\d+$")
    """HTTP API requests per user: ``LIMIT/SECONDS`` (sliding window); over it, 429."""
    handshake_timeout_seconds: float = Field(5.0, gt=0)
    """Seconds a connection has to send a complete request head (an upgrade's too); then 408 and closed."""
    max_pending_handshakes: int = Field(1000, ge=1)
    """Connections per gateway process still sending their request head; more are answered 503 and closed."""

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
    def _check_backoff(self) -> Settings:
        if self.retry_backoff_max < self.retry_backoff:
            raise ValueError("NOTIFIER_RETRY_BACKOFF_MAX must be >= NOTIFIER_RETRY_BACKOFF")
        if self.countdown_max >= self.visibility_timeout:
            raise ValueError("NOTIFIER_COUNTDOWN_MAX must be below NOTIFIER_VISIBILITY_TIMEOUT: a Celery "
                             "countdown longer than the visibility timeout runs the task twice")
        return self

    @model_validator(mode="after")
    def _check_broker(self) -> Settings:
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

    @property
    def limits(self) -> dict[str, tuple[int, int]]:
        """Per-channel ``(limit, window_seconds)``."""
        return parse_rate_limits(self.rate_limits)

    @property
    def gc_thresholds(self) -> tuple[int, int, int]:
        """The gateway's ``gc.set_threshold`` arguments."""
        young, middle, old = (int(n) for n in self.gateway_gc_thresholds.split(","))
        return young, middle, old

    @property
    def api_limit(self) -> tuple[int, int]:
        """``(limit, window_seconds)`` of HTTP API requests per user."""
        limit, window = self.api_rate_limit.split("/")
        return int(limit), max(1, int(window))

    @property
    def channels(self) -> tuple[str, ...]:
        """Channels a notification goes to when it names none."""
        return tuple(self.default_channels.split(",")) if self.default_channels else _channel_names()


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
