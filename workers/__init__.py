"""The Celery side of notifier: ``celery -A workers worker -Q router,realtime,email``."""

from workers.app import app

__all__ = ["app"]
