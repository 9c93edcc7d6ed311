"""The chunks of a run's reconcile queue, with their row counts and when each was decided:
the run's progress and the end of its queue without counting the audience's ``todo`` rows.
So the cache's ``sync_status`` index goes, and its pages keep room (fillfactor): deciding a
row then updates it in place (HOT) instead of writing an entry in each of its indexes.

Revision ID: 0004_reconcile_chunks
Revises: 0003_webhook_inbox
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_reconcile_chunks"
down_revision: str | Sequence[str] | None = "0003_webhook_inbox"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHUNKS = "mailchimpsync_reconcile_chunk"
CACHE = "civicrm_mailchimpsync_cache"
TODO_INDEX = "ix_civicrm_mailchimpsync_cache_mailchimp_list_id_sync_status_id"


def upgrade() -> None:
    op.create_table(
        CHUNKS,
        sa.Column("list_id", sa.String(32), nullable=False),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("first_id", sa.BigInteger(), nullable=False),
        sa.Column("last_id", sa.BigInteger(), nullable=False),
        sa.Column("row_count", sa.Integer(), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("list_id", "run_id", "first_id", name=op.f(f"pk_{CHUNKS}")),
    )
    op.drop_index(TODO_INDEX, CACHE)
    op.execute(f"ALTER TABLE {CACHE} SET (fillfactor = 60)")


def downgrade() -> None:
    op.execute(f"ALTER TABLE {CACHE} RESET (fillfactor)")
    op.create_index(TODO_INDEX, CACHE, ["mailchimp_list_id", "sync_status", "id"])
    op.drop_table(CHUNKS)
