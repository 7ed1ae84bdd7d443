"""Celery configuration shared by producers and workers, built from the settings.

The reliability choices live here: late acks and reject-on-worker-lost so a killed worker's task is
run again; a small prefetch; on a Redis broker, task queues kept in Redis Streams
(``notifier/pipeline/streams_transport.py``: no instant between taking a message and recording it as pending)
with a visibility timeout that bounds how long a dead worker's tasks wait to be taken back, checked
every few seconds (kombu's default scans only every 100 s); and a short ``unacked_mutex_expire`` so a
killed worker does not block kombu's restores of its remaining list queues (remote-control replies).

A broker that accepts connections and never answers must not hang a producer: every connection has a
connect and a socket timeout (``BROKER_TIMEOUT``), and a publish is retried only ``PUBLISH_RETRIES``
times, so ``send_notification.delay`` gives up within seconds with ``BrokerUnavailable``.
"""

from __future__ import annotations

from typing import Any

from notifier.config import Settings
from notifier.pipeline.queues import QUEUES, ROUTES

BROKER_TIMEOUT = 3.0
"""Seconds the broker may take to accept a connection (and, on AMQP, finish the handshake), and on
Redis to answer one command. The consumer blocks in XREADGROUP (or kombu's BRPOP) for ``brpop_timeout``
(1 s), well inside it."""
PUBLISH_RETRIES = 1
"""Publishes retried after a connection error; each retry costs up to ``BROKER_TIMEOUT`` twice."""
RESULT_TIMEOUT = 10.0
"""Socket timeout of the Redis result backend (only ``notifier dlq replay --wait`` reads results)."""


def celery_config(settings: Settings) -> dict[str, Any]:
    from kombu import Queue

    transport: dict[str, Any] = {}
    broker_transport: dict[str, str] = {}
    if settings.broker.startswith(("redis://", "rediss://")):
        broker_transport = {"broker_transport": "notifier.pipeline.streams_transport:Transport"}
    if settings.broker.startswith(("redis://", "rediss://", "redis+socket://", "sentinel://")):
        transport = {
            "visibility_timeout": settings.visibility_timeout_seconds,
            "unacked_mutex_expire": 30,
            "unacked_restore_interval": max(1, min(10, settings.visibility_timeout_seconds // 2)),
            "unacked_restore_throttle": 1,
            "socket_timeout": BROKER_TIMEOUT,
            "socket_connect_timeout": BROKER_TIMEOUT,
        }
    return {
        "broker_url": settings.broker,
        **broker_transport,
        "result_backend": settings.results,
        "result_expires": 3600,
        "broker_transport_options": transport,
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": BROKER_TIMEOUT,
        "task_publish_retry_policy": {"max_retries": PUBLISH_RETRIES, "interval_start": 0, "interval_step": 0.5,
                                      "interval_max": 1},
        "redis_socket_connect_timeout": BROKER_TIMEOUT,
        "redis_socket_timeout": RESULT_TIMEOUT,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "task_routes": ROUTES,
        "task_queues": [Queue(q, routing_key=q) for q in QUEUES],
        "task_default_queue": "router",
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "task_ignore_result": True,
        "worker_prefetch_multiplier": settings.prefetch_multiplier,
        "worker_hijack_root_logger": False,
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "timezone": "UTC",
        "enable_utc": True,
    }
