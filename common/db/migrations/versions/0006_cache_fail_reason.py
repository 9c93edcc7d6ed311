"""The cache keeps why a row cannot sync (``fail_reason``): the decision table's reason, or
Mailchimp's error for a refused update, so the troubleshooter and a run's summary can say
why instead of only how many.

Revision ID: 0006_cache_fail_reason
Revises: 0005_cache_contact_index
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_cache_fail_reason"
down_revision: str | Sequence[str] | None = "0005_cache_contact_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CACHE = "civicrm_mailchimpsync_cache"


def upgrade() -> None:
    # Nullable without a default: Postgres adds it without rewriting the table.
    op.add_column(CACHE, sa.Column("fail_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column(CACHE, "fail_reason")
