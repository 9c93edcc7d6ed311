"""Every table on one MetaData: the sync's own tables (seed names), config, and the CRM subset.

Postgres is the only dialect: the stages rely on JSONB, ``ON CONFLICT`` and ``SKIP LOCKED``.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Connection,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    event,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _now() -> Column[object]:
    return Column(
        "created_date", DateTime(timezone=True), nullable=False, server_default=func.now()
    )


# --- the sync's own tables (seed: table reference) ---------------------------------------

CACHE_FILLFACTOR = 45

# sync_status is deliberately not indexed and pages keep room (fillfactor): deciding a row
# (status and snapshot) then updates it in place (HOT) instead of writing an entry in every
# index; a run tracks its queue by chunks (reconcile_chunk), not by an index of todo rows.
# The snapshot makes a decided row about a twelfth bigger, so a page must keep room for the
# new versions of all its rows: at 60, half of them still went to every index (0008).
cache = Table(
    "civicrm_mailchimpsync_cache",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("mailchimp_list_id", String(32), nullable=False),
    Column("mailchimp_member_id", String(32)),
    Column("mailchimp_email", String(255)),
    Column("mailchimp_status", String(20)),
    Column("mailchimp_updated", DateTime(timezone=True)),
    Column("mailchimp_data", JSONB),
    Column("civicrm_data", JSONB),
    Column("civicrm_groups", JSONB),
    Column("civicrm_contact_id", Integer),
    Column("sync_status", String(8), nullable=False, server_default="todo"),
    # Ours, not the seed's: why the row last failed to sync (the decision table's reason or
    # Mailchimp's error); written with ``fail``, cleared when the row is decided otherwise.
    Column("fail_reason", Text),
    CheckConstraint(
        "sync_status IN ('ok', 'todo', 'live', 'redo', 'fail')", name="sync_status_valid"
    ),
    CheckConstraint(
        "mailchimp_status IS NULL OR mailchimp_status IN "
        "('subscribed', 'unsubscribed', 'cleaned', 'pending', 'transactional', 'archived')",
        name="mailchimp_status_valid",
    ),
    UniqueConstraint("mailchimp_list_id", "mailchimp_member_id"),
    Index(None, "mailchimp_list_id", "civicrm_contact_id"),
    Index(
        "ix_civicrm_mailchimpsync_cache_list_lower_email",
        "mailchimp_list_id",
        func.lower(text("mailchimp_email")),
    ),
    # The rows readyToCreateNewContactsFromMailchimp pages through, in id order; in a synced
    # audience there are none, and the index stays empty.
    Index(
        "ix_civicrm_mailchimpsync_cache_awaiting_contact",
        "mailchimp_list_id",
        "id",
        postgresql_where=text(
            "civicrm_contact_id IS NULL AND mailchimp_status IN ('subscribed', 'pending')"
        ),
    ),
    postgresql_with={"fillfactor": CACHE_FILLFACTOR},
)

# No planner statistics for the cache's JSON documents: no stage's plan depends on them (they
# are only compared or read from), and sampling them was 40% of each ANALYZE a run makes of
# the cache before its stages (0009).
CACHE_UNSAMPLED_COLUMNS = ("mailchimp_data", "civicrm_data", "civicrm_groups")


@event.listens_for(cache, "after_create")
def _leave_json_unsampled(target: Table, connection: Connection, **_: object) -> None:
    columns = (f"ALTER COLUMN {name} SET STATISTICS 0" for name in CACHE_UNSAMPLED_COLUMNS)
    connection.execute(text(f"ALTER TABLE {target.name} " + ", ".join(columns)))


batch = Table(
    "civicrm_mailchimpsync_batch",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("mailchimp_list_id", String(32), nullable=False),
    Column("mailchimp_batch_id", String(32)),
    Column("status", String(20)),
    Column("submitted_at", DateTime(timezone=True)),
    Column("completed_at", DateTime(timezone=True)),
    Column("finished_operations", Integer, nullable=False, server_default="0"),
    Column("errored_operations", Integer, nullable=False, server_default="0"),
    Column("total_operations", Integer, nullable=False, server_default="0"),
    Column("response_processed", SmallInteger, nullable=False, server_default="0"),
    # Ours, not the seed's: when the poller last read the batch, and when the batch last
    # moved on (status or finished operations changed); the poller backs off a batch that
    # is not moving, and reports it stalled after a while (services.submitter.polling).
    Column("checked_at", DateTime(timezone=True)),
    Column("progressed_at", DateTime(timezone=True)),
    CheckConstraint("response_processed IN (0, 1, 2)", name="response_processed_valid"),
    UniqueConstraint("mailchimp_batch_id"),
    Index(None, "mailchimp_list_id", "response_processed"),
)

update = Table(
    "civicrm_mailchimpsync_update",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column(
        "mailchimpsync_cache_id",
        BigInteger,
        ForeignKey(cache.c.id, ondelete="CASCADE"),
        nullable=False,
    ),
    Column("mailchimpsync_batch_id", BigInteger, ForeignKey(batch.c.id, ondelete="SET NULL")),
    Column("data", JSONB, nullable=False),
    Column("completed", Boolean, nullable=False, server_default="false"),
    Column("error_response", Text),
    _now(),
    Index(None, "mailchimpsync_batch_id", "completed"),
    Index(None, "mailchimpsync_cache_id", "completed"),
    Index(
        "ix_civicrm_mailchimpsync_update_unsubmitted",
        "id",
        postgresql_where=text("mailchimpsync_batch_id IS NULL AND NOT completed"),
    ),
)

STAGE_VALID = (
    "stage IN ('readyToFetch', 'readyToFixContactIds', 'readyToCreateNewContactsFromMailchimp', "
    "'readyToCleanUpDuplicates', 'readyToAddCiviOnly', 'readyToCheckForGroupChanges', "
    "'readyToCheckForDataUpdates', 'readyToReconcileQueue', 'readyToSubmitUpdates')"
)

# One row per audience. The stage is changed only by compare-and-set on (stage, run_id), so two
# workers never run the same stage of one audience; ``data`` keeps the log of messages.
status = Table(
    "civicrm_mailchimpsync_status",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("list_id", String(32), nullable=False, unique=True),
    Column("data", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("stage", String(64), nullable=False, server_default="readyToFetch"),
    Column("run_id", String(36)),
    Column("run_params", JSONB),
    Column("run_started_at", DateTime(timezone=True)),
    Column("sync_started_at", DateTime(timezone=True)),
    Column("fetch_since", DateTime(timezone=True)),
    Column("parked_reason", Text),
    Column("heartbeat_at", DateTime(timezone=True)),
    Column("last_sync_at", DateTime(timezone=True)),
    Column("last_sync_finished_at", DateTime(timezone=True)),
    CheckConstraint(STAGE_VALID, name="stage_valid"),
)

# The pages of one run's fetch: a page is fetched once; the last one to land moves the run on.
fetch_page = Table(
    "mailchimpsync_fetch_page",
    metadata,
    Column("list_id", String(32), primary_key=True),
    Column("run_id", String(36), primary_key=True),
    Column("page_offset", Integer, primary_key=True),
    Column("fetched_at", DateTime(timezone=True)),
    Column("member_count", Integer),
)

# The chunks of one run's reconcile queue: planned with their row counts, marked when decided
# (in the chunk's transaction), so a run's progress needs no count of the audience's rows.
reconcile_chunk = Table(
    "mailchimpsync_reconcile_chunk",
    metadata,
    Column("list_id", String(32), primary_key=True),
    Column("run_id", String(36), primary_key=True),
    Column("first_id", BigInteger, primary_key=True),
    Column("last_id", BigInteger, nullable=False),
    Column("row_count", Integer, nullable=False),
    Column("decided_at", DateTime(timezone=True)),
    # The ids of the chunk's todo rows when it was planned: in an incremental run they are
    # spread over the audience, and a claim by id range read every row between them.
    Column("row_ids", ARRAY(BigInteger), nullable=False, server_default=text("'{}'")),
)

# The times of the sync schedule (MCSYNC_SYNC_SCHEDULE) already triggered: the process that
# records a time first sends its triggers, so replicas running the schedule trigger it once.
schedule_slot = Table(
    "mailchimpsync_schedule_slot",
    metadata,
    Column("slot", DateTime(timezone=True), primary_key=True),
    Column("triggered_at", DateTime(timezone=True), nullable=False),
    Column("audiences", Integer, nullable=False),
)

# Audience webhook events, stored before Mailchimp's request is answered; ``published_at`` says
# the reconciler was told (a relay retries the rest), ``processed_at`` that it acted on it.
webhook_event = Table(
    "mailchimpsync_webhook_event",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("mailchimp_list_id", String(32), nullable=False),
    Column("event_type", String(20), nullable=False),
    Column("data", JSONB, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("published_at", DateTime(timezone=True)),
    Column("processed_at", DateTime(timezone=True)),
    Column("outcome", Text),
    Index(
        "ix_mailchimpsync_webhook_event_unpublished",
        "id",
        postgresql_where=text("published_at IS NULL"),
    ),
    Index(
        "ix_mailchimpsync_webhook_event_unprocessed",
        "mailchimp_list_id",
        "id",
        postgresql_where=text("processed_at IS NULL"),
    ),
)

# --- configuration -------------------------------------------------------------------------

account = Table(
    "mailchimpsync_account",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(255), nullable=False),
    Column("api_key", String(64), nullable=False, unique=True),
    Column("batch_webhook_id", String(32)),
)

connection = Table(
    "mailchimpsync_connection",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("account_id", Integer, ForeignKey(account.c.id, ondelete="CASCADE"), nullable=False),
    Column("mailchimp_list_id", String(32), nullable=False, unique=True),
    Column("subscription_group_id", Integer, nullable=False, unique=True),
    Column("trust_override", String(10), nullable=False, server_default=""),
    Column("data_sync", Boolean, nullable=False, server_default="false"),
    Column("webhook_id", String(32)),
    CheckConstraint("trust_override IN ('', 'Mailchimp', 'CiviCRM')", name="trust_valid"),
)

interest_map = Table(
    "mailchimpsync_interest",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "connection_id",
        Integer,
        ForeignKey(connection.c.id, ondelete="CASCADE"),
        nullable=False,
    ),
    Column("interest_id", String(32), nullable=False),
    Column("group_id", Integer, nullable=False),
    Column("trust_override", String(10), nullable=False, server_default=""),
    CheckConstraint("trust_override IN ('', 'Mailchimp', 'CiviCRM')", name="trust_valid"),
    UniqueConstraint("connection_id", "interest_id"),
    UniqueConstraint("connection_id", "group_id"),
)

webhook_secret = Table(
    "mailchimpsync_webhook_secret",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("account_id", Integer, ForeignKey(account.c.id, ondelete="CASCADE"), nullable=False),
    Column("secret", String(64), nullable=False, unique=True),
    _now(),
)

# Each completed run: when it started and ended and what it changed on each side (the Status
# page's chart); the newest RUN_HISTORY_KEPT per audience are kept.
run_history = Table(
    "mailchimpsync_run_history",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("list_id", String(32), nullable=False),
    Column("run_id", String(36), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=False),
    Column("contacts_created", Integer, nullable=False),
    Column("crm_added", Integer, nullable=False),
    Column("crm_removed", Integer, nullable=False),
    Column("mailchimp_updates", Integer, nullable=False),
    UniqueConstraint("list_id", "run_id"),
    Index(None, "list_id", "finished_at"),
)

# With CiviCRM as the CRM: the history id read into the copy through, per group.
crm_read = Table(
    "mailchimpsync_crm_read",
    metadata,
    Column("group_id", Integer, primary_key=True),
    Column("history_id", BigInteger, nullable=False),
    Column("read_at", DateTime(timezone=True), nullable=False),
)

# --- the CRM (CiviCRM's names and meaning, a subset) ----------------------------------------
# Each column takes what CiviCRM's schema takes (``schema/*/*.entityType.php``): no CHECK on a
# status (its history holds ``Deleted`` too), nullable where CiviCRM's column is.

contact = Table(
    "civicrm_contact",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("contact_type", String(64), nullable=False, server_default="Individual"),
    Column("first_name", String(64)),
    Column("last_name", String(64)),
    Column("source", String(255)),
    Column("is_deleted", Boolean, nullable=False, server_default="false"),
    Column("created_date", DateTime(timezone=True), server_default=func.now()),
    Column("modified_date", DateTime(timezone=True), server_default=func.now()),
)

email = Table(
    "civicrm_email",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("contact_id", Integer, ForeignKey(contact.c.id, ondelete="CASCADE")),
    Column("email", String(254)),
    Column("is_primary", Boolean, nullable=False, server_default="false"),
    Column("is_bulkmail", Boolean, nullable=False, server_default="false"),
    Column("on_hold", SmallInteger, nullable=False, server_default="0"),
    Column("hold_date", DateTime(timezone=True)),
    Index(None, "contact_id"),
    Index("ix_civicrm_email_lower_email", func.lower(text("email"))),
)

group = Table(
    "civicrm_group",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("title", String(255), nullable=False),
)

group_contact = Table(
    "civicrm_group_contact",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("group_id", Integer, ForeignKey(group.c.id, ondelete="CASCADE"), nullable=False),
    Column("contact_id", Integer, ForeignKey(contact.c.id, ondelete="CASCADE"), nullable=False),
    Column("status", String(8)),
    UniqueConstraint("group_id", "contact_id"),
    Index(None, "contact_id"),
)

subscription_history = Table(
    "civicrm_subscription_history",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("contact_id", Integer, ForeignKey(contact.c.id, ondelete="CASCADE"), nullable=False),
    Column("group_id", Integer, ForeignKey(group.c.id, ondelete="CASCADE")),
    Column("date", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("method", String(8)),
    Column("status", String(8)),
    Index(None, "contact_id", "group_id", "date"),
    Index(None, "group_id", "date"),
)
