"""Alembic's entry point: migrate the connection ``notifier.deliverylog.upgrades`` hands over.

There is no ``alembic.ini``: the migrations ship inside the package and run on the log's own engine,
with their version in ``notifier_log_version`` so they never meet another application's Alembic table
in a shared database.
"""

from __future__ import annotations

from alembic import context

from notifier.deliverylog.schema import metadata
from notifier.deliverylog.upgrades import VERSION_TABLE

context.configure(connection=context.config.attributes["connection"], target_metadata=metadata,
                  version_table=VERSION_TABLE, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
