"""Prometheus metrics of the pipeline (the gateway defines its own next to its code).

Celery's prefork children do the work, so the worker exposes these through prometheus_client's
multiprocess mode: ``workers/observability.py`` points ``PROMETHEUS_MULTIPROC_DIR`` at a folder before
this module is imported and serves the merged view on ``NOTIFIER_WORKER_METRICS_PORT``.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ROUTED = Counter("notifier_routed_total",
                 "Router decisions: queued, inbox_only, deferred, rate_limited, channel_disabled, "
                 "type_disabled, expired, deduplicated, no_address, no_device, rejected.",
                 ["channel", "decision"])
DELIVERIES = Counter("notifier_deliveries_total",
                     "Delivery outcomes per channel: sent, already (receipt), expired, pruned, retried, "
                     "failed, dead_lettered.", ["channel", "outcome"])
LATENCY = Histogram("notifier_delivery_latency_seconds",
                    "From the notification's timestamp (send) to the channel reporting it delivered.",
                    ["channel"],
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600))
WORKFLOW_STEPS = Counter("notifier_workflow_steps_total",
                         "Workflow steps taken, by workflow (notification type), step kind and outcome "
                         "(sent, waited, passed, skipped, throttled).", ["workflow", "step", "outcome"])
DEAD_LETTERED = Counter("notifier_dead_lettered_total", "Messages put in the dead-letter queue, by task.",
                        ["task"])
ROUTER_BATCH = Histogram("notifier_router_batch_messages",
                         "Router messages per notifier.route run: 1 when its queue was empty, more when it took "
                         "the single sends waiting behind it (workers/take.py).",
                         buckets=(1, 2, 5, 10, 20, 50, 100, 200))
LOG_EVENTS_WRITTEN = Counter("notifier_log_events_written_total",
                             "Delivery events the drain wrote to the log's database.")
LOG_BATCHES_PENDING = Gauge("notifier_log_batches_pending",
                            "Event batches waiting in Redis for the database, as the last drain saw them.",
                            multiprocess_mode="mostrecent")
LOG_EVENTS_DROPPED = Gauge("notifier_log_events_dropped",
                           "Delivery events dropped because the Redis buffer was full (the store's counter, "
                           "as the last drain read it).", multiprocess_mode="mostrecent")
