"""delivery_events and its indexes

Revision ID: 0001
Revises:
Created: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "delivery_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("notification_id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(256), nullable=False),
        sa.Column("type", sa.String(64)),
        sa.Column("channel", sa.String(32)),
        sa.Column("target", sa.String(512)),
        sa.Column("detail", sa.JSON, nullable=False),
    )
    op.create_index("delivery_events_notification", "delivery_events", ["notification_id", "id"])
    op.create_index("delivery_events_user", "delivery_events", ["user_id", "id"])
    op.create_index("delivery_events_at", "delivery_events", ["at"])


def downgrade() -> None:
    op.drop_table("delivery_events")
