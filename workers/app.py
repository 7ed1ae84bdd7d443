"""The Celery application: configured from the settings, task modules registered here."""

from __future__ import annotations

import sys

from celery import Celery
from celery.signals import worker_init

from notifier.config import get_settings
from notifier.errors import ConfigError
from notifier.logs import configure_logging
from notifier.pipeline.celeryconfig import celery_config
from notifier.redis import store
from workers import observability

observability.prepare(get_settings())
app = Celery("notifier", set_as_current=True)
app.conf.update(celery_config(get_settings()))
app.conf.worker_consumer = "workers.consumer:Consumer"
configure_logging()


@worker_init.connect
def _refuse_old_store(**_: object) -> None:
    """Exit at start, in one line, when the store's Redis is too old (tasks would dead-letter later),
    the workflows file is invalid or the templates folder has a template or catalogue that fails.

    Celery logs and swallows a signal handler's exceptions, so this exits itself.
    """
    from notifier.templates import require_valid
    from notifier.workflows.files import get_workflows

    try:
        store.get_redis()
        get_workflows()
        settings = get_settings()
        if settings.templates_dir:
            require_valid(settings.templates_dir, settings.default_locale)
    except ConfigError as exc:
        print(f"worker not started: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


import workers.deliver  # noqa: E402  (registers the tasks)
import workers.deliverylog  # noqa: E402
import workers.event_webhooks  # noqa: E402
import workers.inbox  # noqa: E402
import workers.maintenance  # noqa: E402
import workers.poison  # noqa: E402
import workers.router  # noqa: E402
import workers.scheduler  # noqa: E402
import workers.workflow  # noqa: E402,F401
