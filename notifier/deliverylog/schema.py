"""The delivery log's tables (SQLAlchemy Core), the same on PostgreSQL and SQLite.

Migrations (``notifier/deliverylog/migrations``, Alembic) create and change them; this module is what
they are checked against and what queries are written with.
"""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Column, DateTime, Index, Integer, MetaData, String, Table

metadata = MetaData()

events = Table(
    "delivery_events",
    metadata,
    # BIGINT on PostgreSQL; SQLite's rowid alias must be INTEGER to autoincrement
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("notification_id", String(64), nullable=False),
    Column("user_id", String(256), nullable=False),
    Column("type", String(64)),
    Column("channel", String(32)),
    Column("target", String(512)),
    Column("detail", JSON, nullable=False, default=dict),
    Index("delivery_events_notification", "notification_id", "id"),
    Index("delivery_events_user", "user_id", "id"),
    Index("delivery_events_at", "at"),
)
"""One row per event (``notifier.deliverylog.events.Event``); ``id`` orders them and pages queries."""
