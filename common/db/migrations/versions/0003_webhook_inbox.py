"""The webhook inbox: audience events stored before Mailchimp's request is answered; and the
cache's email index, so a webhook finds its member's row without a scan of the audience.

Revision ID: 0003_webhook_inbox
Revises: 0002_run_state
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003_webhook_inbox"
down_revision: str | Sequence[str] | None = "0002_run_state"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INBOX = "mailchimpsync_webhook_event"
CACHE_EMAIL_INDEX = "ix_civicrm_mailchimpsync_cache_list_lower_email"


def upgrade() -> None:
    op.create_table(
        INBOX,
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("mailchimp_list_id", sa.String(32), nullable=False),
        sa.Column("event_type", sa.String(20), nullable=False),
        sa.Column("data", postgresql.JSONB(), nullable=False),
        sa.Column(
            "received_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{INBOX}")),
    )
    op.create_index(
        "ix_mailchimpsync_webhook_event_unpublished",
        INBOX,
        ["id"],
        postgresql_where=sa.text("published_at IS NULL"),
    )
    op.create_index(
        "ix_mailchimpsync_webhook_event_unprocessed",
        INBOX,
        ["mailchimp_list_id", "id"],
        postgresql_where=sa.text("processed_at IS NULL"),
    )

    op.create_index(
        CACHE_EMAIL_INDEX,
        "civicrm_mailchimpsync_cache",
        ["mailchimp_list_id", sa.text("lower(mailchimp_email)")],
    )


def downgrade() -> None:
    op.drop_index(CACHE_EMAIL_INDEX, "civicrm_mailchimpsync_cache")
    op.drop_table(INBOX)
