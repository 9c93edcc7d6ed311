"""A partial index of the rows waiting for a contact (subscribed or pending at Mailchimp,
none linked), in id order: readyToCreateNewContactsFromMailchimp pages them by id, and
without it walked the whole audience in id order to find none (1.1 s a run at a million
members).

Revision ID: 0007_cache_awaiting_contact
Revises: 0006_cache_fail_reason
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_cache_awaiting_contact"
down_revision: str | Sequence[str] | None = "0006_cache_fail_reason"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CACHE = "civicrm_mailchimpsync_cache"
INDEX = "ix_civicrm_mailchimpsync_cache_awaiting_contact"
AWAITING = "civicrm_contact_id IS NULL AND mailchimp_status IN ('subscribed', 'pending')"


def upgrade() -> None:
    op.create_index(INDEX, CACHE, ["mailchimp_list_id", "id"], postgresql_where=sa.text(AWAITING))


def downgrade() -> None:
    op.drop_index(INDEX, CACHE)
