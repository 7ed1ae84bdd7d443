"""Logging set-up: plain text by default, one JSON object per line with ``NOTIFIER_LOG_JSON=1``."""

from __future__ import annotations

import logging

import orjson

from notifier.config import get_settings


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"ts": self.formatTime(record), "level": record.levelname, "logger": record.name,
                 "msg": record.getMessage()}
        for key in ("notification_id", "channel", "user_id", "task_id"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def _defaults(record: logging.LogRecord) -> bool:
    """Every line has a notification id field ("-" when it is about none)."""
    if not hasattr(record, "notification_id"):
        record.notification_id = "-"
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
    logger.addHandler(handler)
    logger.setLevel(settings.log_level)
    logger.propagate = False
