"""The Celery application: configured from the settings, task modules registered here."""

from __future__ import annotations

from celery import Celery

from notifier.celeryconfig import celery_config
from notifier.config import get_settings
from notifier.logs import configure_logging
from workers import observability

observability.prepare(get_settings())
app = Celery("notifier", set_as_current=True)
app.conf.update(celery_config(get_settings()))
app.conf.worker_consumer = "workers.consumer:Consumer"
configure_logging()

import workers.deliver  # noqa: E402,F401  (registers the tasks)
import workers.maintenance  # noqa: E402,F401
import workers.poison  # noqa: E402,F401
import workers.router  # noqa: E402,F401
import workers.scheduler  # noqa: E402,F401
