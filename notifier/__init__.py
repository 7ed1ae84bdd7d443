"""notifier: real-time notifications for Python services.

Producers need only this package and the broker URL::

    from notifier import send_notification
    send_notification.delay("user123", {"type": "order_update", "title": "Order Shipped"})
"""

from notifier.errors import (
    ConfigError,
    InvalidTarget,
    NotifierError,
    PermanentError,
    RetryableError,
    ValidationError,
)
from notifier.models import Notification, Preferences, QuietHours
from notifier.pipeline.producer import broadcast, cancel, send_bulk, send_notification, send_to_group

__all__ = [
    "ConfigError",
    "InvalidTarget",
    "Notification",
    "NotifierError",
    "PermanentError",
    "Preferences",
    "QuietHours",
    "RetryableError",
    "ValidationError",
    "broadcast",
    "cancel",
    "send_bulk",
    "send_notification",
    "send_to_group",
]
