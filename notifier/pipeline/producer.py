"""The producer API: validate at the call site, then send by task name through the broker.

``send_notification.delay(user_id, notification, idempotency_key=...)`` behaves like a Celery task's
``delay`` but never imports worker code: it checks the input (raising ``notifier.ValidationError``
before anything reaches the broker) and sends the router task by name. The returned
``AsyncResult``'s id is the notification id; with an idempotency key that was already used, it is the
first send's id and nothing is sent. Results are not stored, so don't ``.get()`` it.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import kombu.exceptions
import redis
from celery import Celery
from celery.result import AsyncResult

from notifier.batches import batched
from notifier.config import get_settings
from notifier.deliverylog import emission
from notifier.errors import BrokerUnavailable, ValidationError
from notifier.models import CANCEL_KEY, Notification, check_user_id, validate
from notifier.pipeline.queues import ROUTE, ROUTE_AUDIENCE, ROUTE_USERS, args_summary, queue_of
from notifier.redis.urls import redact
from notifier.state.groups import check_group_id
from notifier.state.idempotency import Idempotency, check_key
from notifier.workflows.files import get_workflows
from notifier.workflows.runs import Runs

NotificationInput = Notification | Mapping[str, Any]


@functools.lru_cache(maxsize=1)
def producer_app() -> Celery:
    """A Celery app that only sends (configured like the workers, from the same settings)."""
    from notifier.pipeline.celeryconfig import celery_config

    get_workflows()  # a workflows file that does not parse fails the first send, not a worker later
    app = Celery("notifier", set_as_current=False)
    app.conf.update(celery_config(get_settings()))
    return app


def _send(task: str, args: list[Any], task_id: str | None = None) -> AsyncResult:
    """Publish by name; results are not stored (the notification id is the answer)."""
    try:
        return producer_app().send_task(task, args=args, task_id=task_id, queue=queue_of(task),
                                        ignore_result=True, argsrepr=args_summary(task, args))
    except kombu.exceptions.OperationalError as exc:
        raise broker_unavailable(exc) from None


def broker_unavailable(exc: Exception) -> BrokerUnavailable:
    """The one-line error for a broker that refused, dropped or did not answer (``exc`` says which)."""
    return BrokerUnavailable(redact(f"cannot reach the broker at {get_settings().broker} ({exc}); "
                                    "is it running? Set NOTIFIER_BROKER_URL."))


def _notification(value: object) -> Notification:
    """``value`` as a Notification; anything else (None included) is refused in the user's words."""
    if not isinstance(value, (Notification, Mapping)):
        raise ValidationError(f"a notification must be a dict or Notification, not {type(value).__name__}")
    return validate(Notification, value)


class _SendNotification:
    """``send_notification.delay(user_id, notification, idempotency_key=None)``"""

    name = ROUTE

    def delay(self, user_id: str, notification: NotificationInput,
              idempotency_key: str | None = None) -> AsyncResult:
        return self.apply_async((user_id, notification), {"idempotency_key": idempotency_key})

    def apply_async(self, args: Sequence[Any], kwargs: Mapping[str, Any] | None = None,
                    **_options: Any) -> AsyncResult:
        user_id, notification = _unpack(args, kwargs or {})
        user_id = check_user_id(user_id)
        n = _notification(notification)
        key = check_key((kwargs or {}).get("idempotency_key"))
        if key is not None:
            first = _claim(key, n.id)
            if first is not None:
                return AsyncResult(first, app=producer_app())
        try:
            return _send(ROUTE, [[[user_id, n.to_dict(), key]]], task_id=n.id)
        except BaseException:
            if key is not None:
                _unclaim(key, n.id)
            raise

    __call__ = delay


def _unpack(args: Sequence[Any], kwargs: Mapping[str, Any]) -> tuple[Any, Any]:
    extra = set(kwargs) - {"idempotency_key", "user_id", "notification"}
    if extra:
        raise ValidationError(f"unexpected argument(s): {', '.join(sorted(extra))}")
    values = list(args) + [kwargs[k] for k in ("user_id", "notification") if k in kwargs]
    if len(values) != 2:
        raise ValidationError("send_notification takes (user_id, notification, idempotency_key=None)")
    return values[0], values[1]


def _claim(key: str, notification_id: str) -> str | None:
    """Claim the key until the router takes it over, so a duplicate is answered at once with the first id.

    The claim is short (``NOTIFIER_IDEMPOTENCY_PENDING_TTL_SECONDS``): should this process die before the task
    is published, the key frees itself soon. Without the store (Redis unreachable from this producer)
    the router's claim still de-duplicates.
    """
    try:
        first = Idempotency(ttl=get_settings().idempotency_pending_ttl_seconds).claim_many([(key, notification_id)])[0]
    except redis.RedisError:
        return None
    return first if first != notification_id else None


def _unclaim(key: str, notification_id: str) -> None:
    """Give the key back when the send failed (any error or interrupt), so a retry can use it."""
    with contextlib.suppress(redis.RedisError):
        Idempotency().release(key, notification_id)


send_notification = _SendNotification()


def send_bulk(items: Iterable[tuple[str, NotificationInput] | tuple[str, NotificationInput, str | None]
                             | Mapping[str, Any]]) -> list[str]:
    """Send many notifications, each to its own user, in router batches; returns their ids.

    Each item is ``(user_id, notification)``, ``(user_id, notification, idempotency_key)`` or a dict
    with ``user_id``, ``notification`` and optionally ``idempotency_key``. Everything is validated
    before anything is sent.
    """
    rows: list[list[Any]] = []
    for index, item in enumerate(items):
        try:
            if isinstance(item, Mapping):
                user_id, notification, key = item.get("user_id"), item.get("notification"), item.get("idempotency_key")
            else:
                shaped = isinstance(item, (tuple, list)) and len(item) in (2, 3)
                user_id, notification, key = (*item, None)[:3] if shaped else (None, None, None)
                if notification is None:
                    raise ValidationError("each item is (user_id, notification[, idempotency_key])")
            rows.append([check_user_id(user_id), _notification(notification).to_dict(), check_key(key)])
        except ValidationError as exc:
            raise ValidationError(f"item {index}: {exc}") from None
    for batch in batched(rows, get_settings().batch_size):
        _send(ROUTE, [batch])
    return [row[1]["id"] for row in rows]


def send_to_group(group_id: str, notification: NotificationInput) -> str:
    """Send to every member of a group (membership in Redis); returns the notification id."""
    n = _notification(notification)
    _send(ROUTE_AUDIENCE, [n.to_dict(), {"group": check_group_id(group_id)}])
    return n.id


def broadcast(notification: NotificationInput, user_ids: Sequence[str] | None = None) -> str:
    """Send to ``user_ids``, or to every known user when None; returns the notification id."""
    n = _notification(notification)
    if user_ids is None:
        _send(ROUTE_AUDIENCE, [n.to_dict(), {"all": True}])
        return n.id
    if isinstance(user_ids, str):
        raise ValidationError("user_ids must be a list of user ids, not a string")
    users = list(dict.fromkeys(check_user_id(u) for u in user_ids))
    payload = n.to_dict()
    for batch in batched(users, get_settings().batch_size):
        _send(ROUTE_USERS, [payload, batch])
    return n.id


def cancel(cancel_key: str) -> int:
    """Stop every pending step of the workflow runs sent with ``cancel_key`` (and of such sends still
    queued); returns how many runs were stopped. Steps already taken stay taken."""
    if not isinstance(cancel_key, str) or not re.fullmatch(CANCEL_KEY, cancel_key):
        raise ValidationError(f"invalid cancel key {cancel_key!r}: 1-128 letters, digits and _ . : -")
    stopped = Runs().cancel(cancel_key)
    emission.record(emission.cancelled(stopped, cancel_key))
    return len(stopped)
