"""Initial schema: the sync's tables, its configuration and the CRM subset.

Written out by hand to match ``common/db/schema.py`` exactly, including the constraint names
its naming convention produces (Postgres truncates names over 63 characters, so SQLAlchemy
shortens those with a hash suffix; they are spelled here as they end up in the database).
Every name is wrapped in ``op.f()``: Alembic builds these tables on a MetaData with the
schema's naming convention, which would otherwise prefix CHECK names a second time.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001_initial"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUS_VALID = "status IN ('Added', 'Removed', 'Pending')"
TRUST_VALID = "trust_override IN ('', 'Mailchimp', 'CiviCRM')"


def _created_date() -> sa.Column[object]:
    return sa.Column(
        "created_date", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
    )


def upgrade() -> None:
    _create_sync_tables()
    _create_config_tables()
    _create_crm_tables()


def downgrade() -> None:
    for table in (
        "civicrm_subscription_history",
        "civicrm_group_contact",
        "civicrm_group",
        "civicrm_email",
        "civicrm_contact",
        "mailchimpsync_webhook_secret",
        "mailchimpsync_interest",
        "mailchimpsync_connection",
        "mailchimpsync_account",
        "civicrm_mailchimpsync_status",
        "civicrm_mailchimpsync_update",
        "civicrm_mailchimpsync_batch",
        "civicrm_mailchimpsync_cache",
    ):
        op.drop_table(table)  # drops the table's indexes and constraints with it


def _create_sync_tables() -> None:
    op.create_table(
        "civicrm_mailchimpsync_cache",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("mailchimp_list_id", sa.String(32), nullable=False),
        sa.Column("mailchimp_member_id", sa.String(32), nullable=True),
        sa.Column("mailchimp_email", sa.String(255), nullable=True),
        sa.Column("mailchimp_status", sa.String(20), nullable=True),
        sa.Column("mailchimp_updated", sa.DateTime(timezone=True), nullable=True),
        sa.Column("mailchimp_data", postgresql.JSONB(), nullable=True),
        sa.Column("civicrm_data", postgresql.JSONB(), nullable=True),
        sa.Column("civicrm_groups", postgresql.JSONB(), nullable=True),
        sa.Column("civicrm_contact_id", sa.Integer(), nullable=True),
        sa.Column("sync_status", sa.String(8), server_default="todo", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_civicrm_mailchimpsync_cache")),
        sa.CheckConstraint(
            "sync_status IN ('ok', 'todo', 'live', 'redo', 'fail')",
            name=op.f("ck_civicrm_mailchimpsync_cache_sync_status_valid"),
        ),
        sa.CheckConstraint(
            "mailchimp_status IS NULL OR mailchimp_status IN "
            "('subscribed', 'unsubscribed', 'cleaned', 'pending', 'transactional', 'archived')",
            name=op.f("ck_civicrm_mailchimpsync_cache_mailchimp_status_valid"),
        ),
        sa.UniqueConstraint(
            "mailchimp_list_id",
            "mailchimp_member_id",
            name=op.f("uq_civicrm_mailchimpsync_cache_mailchimp_list_id_mailch_0544"),
        ),
    )
    _index(
        "ix_civicrm_mailchimpsync_cache_mailchimp_list_id_sync_status_id",
        "civicrm_mailchimpsync_cache",
        "mailchimp_list_id",
        "sync_status",
        "id",
    )
    _index(
        "ix_civicrm_mailchimpsync_cache_mailchimp_list_id_civicr_8d5b",
        "civicrm_mailchimpsync_cache",
        "mailchimp_list_id",
        "civicrm_contact_id",
    )
    _index(
        "ix_civicrm_mailchimpsync_cache_civicrm_contact_id",
        "civicrm_mailchimpsync_cache",
        "civicrm_contact_id",
    )

    op.create_table(
        "civicrm_mailchimpsync_batch",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("mailchimp_list_id", sa.String(32), nullable=False),
        sa.Column("mailchimp_batch_id", sa.String(32), nullable=True),
        sa.Column("status", sa.String(20), nullable=True),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_operations", sa.Integer(), server_default="0", nullable=False),
        sa.Column("errored_operations", sa.Integer(), server_default="0", nullable=False),
        sa.Column("total_operations", sa.Integer(), server_default="0", nullable=False),
        sa.Column("response_processed", sa.SmallInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_civicrm_mailchimpsync_batch")),
        sa.CheckConstraint(
            "response_processed IN (0, 1, 2)",
            name=op.f("ck_civicrm_mailchimpsync_batch_response_processed_valid"),
        ),
        sa.UniqueConstraint(
            "mailchimp_batch_id", name=op.f("uq_civicrm_mailchimpsync_batch_mailchimp_batch_id")
        ),
    )
    _index(
        "ix_civicrm_mailchimpsync_batch_mailchimp_list_id_respon_3049",
        "civicrm_mailchimpsync_batch",
        "mailchimp_list_id",
        "response_processed",
    )

    op.create_table(
        "civicrm_mailchimpsync_update",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("mailchimpsync_cache_id", sa.BigInteger(), nullable=False),
        sa.Column("mailchimpsync_batch_id", sa.BigInteger(), nullable=True),
        sa.Column("data", postgresql.JSONB(), nullable=False),
        sa.Column("completed", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("error_response", sa.Text(), nullable=True),
        _created_date(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_civicrm_mailchimpsync_update")),
        sa.ForeignKeyConstraint(
            ["mailchimpsync_cache_id"],
            ["civicrm_mailchimpsync_cache.id"],
            name=op.f("fk_civicrm_mailchimpsync_update_mailchimpsync_cache_id__903b"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["mailchimpsync_batch_id"],
            ["civicrm_mailchimpsync_batch.id"],
            name=op.f("fk_civicrm_mailchimpsync_update_mailchimpsync_batch_id__bc83"),
            ondelete="SET NULL",
        ),
    )
    _index(
        "ix_civicrm_mailchimpsync_update_mailchimpsync_batch_id__c20e",
        "civicrm_mailchimpsync_update",
        "mailchimpsync_batch_id",
        "completed",
    )
    _index(
        "ix_civicrm_mailchimpsync_update_mailchimpsync_cache_id__718c",
        "civicrm_mailchimpsync_update",
        "mailchimpsync_cache_id",
        "completed",
    )
    op.create_index(
        op.f("ix_civicrm_mailchimpsync_update_unsubmitted"),
        "civicrm_mailchimpsync_update",
        ["id"],
        postgresql_where=sa.text("mailchimpsync_batch_id IS NULL AND NOT completed"),
    )

    op.create_table(
        "civicrm_mailchimpsync_status",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("list_id", sa.String(32), nullable=False),
        sa.Column(
            "data", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_civicrm_mailchimpsync_status")),
        sa.UniqueConstraint("list_id", name=op.f("uq_civicrm_mailchimpsync_status_list_id")),
    )


def _create_config_tables() -> None:
    op.create_table(
        "mailchimpsync_account",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("api_key", sa.String(64), nullable=False),
        sa.Column("batch_webhook_id", sa.String(32), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mailchimpsync_account")),
        sa.UniqueConstraint("api_key", name=op.f("uq_mailchimpsync_account_api_key")),
    )
    op.create_table(
        "mailchimpsync_connection",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("mailchimp_list_id", sa.String(32), nullable=False),
        sa.Column("subscription_group_id", sa.Integer(), nullable=False),
        sa.Column("trust_override", sa.String(10), server_default="", nullable=False),
        sa.Column("data_sync", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("webhook_id", sa.String(32), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mailchimpsync_connection")),
        sa.CheckConstraint(TRUST_VALID, name=op.f("ck_mailchimpsync_connection_trust_valid")),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["mailchimpsync_account.id"],
            name=op.f("fk_mailchimpsync_connection_account_id_mailchimpsync_account"),
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "mailchimp_list_id", name=op.f("uq_mailchimpsync_connection_mailchimp_list_id")
        ),
        sa.UniqueConstraint(
            "subscription_group_id", name=op.f("uq_mailchimpsync_connection_subscription_group_id")
        ),
    )
    op.create_table(
        "mailchimpsync_interest",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("connection_id", sa.Integer(), nullable=False),
        sa.Column("interest_id", sa.String(32), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("trust_override", sa.String(10), server_default="", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mailchimpsync_interest")),
        sa.CheckConstraint(TRUST_VALID, name=op.f("ck_mailchimpsync_interest_trust_valid")),
        sa.UniqueConstraint(
            "connection_id",
            "interest_id",
            name=op.f("uq_mailchimpsync_interest_connection_id_interest_id"),
        ),
        sa.UniqueConstraint(
            "connection_id",
            "group_id",
            name=op.f("uq_mailchimpsync_interest_connection_id_group_id"),
        ),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["mailchimpsync_connection.id"],
            name=op.f("fk_mailchimpsync_interest_connection_id_mailchimpsync_c_cddd"),
            ondelete="CASCADE",
        ),
    )
    op.create_table(
        "mailchimpsync_webhook_secret",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("secret", sa.String(64), nullable=False),
        _created_date(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mailchimpsync_webhook_secret")),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["mailchimpsync_account.id"],
            name=op.f("fk_mailchimpsync_webhook_secret_account_id_mailchimpsyn_5d3e"),
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("secret", name=op.f("uq_mailchimpsync_webhook_secret_secret")),
    )


def _create_crm_tables() -> None:
    op.create_table(
        "civicrm_contact",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("contact_type", sa.String(64), server_default="Individual", nullable=False),
        sa.Column("first_name", sa.String(64), nullable=True),
        sa.Column("last_name", sa.String(64), nullable=True),
        sa.Column("source", sa.String(255), nullable=True),
        sa.Column("is_deleted", sa.Boolean(), server_default="false", nullable=False),
        _created_date(),
        sa.Column(
            "modified_date",
            sa.DateTime(timezone=True),
            server_default=sa.func.now(),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_civicrm_contact")),
    )
    op.create_table(
        "civicrm_email",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("is_primary", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("is_bulkmail", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("on_hold", sa.SmallInteger(), server_default="0", nullable=False),
        sa.Column("hold_date", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_civicrm_email")),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["civicrm_contact.id"],
            name=op.f("fk_civicrm_email_contact_id_civicrm_contact"),
            ondelete="CASCADE",
        ),
    )
    _index("ix_civicrm_email_contact_id", "civicrm_email", "contact_id")
    op.create_index(
        op.f("ix_civicrm_email_lower_email"), "civicrm_email", [sa.text("lower(email)")]
    )

    op.create_table(
        "civicrm_group",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("title", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_civicrm_group")),
        sa.UniqueConstraint("name", name=op.f("uq_civicrm_group_name")),
    )
    op.create_table(
        "civicrm_group_contact",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_civicrm_group_contact")),
        sa.CheckConstraint(STATUS_VALID, name=op.f("ck_civicrm_group_contact_status_valid")),
        sa.UniqueConstraint(
            "group_id", "contact_id", name=op.f("uq_civicrm_group_contact_group_id_contact_id")
        ),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["civicrm_group.id"],
            name=op.f("fk_civicrm_group_contact_group_id_civicrm_group"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["civicrm_contact.id"],
            name=op.f("fk_civicrm_group_contact_contact_id_civicrm_contact"),
            ondelete="CASCADE",
        ),
    )
    _index("ix_civicrm_group_contact_contact_id", "civicrm_group_contact", "contact_id")

    op.create_table(
        "civicrm_subscription_history",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("date", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_civicrm_subscription_history")),
        sa.CheckConstraint(STATUS_VALID, name=op.f("ck_civicrm_subscription_history_status_valid")),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["civicrm_contact.id"],
            name=op.f("fk_civicrm_subscription_history_contact_id_civicrm_contact"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["civicrm_group.id"],
            name=op.f("fk_civicrm_subscription_history_group_id_civicrm_group"),
            ondelete="CASCADE",
        ),
    )
    _index(
        "ix_civicrm_subscription_history_contact_id_group_id_date",
        "civicrm_subscription_history",
        "contact_id",
        "group_id",
        "date",
    )
    _index(
        "ix_civicrm_subscription_history_group_id_date",
        "civicrm_subscription_history",
        "group_id",
        "date",
    )


def _index(name: str, table: str, *columns: str) -> None:
    op.create_index(op.f(name), table, list(columns))
