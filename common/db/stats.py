"""Read-only SQL for reporting: a run's progress, what it changed, and whether both sides agree."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from common.db.config import SyncConnection

PROGRESS = sa.text(
    """
    SELECT s.stage, s.run_id, s.parked_reason,
        (SELECT count(*) FROM mailchimpsync_fetch_page p
            WHERE p.list_id = s.list_id AND p.run_id = s.run_id) AS pages_total,
        (SELECT count(*) FROM mailchimpsync_fetch_page p
            WHERE p.list_id = s.list_id AND p.run_id = s.run_id
            AND p.fetched_at IS NOT NULL) AS pages_fetched,
        (SELECT count(*) FROM civicrm_mailchimpsync_cache c
            WHERE c.mailchimp_list_id = s.list_id AND c.sync_status = 'todo') AS todo,
        (SELECT count(*) FROM civicrm_mailchimpsync_update u
            JOIN civicrm_mailchimpsync_cache c ON c.id = u.mailchimpsync_cache_id
            WHERE c.mailchimp_list_id = s.list_id AND NOT u.completed
            AND u.mailchimpsync_batch_id IS NULL) AS unsubmitted,
        (SELECT count(*) FROM civicrm_mailchimpsync_batch b
            WHERE b.mailchimp_list_id = s.list_id AND b.response_processed < 2
            AND coalesce(b.status, '') <> 'aborted') AS batches_open
    FROM civicrm_mailchimpsync_status s
    WHERE s.list_id = :list_id
    """
)


@dataclass(frozen=True)
class Progress:
    """Where an audience's run stands."""

    stage: str
    active: bool
    parked_reason: str | None
    pages_total: int
    pages_fetched: int
    todo: int
    unsubmitted: int
    batches_open: int

    @property
    def settled(self) -> bool:
        """No run in progress and nothing left on its way to or back from Mailchimp."""
        return not self.active and not self.unsubmitted and not self.batches_open


def progress(conn: sa.Connection, list_id: str) -> Progress | None:
    row = conn.execute(PROGRESS, {"list_id": list_id}).one_or_none()
    if row is None:
        return None
    return Progress(
        stage=row.stage,
        active=row.run_id is not None and row.parked_reason is None,
        parked_reason=row.parked_reason,
        pages_total=row.pages_total,
        pages_fetched=row.pages_fetched,
        todo=row.todo,
        unsubmitted=row.unsubmitted,
        batches_open=row.batches_open,
    )


CHANGES = sa.text(
    """
    SELECT
        (SELECT count(*) FROM civicrm_contact
            WHERE source = 'mailchimpsync' AND created_date >= :since) AS contacts_created,
        (SELECT count(*) FROM civicrm_subscription_history
            WHERE method = 'MCsync' AND date >= :since AND status = 'Added'
            AND group_id = ANY(:group_ids)) AS crm_added,
        (SELECT count(*) FROM civicrm_subscription_history
            WHERE method = 'MCsync' AND date >= :since AND status = 'Removed'
            AND group_id = ANY(:group_ids)) AS crm_removed,
        (SELECT count(*) FROM civicrm_mailchimpsync_update u
            JOIN civicrm_mailchimpsync_cache c ON c.id = u.mailchimpsync_cache_id
            WHERE c.mailchimp_list_id = :list_id AND u.created_date >= :since
            AND u.completed AND u.error_response IS NULL) AS mailchimp_done,
        (SELECT count(*) FROM civicrm_mailchimpsync_update u
            JOIN civicrm_mailchimpsync_cache c ON c.id = u.mailchimpsync_cache_id
            WHERE c.mailchimp_list_id = :list_id AND u.created_date >= :since
            AND u.completed AND u.error_response IS NOT NULL
            AND u.error_response NOT LIKE 'cancelled%') AS mailchimp_failed,
        (SELECT count(*) FROM civicrm_mailchimpsync_cache
            WHERE mailchimp_list_id = :list_id AND sync_status = 'fail') AS cannot_sync
    """
)


@dataclass(frozen=True)
class Changes:
    """What a run changed on each side since ``since``."""

    contacts_created: int
    crm_added: int
    crm_removed: int
    mailchimp_done: int
    mailchimp_failed: int
    cannot_sync: int


def changes_since(conn: sa.Connection, connection: SyncConnection, since: datetime) -> Changes:
    row = conn.execute(
        CHANGES,
        {"since": since, "list_id": connection.list_id, "group_ids": list(connection.group_ids)},
    ).one()
    return Changes(**row._asdict())


DISAGREEMENTS = sa.text(
    """
    SELECT count(*) FROM civicrm_mailchimpsync_cache c
    LEFT JOIN civicrm_contact ct ON ct.id = c.civicrm_contact_id AND NOT ct.is_deleted
    LEFT JOIN civicrm_group_contact gc
        ON gc.contact_id = ct.id AND gc.group_id = :group_id AND gc.status = 'Added'
    WHERE c.mailchimp_list_id = :list_id AND c.sync_status <> 'fail'
    AND (coalesce(c.mailchimp_status, '') IN ('subscribed', 'pending')) <> (gc.id IS NOT NULL)
    """
)


def disagreements(conn: sa.Connection, connection: SyncConnection) -> int:
    """Rows (other than those that cannot sync) subscribed on one side only."""
    params = {"list_id": connection.list_id, "group_id": connection.subscription_group_id}
    return int(conn.execute(DISAGREEMENTS, params).scalar_one())
