"""The cache's index on the contact id alone goes: every lookup by contact also names the
audience (the audiences of the configured connections, when none is given), which the
(audience, contact) index serves; one index less to write for each row a sync inserts or
links to a contact.

Revision ID: 0005_cache_contact_index
Revises: 0004_reconcile_chunks
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005_cache_contact_index"
down_revision: str | Sequence[str] | None = "0004_reconcile_chunks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CACHE = "civicrm_mailchimpsync_cache"
CONTACT_INDEX = "ix_civicrm_mailchimpsync_cache_civicrm_contact_id"


def upgrade() -> None:
    op.drop_index(CONTACT_INDEX, CACHE)


def downgrade() -> None:
    op.create_index(CONTACT_INDEX, CACHE, ["civicrm_contact_id"])
