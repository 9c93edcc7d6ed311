"""With CiviCRM as the CRM (``MCSYNC_CRM_URL``), the subscription history of each group is
read incrementally into the copy: ``mailchimpsync_crm_read`` keeps the history id read
through per group.

Revision ID: 0014_crm_read
Revises: 0013_schedule_slots
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014_crm_read"
down_revision: str | Sequence[str] | None = "0013_schedule_slots"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "mailchimpsync_crm_read",
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("history_id", sa.BigInteger(), nullable=False),
        sa.Column("read_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("group_id", name=op.f("pk_mailchimpsync_crm_read")),
    )


def downgrade() -> None:
    op.drop_table("mailchimpsync_crm_read")
