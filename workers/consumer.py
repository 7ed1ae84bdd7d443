"""The worker's message consumer: Celery's, made robust against poison messages and a lost broker.

Celery acks an undecodable message with only a log line, and a message whose body or headers have
the wrong shape raises out of its handler and stops the worker; here both are dead-lettered (see
``workers/poison.py``). And when Redis goes away while tasks are unacknowledged, kombu's Redis
transport fails to close the dead connection (it tries to restore the unacked messages through it
and raises ``AttributeError``), and so does acking or rejecting, after the reconnect, a message that
arrived on the old connection; Celery treats both as unrecoverable: the worker stopped instead of
reconnecting (celery/kombu#582, #970 are the same family). Such messages are still in Redis's unacked
set and come back after the visibility timeout, so with a Redis broker the consumer treats
``AttributeError`` from the transport as the connection error it is, and reconnects.

Selected by ``worker_consumer`` in ``workers/app.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from celery.worker.consumer import Consumer as CeleryConsumer
from vine import promise

from workers.poison import dead_letter_message

log = logging.getLogger("notifier.worker")


class Consumer(CeleryConsumer):
    """Celery's consumer, except that a message it cannot parse is dead-lettered (never dropped
    silently, never allowed to stop the worker) and a lost Redis broker is always reconnected."""

    connection_errors: tuple[type[BaseException], ...]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._transport_errors = self.connection_errors
        if self.conninfo.transport.driver_type == "redis":
            self.connection_errors = (*self.connection_errors, AttributeError)

    def on_decode_error(self, message: Any, exc: Exception) -> None:
        dead_letter_message(message, f"message body cannot be decoded: {exc}", "DecodeError")
        super().on_decode_error(message, exc)

    def create_task_handler(self, promise: Any = promise) -> Callable[[Any], Any]:
        handle = super().create_task_handler(promise)
        # kombu's Redis transport counts KeyError as a connection error (a stale poller fd); raised
        # while parsing a message it means a missing header, and reconnecting would loop on it forever.
        errors = tuple(e for e in self._transport_errors if e is not KeyError)

        def on_task_received(message: Any) -> Any:
            try:
                return handle(message)
            except errors:
                raise
            except Exception as exc:  # noqa: BLE001  Celery's own parsing failed on a malformed message
                dead_letter_message(message, f"malformed task message: {type(exc).__name__}: {exc}",
                                    "MalformedMessage")
                if not message.acknowledged:
                    message.reject_log_error(log, self.connection_errors)
                return None

        return on_task_received

    def on_connection_error_after_connected(self, exc: Exception) -> None:
        try:
            super().on_connection_error_after_connected(exc)
        except AttributeError as error:  # kombu closing a connection whose server is gone
            log.warning("consumer: could not close the lost broker connection cleanly (%r); unacknowledged "
                        "messages return after the visibility timeout; reconnecting", error)
