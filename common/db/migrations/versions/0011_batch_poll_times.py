"""Each batch row keeps when the poller last read the batch from Mailchimp (``checked_at``)
and when the batch last moved on (``progressed_at``: its status or its finished operations
changed). The poller read every unfinished batch on every tick (15 s): Mailchimp runs one
batch per account at a time, so a big run's queued batches were read hundreds of times each
while they waited. It now backs off a batch that is not moving, and a batch counts as
stalled by how long it has not moved, not by whether it moved in the last tick.

Revision ID: 0011_batch_poll_times
Revises: 0010_chunk_row_ids
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_batch_poll_times"
down_revision: str | Sequence[str] | None = "0010_chunk_row_ids"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = "civicrm_mailchimpsync_batch"


def upgrade() -> None:
    # Nullable without defaults: added without rewriting the table. A row never checked is
    # due at the next tick, and one that never moved counts from its submission.
    op.add_column(BATCH, sa.Column("checked_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column(BATCH, sa.Column("progressed_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column(BATCH, "progressed_at")
    op.drop_column(BATCH, "checked_at")
