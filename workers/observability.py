"""Worker logging, metrics endpoint and Flower settings, wired from the settings object.

``prepare`` must run before ``notifier.metrics`` creates its metrics, so that prefork children
write them to the shared folder.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from typing import Any

from celery.signals import worker_process_shutdown, worker_ready, worker_shutdown

from notifier.config import Settings

log = logging.getLogger("notifier.worker")
_owned_dir: str | None = None


def prepare(settings: Settings) -> None:
    """Set up the shared metrics folder and Flower's basic auth before Celery or Flower read them."""
    global _owned_dir
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:  # prometheus_client's own variable: a folder of the user's
        _owned_dir = tempfile.mkdtemp(prefix="notifier-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = _owned_dir
    # prometheus_client may be imported already (Flower's celery CLI plugin does): pick the storage again.
    from prometheus_client import values

    values.ValueClass = values.get_value_class()
    if settings.flower_user and settings.flower_password:
        os.environ.setdefault("FLOWER_BASIC_AUTH", f"{settings.flower_user}:{settings.flower_password}")


def start_metrics_server(port: int) -> None:
    from prometheus_client import CollectorRegistry, multiprocess, start_http_server

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    try:
        start_http_server(port, registry=registry)
        log.info("worker metrics on :%d/metrics", port)
    except OSError as exc:
        log.warning("worker metrics port %d unavailable (%s); set NOTIFIER_WORKER_METRICS_PORT per worker",
                    port, exc)


@worker_ready.connect
def _ready(**_: Any) -> None:
    from notifier.config import get_settings

    port = get_settings().worker_metrics_port
    if port:
        start_metrics_server(port)


@worker_process_shutdown.connect
def _child_gone(pid: int | None = None, **_: Any) -> None:
    from prometheus_client import multiprocess

    if pid is not None and os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(pid)


@worker_shutdown.connect
def _cleanup(**_: Any) -> None:
    if _owned_dir:
        shutil.rmtree(_owned_dir, ignore_errors=True)
