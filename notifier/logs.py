"""Logging set-up: plain text by default, one JSON object per line with ``NOTIFIER_LOG_JSON=1``.

No log line shows a secret, at any level and whatever logged it: :func:`configure_logging` installs
a log record factory that rewrites every record as it is made (:func:`redact`), so uvicorn's access
and error loggers, the ``websockets`` handshake lines they carry at DEBUG (every request header),
Celery's loggers and ours are all covered, and a handler or ``dictConfig`` set up later (uvicorn's
``log_config``, Celery's worker logging) cannot bypass it. Hidden: URL passwords
(``notifier.redis.urls.redact``), the values of the ``Authorization``, ``Proxy-Authorization``,
``Cookie``, ``Set-Cookie`` and ``X-API-Key`` headers, ``token`` / ``access_token`` / ``api_key`` /
``key`` query parameters, and anything shaped like a JWT (a user token quoted anywhere else).
"""

from __future__ import annotations

import logging
import re
from typing import Any

import orjson

from notifier.config import get_settings
from notifier.redis import urls

MASK = "***"

_HEADER = re.compile(
    r"(?P<head>\b(?:proxy-authorization|authorization|set-cookie|cookie|x-api-key)"
    r"(?:['\"]\s*[:,=]\s*|\s*[:=]\s*)(?:(?-i:b)?['\"])?)[^'\"\r\n]+", re.IGNORECASE)
"""A header and its value as websockets logs it (``Authorization: Bearer …``), or quoted in a repr
(``(b'authorization', b'Bearer …')``) or JSON (``"x-api-key": "…"``): the value is hidden up to its
closing quote or the end of the line."""
_QUERY = re.compile(r"(?P<head>[?&;](?:access_token|token|api_key|apikey|key)=)[^&#\s'\"]+", re.IGNORECASE)
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]+")


def redact(text: str) -> str:
    """``text`` with every credential in it replaced by ``***`` (see the module docstring)."""
    text = _HEADER.sub(rf"\g<head>{MASK}", urls.redact(text))
    return _JWT.sub(MASK, _QUERY.sub(rf"\g<head>{MASK}", text))


def _redact_args(args: Any) -> Any:
    if isinstance(args, tuple):
        return tuple(redact(a) if isinstance(a, str) else a for a in args)
    if isinstance(args, dict):
        return {k: redact(v) if isinstance(v, str) else v for k, v in args.items()}
    return args


def _scrub(record: logging.LogRecord) -> None:
    """Hide the secrets in ``record``'s message, traceback and stack.

    The arguments are kept when hiding them one by one is enough (uvicorn's access formatter reads
    them); otherwise, e.g. websockets' ``"< %s: %s" % (name, value)``, the message is formatted here.
    """
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001  # a bad format string: the handler reports it, nothing formatted leaks
        return
    clean = redact(message)
    if clean != message:
        args = _redact_args(record.args)
        try:
            masked = str(record.msg) % args if args else None
        except (TypeError, ValueError, KeyError):
            masked = None
        if masked is not None and redact(masked) == masked:
            record.args = args
        else:
            record.msg, record.args = clean, None
    if record.exc_info and not record.exc_text:
        record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
    elif record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)


def install_redaction() -> None:
    """Make every log record of this process go through :func:`_scrub` (once; idempotent)."""
    make = logging.getLogRecordFactory()
    if getattr(make, "redacts", False):
        return

    def redacting_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        _scrub(record)
        return record

    redacting_factory.redacts = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(redacting_factory)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"ts": self.formatTime(record), "level": record.levelname, "logger": record.name,
                 "msg": record.getMessage()}
        for key in ("notification_id", "channel", "user_id", "task_id"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["exc"] = record.exc_text or self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def _defaults(record: logging.LogRecord) -> bool:
    """Every line has a notification id field ("-" when it is about none)."""
    if not hasattr(record, "notification_id"):
        record.notification_id = "-"
    return True


def configure_logging() -> None:
    install_redaction()
    logger = logging.getLogger("notifier")
    if logger.handlers:
        return
    settings = get_settings()
    handler = logging.StreamHandler()
    if settings.log_json:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s [%(notification_id)s]: %(message)s"))
    handler.addFilter(_defaults)
    logger.addHandler(handler)
    logger.setLevel(settings.log_level)
    logger.propagate = False
