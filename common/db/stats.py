"""Read-only SQL for reporting: a run's progress, what it changed, and whether both sides agree."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from common.db.batches import STALL_AFTER, last_progress
from common.db.config import SyncConnection
from common.db.schema import batch, cache, connection, group, group_contact
from common.vocabulary import BatchStatus, ResponseProcessed

# Cheap enough to poll every second during a run of a million rows: it counts fetch pages,
# reconcile chunks, unsubmitted updates and open batches, never the audience's rows.
PROGRESS = sa.text(
    """
    SELECT s.stage, s.run_id, s.parked_reason,
        (SELECT count(*) FROM mailchimpsync_fetch_page p
            WHERE p.list_id = s.list_id AND p.run_id = s.run_id) AS pages_total,
        (SELECT count(*) FROM mailchimpsync_fetch_page p
            WHERE p.list_id = s.list_id AND p.run_id = s.run_id
            AND p.fetched_at IS NOT NULL) AS pages_fetched,
        (SELECT coalesce(sum(k.row_count), 0) FROM mailchimpsync_reconcile_chunk k
            WHERE k.list_id = s.list_id AND k.run_id = s.run_id) AS rows_planned,
        (SELECT coalesce(sum(k.row_count), 0) FROM mailchimpsync_reconcile_chunk k
            WHERE k.list_id = s.list_id AND k.run_id = s.run_id
            AND k.decided_at IS NOT NULL) AS rows_decided,
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
    rows_planned: int
    rows_decided: int
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
        rows_planned=row.rows_planned,
        rows_decided=row.rows_decided,
        unsubmitted=row.unsubmitted,
        batches_open=row.batches_open,
    )


# The run's own writes, each table read once: the history rows it dated after ``since``
# (a first sync of a million members writes two million), the contacts it created, and the
# audience's updates queued since, and of those the ones completed.
CHANGES = sa.text(
    """
    SELECT
        (SELECT count(*) FROM civicrm_contact
            WHERE source = 'mailchimpsync' AND created_date >= :since) AS contacts_created,
        h.crm_added, h.crm_removed, u.mailchimp_queued, u.mailchimp_done, u.mailchimp_failed
    FROM (
        SELECT count(*) FILTER (WHERE status = 'Added') AS crm_added,
            count(*) FILTER (WHERE status = 'Removed') AS crm_removed
        FROM civicrm_subscription_history
        WHERE method = 'MCsync' AND date >= :since AND group_id = ANY(:group_ids)
    ) AS h, (
        SELECT count(*) AS mailchimp_queued,
            count(*) FILTER (WHERE u.completed AND u.error_response IS NULL) AS mailchimp_done,
            count(*) FILTER (
                WHERE u.completed AND u.error_response NOT LIKE 'cancelled%') AS mailchimp_failed
        FROM civicrm_mailchimpsync_update u
        JOIN civicrm_mailchimpsync_cache c ON c.id = u.mailchimpsync_cache_id
        WHERE c.mailchimp_list_id = :list_id AND u.created_date >= :since
    ) AS u
    """
)


@dataclass(frozen=True)
class Changes:
    """What a run changed on each side since ``since``."""

    contacts_created: int
    crm_added: int
    crm_removed: int
    mailchimp_queued: int  # updates queued for Mailchimp, completed or not
    mailchimp_done: int
    mailchimp_failed: int


def changes_since(conn: sa.Connection, connection: SyncConnection, since: datetime) -> Changes:
    row = conn.execute(
        CHANGES,
        {"since": since, "list_id": connection.list_id, "group_ids": list(connection.group_ids)},
    ).one()
    return Changes(**row._asdict())


# One pass over the audience, joined to the CRM once: each row's side of the subscription
# group, grouped by whether (and why) it cannot sync. At the end of every run, at a million
# members: 1.7 s, where three separate reads of the audience (the join, the rows that cannot
# sync, their reasons) took 2.3 s.
AGREEMENT = sa.text(
    """
    WITH per_reason AS (
        SELECT c.sync_status = 'fail' AS failed,
            CASE WHEN c.sync_status = 'fail' THEN c.fail_reason END AS reason,
            count(*) AS rows,
            count(*) FILTER (
                WHERE (coalesce(c.mailchimp_status, '') IN ('subscribed', 'pending'))
                    <> (gc.id IS NOT NULL)) AS apart
        FROM civicrm_mailchimpsync_cache c
        LEFT JOIN civicrm_contact ct ON ct.id = c.civicrm_contact_id AND NOT ct.is_deleted
        LEFT JOIN civicrm_group_contact gc
            ON gc.contact_id = ct.id AND gc.group_id = :group_id AND gc.status = 'Added'
        WHERE c.mailchimp_list_id = :list_id
        GROUP BY 1, 2
    )
    SELECT
        (SELECT coalesce(sum(apart), 0) FROM per_reason WHERE NOT failed) AS disagreements,
        (SELECT coalesce(sum(rows), 0) FROM per_reason WHERE failed) AS cannot_sync,
        (SELECT coalesce(json_agg(json_build_array(r.reason, r.rows)
                ORDER BY r.rows DESC, r.reason), '[]')
            FROM (SELECT reason, rows FROM per_reason WHERE failed
                  ORDER BY rows DESC, reason LIMIT :reasons) AS r) AS fail_reasons
    """
)


@dataclass(frozen=True)
class Agreement:
    """Whether both sides agree: rows (other than those that cannot sync) subscribed on one
    side only, rows that cannot sync, and the commonest reasons why with their row counts (a
    row that failed before reasons were kept has None), commonest first."""

    disagreements: int
    cannot_sync: int
    fail_reasons: list[tuple[str | None, int]]


def agreement(conn: sa.Connection, connection: SyncConnection, reasons: int = 5) -> Agreement:
    """The audience's agreement, with at most ``reasons`` fail reasons, in one statement."""
    params = {
        "list_id": connection.list_id,
        "group_id": connection.subscription_group_id,
        "reasons": reasons,
    }
    row = conn.execute(AGREEMENT, params).one()
    return Agreement(
        int(row.disagreements),
        int(row.cannot_sync),
        [(reason, int(rows)) for reason, rows in row.fail_reasons],
    )


# --- getstatus: statistics of one connection ---------------------------------------------

CONNECTION_STATS = sa.text(
    """
    WITH row_facts AS (
        SELECT c.sync_status,
            coalesce(c.mailchimp_status IN ('subscribed', 'pending'), false) AS at_mailchimp,
            gc.id IS NOT NULL AS at_crm
        FROM civicrm_mailchimpsync_cache c
        LEFT JOIN civicrm_contact ct ON ct.id = c.civicrm_contact_id AND NOT ct.is_deleted
        LEFT JOIN civicrm_group_contact gc
            ON gc.contact_id = ct.id AND gc.group_id = :group_id AND gc.status = 'Added'
        WHERE c.mailchimp_list_id = :list_id
    ), open_updates AS (
        SELECT u.mailchimpsync_batch_id IS NULL AS unsubmitted
        FROM civicrm_mailchimpsync_update u
        JOIN civicrm_mailchimpsync_cache c ON c.id = u.mailchimpsync_cache_id
        WHERE c.mailchimp_list_id = :list_id AND NOT u.completed
    )
    SELECT rows.*, updates.*, crm.*
    FROM (
        SELECT count(*) AS cache_rows,
            count(*) FILTER (WHERE at_mailchimp) AS subscribed_at_mailchimp,
            count(*) FILTER (WHERE at_crm AND NOT at_mailchimp AND sync_status <> 'fail')
                AS to_add_to_mailchimp,
            count(*) FILTER (WHERE at_mailchimp AND NOT at_crm AND sync_status <> 'fail')
                AS to_remove_from_mailchimp,
            count(*) FILTER (WHERE sync_status = 'fail') AS failed,
            count(*) FILTER (WHERE sync_status = 'fail' AND at_crm AND NOT at_mailchimp)
                AS cannot_subscribe,
            count(*) FILTER (WHERE sync_status = 'fail' AND NOT (at_crm AND NOT at_mailchimp))
                AS other_fails,
            count(*) FILTER (WHERE sync_status = 'todo') AS todo,
            count(*) FILTER (WHERE sync_status = 'live') AS live,
            count(*) FILTER (WHERE sync_status = 'redo') AS redo,
            count(*) FILTER (WHERE sync_status = 'ok' AND at_crm <> at_mailchimp) AS weird
        FROM row_facts
    ) AS rows, (
        SELECT count(*) FILTER (WHERE NOT unsubmitted) AS updates_pending,
            count(*) FILTER (WHERE unsubmitted) AS updates_unsubmitted
        FROM open_updates
    ) AS updates, (
        SELECT count(*) AS subscribed_at_civicrm
        FROM civicrm_group_contact gc
        JOIN civicrm_contact ct ON ct.id = gc.contact_id AND NOT ct.is_deleted
        WHERE gc.group_id = :group_id AND gc.status = 'Added'
    ) AS crm
    """
)


@dataclass(frozen=True)
class ConnectionStats:
    """The seed's status-page numbers for one connection.

    ``weird`` counts rows marked in sync (``ok``) whose two sides disagree: nothing should
    leave a row like that, so any is worth a look. ``cannot_subscribe`` are failed rows the
    CRM wants subscribed and Mailchimp does not have subscribed (cleaned, on hold...);
    ``other_fails`` the rest of ``failed``.
    """

    cache_rows: int
    subscribed_at_mailchimp: int
    subscribed_at_civicrm: int
    to_add_to_mailchimp: int
    to_remove_from_mailchimp: int
    failed: int
    cannot_subscribe: int
    other_fails: int
    todo: int
    live: int
    redo: int
    weird: int
    updates_pending: int
    updates_unsubmitted: int


def connection_stats(conn: sa.Connection, connection: SyncConnection) -> ConnectionStats:
    """Every statistic of one connection, in one statement."""
    params = {"list_id": connection.list_id, "group_id": connection.subscription_group_id}
    return ConnectionStats(**conn.execute(CONNECTION_STATS, params).one()._asdict())


@dataclass(frozen=True)
class OpenBatch:
    """One of our batches whose results are not applied yet, as our table has it."""

    id: int
    mailchimp_batch_id: str | None
    status: str | None
    submitted_at: datetime | None
    finished_operations: int
    errored_operations: int
    total_operations: int
    response_processed: int
    checked_at: datetime | None  # when the poller last read it from Mailchimp
    progressed_at: datetime | None  # when its status or finished operations last changed

    def stalled(self, now: datetime, after: timedelta = STALL_AFTER) -> bool:
        """At Mailchimp, and not moved on for ``after`` (as the poller last read it)."""
        since = last_progress(self)
        return self.mailchimp_batch_id is not None and since is not None and now - since >= after


def open_batches(conn: sa.Connection, list_id: str) -> list[OpenBatch]:
    """The audience's batches still to be finished or processed (aborted ones are done)."""
    query = (
        sa.select(
            batch.c.id,
            batch.c.mailchimp_batch_id,
            batch.c.status,
            batch.c.submitted_at,
            batch.c.finished_operations,
            batch.c.errored_operations,
            batch.c.total_operations,
            batch.c.response_processed,
            batch.c.checked_at,
            batch.c.progressed_at,
        )
        .where(
            batch.c.mailchimp_list_id == list_id,
            batch.c.response_processed < ResponseProcessed.DONE,
            sa.func.coalesce(batch.c.status, "") != BatchStatus.ABORTED.value,
        )
        .order_by(batch.c.id)
    )
    return [OpenBatch(**row._asdict()) for row in conn.execute(query)]


FAIL_REASONS = sa.text(
    """
    SELECT fail_reason, count(*) AS rows
    FROM civicrm_mailchimpsync_cache
    WHERE mailchimp_list_id = :list_id AND sync_status = 'fail'
    GROUP BY fail_reason
    ORDER BY rows DESC, fail_reason
    LIMIT :reasons
    """
)


def fail_reasons(
    conn: sa.Connection, list_id: str, reasons: int = 5
) -> list[tuple[str | None, int]]:
    """The commonest reasons the audience's rows cannot sync, with their row counts."""
    found = conn.execute(FAIL_REASONS, {"list_id": list_id, "reasons": reasons})
    return [(row.fail_reason, int(row.rows)) for row in found]


def groups(conn: sa.Connection) -> list[tuple[int, str]]:
    """Every group of the embedded CRM, by title."""
    query = sa.select(group.c.id, group.c.title).order_by(group.c.title, group.c.id)
    return [(row.id, row.title) for row in conn.execute(query)]


def group_titles(conn: sa.Connection, group_ids: Sequence[int]) -> dict[int, str]:
    """The CRM's titles of some groups (the embedded CRM, or the copy of CiviCRM's)."""
    query = sa.select(group.c.id, group.c.title).where(group.c.id.in_(list(group_ids)))
    return {row.id: row.title or f"group {row.id}" for row in conn.execute(query)}


# --- MailchimpsyncCache.get: search the cache ------------------------------------------------


@dataclass(frozen=True)
class CacheFilter:
    """Equality filters on the cache's fields (None: any), plus the CRM membership of the
    row's contact in its connection's subscription group (``Added``, ``Removed``)."""

    id: int | None = None
    mailchimp_list_id: str | None = None
    mailchimp_member_id: str | None = None
    mailchimp_email: str | None = None
    mailchimp_status: str | None = None
    civicrm_contact_id: int | None = None
    sync_status: str | None = None
    civicrm_status: str | None = None


_CRM_MEMBERSHIP = group_contact.alias("membership")


def _cache_search(where: CacheFilter) -> sa.Select[Any]:
    membership = _CRM_MEMBERSHIP
    joined = cache.outerjoin(
        connection, connection.c.mailchimp_list_id == cache.c.mailchimp_list_id
    ).outerjoin(
        membership,
        sa.and_(
            membership.c.contact_id == cache.c.civicrm_contact_id,
            membership.c.group_id == connection.c.subscription_group_id,
        ),
    )
    query = sa.select(*cache.c, membership.c.status.label("civicrm_status")).select_from(joined)
    for name in ("id", "mailchimp_list_id", "mailchimp_member_id", "mailchimp_status"):
        if getattr(where, name) is not None:
            query = query.where(cache.c[name] == getattr(where, name))
    one_member = (where.civicrm_contact_id, where.mailchimp_email, where.mailchimp_member_id)
    if where.mailchimp_list_id is None and any(v is not None for v in one_member):
        # The (audience, contact|email|member) indexes: probe every synced audience.
        audiences = sa.func.array(sa.select(connection.c.mailchimp_list_id).scalar_subquery())
        query = query.where(cache.c.mailchimp_list_id == sa.any_(audiences))
    if where.civicrm_contact_id is not None:
        query = query.where(cache.c.civicrm_contact_id == where.civicrm_contact_id)
    if where.sync_status is not None:
        query = query.where(cache.c.sync_status == where.sync_status)
    if where.mailchimp_email is not None:
        query = query.where(sa.func.lower(cache.c.mailchimp_email) == where.mailchimp_email.lower())
    if where.civicrm_status is not None:
        query = query.where(membership.c.status == where.civicrm_status)
    return query


def count_cache(conn: sa.Connection, where: CacheFilter) -> int:
    """How many cache rows match."""
    found = _cache_search(where).subquery()
    return int(conn.execute(sa.select(sa.func.count()).select_from(found)).scalar_one())


def search_cache(
    conn: sa.Connection, where: CacheFilter, limit: int, offset: int
) -> list[dict[str, Any]]:
    """One page of matching cache rows (by id), each with its ``civicrm_status``."""
    query = _cache_search(where).order_by(cache.c.id).limit(limit).offset(offset)
    return [dict(row._mapping) for row in conn.execute(query)]


TROUBLESHOOT = sa.text(
    """
    SELECT c.id,
        (SELECT json_build_object('id', ct.id, 'first_name', ct.first_name,
                'last_name', ct.last_name, 'is_deleted', ct.is_deleted, 'source', ct.source)
            FROM civicrm_contact ct WHERE ct.id = c.civicrm_contact_id) AS contact,
        (SELECT coalesce(json_agg(json_build_object('email', e.email,
                'is_primary', e.is_primary, 'is_bulkmail', e.is_bulkmail,
                'on_hold', e.on_hold) ORDER BY e.id), '[]'::json)
            FROM civicrm_email e WHERE e.contact_id = c.civicrm_contact_id) AS emails,
        (SELECT coalesce(json_agg(json_build_object('group_id', h.group_id,
                'group_title', (SELECT g.title FROM civicrm_group g WHERE g.id = h.group_id),
                'status', h.status, 'date', h.date, 'method', h.method)
                ORDER BY h.group_id), '[]'::json)
            FROM (
                SELECT DISTINCT ON (sh.group_id) sh.group_id, sh.status, sh.date, sh.method
                FROM civicrm_subscription_history sh
                WHERE sh.contact_id = c.civicrm_contact_id
                AND (sh.group_id = sc.subscription_group_id OR sh.group_id IN (
                    SELECT i.group_id FROM mailchimpsync_interest i
                    WHERE i.connection_id = sc.id))
                ORDER BY sh.group_id, sh.date DESC, sh.id DESC
            ) AS h) AS subscription_history,
        (SELECT coalesce(json_agg(json_build_object('id', u.id, 'data', u.data,
                'batch_id', u.mailchimpsync_batch_id, 'created_date', u.created_date)
                ORDER BY u.id), '[]'::json)
            FROM civicrm_mailchimpsync_update u
            WHERE u.mailchimpsync_cache_id = c.id AND NOT u.completed) AS open_updates
    FROM civicrm_mailchimpsync_cache c
    LEFT JOIN mailchimpsync_connection sc ON sc.mailchimp_list_id = c.mailchimp_list_id
    WHERE c.id = ANY(:ids)
    """
)


def troubleshooting(conn: sa.Connection, cache_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """The expensive related data of some cache rows, by row id: the contact, its emails
    (with ``on_hold``), the newest subscription history per group of the audience, and the
    row's open updates. Callers page, so ``cache_ids`` stays small."""
    rows = conn.execute(TROUBLESHOOT, {"ids": list(cache_ids)})
    return {
        row.id: {key: value for key, value in row._asdict().items() if key != "id"} for row in rows
    }
