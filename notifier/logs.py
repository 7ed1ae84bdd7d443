"""Logging set-up: plain text by default, one JSON object per line with ``NOTIFIER_LOG_JSON=1``.

Every line notifier's handler writes has the passwords of the URLs in it hidden
(``notifier.redis_url.redact``), whatever logged it: an exception's text may quote a URL.
"""

from __future__ import annotations

import logging

import orjson

from notifier.config import get_settings
from notifier.redis_url import redact


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


def _redact(record: logging.LogRecord) -> bool:
    """Format the message (and traceback) once here, with URL passwords hidden."""
    record.msg = redact(record.getMessage())
    record.args = None
    if record.exc_info and not record.exc_text:
        record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
    return True


def configure_logging() -> None:
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
    handler.addFilter(_redact)
    logger.addHandler(handler)
    logger.setLevel(settings.log_level)
    logger.propagate = False
