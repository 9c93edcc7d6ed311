"""The CRM tables take every value CiviCRM's schema takes (``schema/*/*.entityType.php``):
no CHECK on a membership's or a history row's status (CiviCRM writes ``Deleted`` to the
history when a contact is deleted from a group), and the columns CiviCRM leaves nullable are
nullable here: a history row's group, method and status, a membership's status, an email's
contact and address, a contact's created and modified dates.

Revision ID: 0012_civicrm_values
Revises: 0011_batch_poll_times
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0012_civicrm_values"
down_revision: str | Sequence[str] | None = "0011_batch_poll_times"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHECKS = {
    "civicrm_group_contact": "ck_civicrm_group_contact_status_valid",
    "civicrm_subscription_history": "ck_civicrm_subscription_history_status_valid",
}
NULLABLE = {
    "civicrm_contact": ("created_date", "modified_date"),
    "civicrm_email": ("contact_id", "email"),
    "civicrm_group_contact": ("status",),
    "civicrm_subscription_history": ("group_id", "method", "status"),
}


def upgrade() -> None:
    for table, name in CHECKS.items():
        op.drop_constraint(op.f(name), table, type_="check")
    for table, columns in NULLABLE.items():
        for column in columns:
            op.alter_column(table, column, nullable=True)


def downgrade() -> None:
    # Fails, changing nothing, while rows hold values the old constraints refuse.
    for table, columns in NULLABLE.items():
        for column in columns:
            op.alter_column(table, column, nullable=False)
    for table, name in CHECKS.items():
        op.create_check_constraint(op.f(name), table, "status IN ('Added', 'Removed', 'Pending')")
