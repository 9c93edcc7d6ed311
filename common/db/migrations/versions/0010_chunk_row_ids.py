"""Each reconcile chunk keeps the ids of its ``todo`` rows when it was planned, and is claimed
by them. In an incremental run a chunk's thousand rows are spread over the audience, and the
claim by id range read every row between its first and last: a thousand rows among 100,000
ids took 42 ms to claim instead of 16 ms.

Chunks planned before this migration get the ids their range claims now, so a run parked or
in flight in its queue carries on with the same rows.

Revision ID: 0010_chunk_row_ids
Revises: 0009_cache_unsampled_json
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010_chunk_row_ids"
down_revision: str | Sequence[str] | None = "0009_cache_unsampled_json"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHUNKS = "mailchimpsync_reconcile_chunk"


def upgrade() -> None:
    op.add_column(
        CHUNKS,
        sa.Column(
            "row_ids",
            postgresql.ARRAY(sa.BigInteger()),
            nullable=False,
            server_default=sa.text("'{}'"),
        ),
    )
    op.execute(f"""
        UPDATE {CHUNKS} k SET row_ids = ARRAY(
            SELECT c.id FROM civicrm_mailchimpsync_cache c
            WHERE c.mailchimp_list_id = k.list_id AND c.sync_status = 'todo'
              AND c.id BETWEEN k.first_id AND k.last_id
            ORDER BY c.id)
        WHERE k.decided_at IS NULL
    """)


def downgrade() -> None:
    op.drop_column(CHUNKS, "row_ids")
