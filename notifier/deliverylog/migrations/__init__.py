"""The delivery log's Alembic migrations (``notifier db upgrade``; run by ``notifier.deliverylog.upgrades``)."""
