"""The sync schedule (``MCSYNC_SYNC_SCHEDULE``, hourly by default) records each time it
triggered, so the replicas running it trigger each time once; and each audience's status
keeps when its last completed sync ended (``last_sync_finished_at``, for its duration in
the metrics).

Revision ID: 0013_schedule_slots
Revises: 0012_civicrm_values
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013_schedule_slots"
down_revision: str | Sequence[str] | None = "0012_civicrm_values"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "mailchimpsync_schedule_slot",
        sa.Column("slot", sa.DateTime(timezone=True), nullable=False),
        sa.Column("triggered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("audiences", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("slot", name=op.f("pk_mailchimpsync_schedule_slot")),
    )
    op.add_column(
        "civicrm_mailchimpsync_status",
        sa.Column("last_sync_finished_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_column("civicrm_mailchimpsync_status", "last_sync_finished_at")
    op.drop_table("mailchimpsync_schedule_slot")
