"""Each completed run is remembered (``mailchimpsync_run_history``): when it started and
ended and what it changed on each side, for the Status page's chart of the last runs.

Revision ID: 0015_run_history
Revises: 0014_crm_read
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015_run_history"
down_revision: str | Sequence[str] | None = "0014_crm_read"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "mailchimpsync_run_history",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("list_id", sa.String(length=32), nullable=False),
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("contacts_created", sa.Integer(), nullable=False),
        sa.Column("crm_added", sa.Integer(), nullable=False),
        sa.Column("crm_removed", sa.Integer(), nullable=False),
        sa.Column("mailchimp_updates", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mailchimpsync_run_history")),
        sa.UniqueConstraint(
            "list_id", "run_id", name=op.f("uq_mailchimpsync_run_history_list_id_run_id")
        ),
    )
    op.create_index(
        op.f("ix_mailchimpsync_run_history_list_id_finished_at"),
        "mailchimpsync_run_history",
        ["list_id", "finished_at"],
    )


def downgrade() -> None:
    op.drop_table("mailchimpsync_run_history")
