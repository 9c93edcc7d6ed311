"""Run state: the stage machine's columns on the status table, and the fetch pages of a run.

Revision ID: 0002_run_state
Revises: 0001_initial
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002_run_state"
down_revision: str | Sequence[str] | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUS = "civicrm_mailchimpsync_status"
STAGE_VALID = (
    "stage IN ('readyToFetch', 'readyToFixContactIds', 'readyToCreateNewContactsFromMailchimp', "
    "'readyToCleanUpDuplicates', 'readyToAddCiviOnly', 'readyToCheckForGroupChanges', "
    "'readyToCheckForDataUpdates', 'readyToReconcileQueue', 'readyToSubmitUpdates')"
)
TIMESTAMPS = (
    "run_started_at",
    "sync_started_at",
    "fetch_since",
    "heartbeat_at",
    "last_sync_at",
)


def upgrade() -> None:
    op.add_column(
        STATUS, sa.Column("stage", sa.String(64), server_default="readyToFetch", nullable=False)
    )
    op.add_column(STATUS, sa.Column("run_id", sa.String(36), nullable=True))
    op.add_column(STATUS, sa.Column("run_params", postgresql.JSONB(), nullable=True))
    op.add_column(STATUS, sa.Column("parked_reason", sa.Text(), nullable=True))
    for name in TIMESTAMPS:
        op.add_column(STATUS, sa.Column(name, sa.DateTime(timezone=True), nullable=True))
    op.create_check_constraint(op.f(f"ck_{STATUS}_stage_valid"), STATUS, STAGE_VALID)
    op.create_table(
        "mailchimpsync_fetch_page",
        sa.Column("list_id", sa.String(32), nullable=False),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("page_offset", sa.Integer(), nullable=False),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("member_count", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint(
            "list_id", "run_id", "page_offset", name=op.f("pk_mailchimpsync_fetch_page")
        ),
    )


def downgrade() -> None:
    op.drop_table("mailchimpsync_fetch_page")
    op.drop_constraint(op.f(f"ck_{STATUS}_stage_valid"), STATUS, type_="check")
    for name in ("stage", "run_id", "run_params", "parked_reason", *TIMESTAMPS):
        op.drop_column(STATUS, name)
