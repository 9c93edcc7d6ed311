"""SQL for creating update rows (``civicrm_mailchimpsync_update``): changes to send to Mailchimp.

The submitter has its own SQL for submitting; this module queues, folds and reads the open
(unsubmitted) updates. Set-based, on the caller's connection, never commits.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from common.db.params import id_array, json_rows

__all__ = [
    "CANCELLED",
    "NewUpdate",
    "OpenUpdateRow",
    "abort_unsubmitted",
    "cancel_updates",
    "insert_updates",
    "load_open_updates",
    "queue_best_email_changes",
]

CANCELLED = "cancelled: folded into a newer update"


@dataclass(frozen=True)
class NewUpdate:
    """Data to send to Mailchimp for one cache row."""

    cache_id: int
    data: Mapping[str, Any]


@dataclass(frozen=True)
class OpenUpdateRow:
    """An update not yet submitted (batch id null) nor completed."""

    update_id: int
    cache_id: int
    data: Mapping[str, Any]


def insert_updates(conn: sa.Connection, updates: Sequence[NewUpdate]) -> list[int]:
    """Insert the updates in one statement; return their ids in input order.

    Ids follow input order too, so a row's member update queued before its tags update
    also has the lower id.
    """
    if not updates:
        return []
    rows = json_rows([{"cache_id": u.cache_id, "data": u.data} for u in updates])
    return [int(i) for i in conn.execute(_INSERT_UPDATES, {"rows": rows}).scalars()]


def cancel_updates(conn: sa.Connection, update_ids: Iterable[int], reason: str = CANCELLED) -> int:
    """Complete still-unsubmitted updates with ``reason`` (it starts ``cancelled``: the
    reports tell cancelled updates from refused ones); returns how many."""
    ids = list(update_ids)
    if not ids:
        return 0
    return conn.execute(_CANCEL, {"ids": ids, "reason": reason}).rowcount


def load_open_updates(
    conn: sa.Connection, cache_ids: Iterable[int]
) -> dict[int, list[OpenUpdateRow]]:
    """The open updates of these cache rows, oldest first, by cache id (one query)."""
    ids = list(cache_ids)
    found: dict[int, list[OpenUpdateRow]] = {}
    if ids:
        for update_id, cache_id, data in conn.execute(_OPEN_UPDATES, {"ids": id_array(ids)}):
            found.setdefault(int(cache_id), []).append(
                OpenUpdateRow(int(update_id), int(cache_id), data)
            )
    return found


def queue_best_email_changes(conn: sa.Connection, list_id: str) -> int:
    """Queue ``{email_address: <best email>}`` for rows subscribed at Mailchimp whose
    contact's best CRM email differs (case-insensitively) from the row's Mailchimp email.

    Skipped: rows already having that change open, and rows where another row of the same
    contact in the audience already holds the best email (the change would collide). A
    queued row goes ``live`` unless it is ``todo`` (still to be reconciled; the reconciler
    keeps it ``live`` while the update is open). One statement; returns updates queued.
    """
    return int(conn.execute(_QUEUE_EMAIL_CHANGES, {"list_id": list_id}).scalar_one())


_INSERT_UPDATES = sa.text("""
    INSERT INTO civicrm_mailchimpsync_update (mailchimpsync_cache_id, data)
    SELECT r.cache_id, r.data
    FROM ROWS FROM (jsonb_to_recordset(CAST(:rows AS jsonb)) AS (cache_id bigint, data jsonb))
        WITH ORDINALITY AS r(cache_id, data, n)
    ORDER BY r.n
    RETURNING id
""")
_CANCEL = sa.text("""
    UPDATE civicrm_mailchimpsync_update SET completed = true, error_response = :reason
    WHERE id = ANY(CAST(:ids AS bigint[])) AND NOT completed AND mailchimpsync_batch_id IS NULL
""")
# Driven from the ids (a join on unnest), so the planner probes the cache-id index per row
# instead of walking the partial index of every unsubmitted update as that table grows.
_OPEN_UPDATES = sa.text("""
    SELECT u.id, u.mailchimpsync_cache_id, u.data
    FROM unnest(CAST(:ids AS bigint[])) AS i(cache_id)
    JOIN civicrm_mailchimpsync_update u ON u.mailchimpsync_cache_id = i.cache_id
    WHERE u.mailchimpsync_batch_id IS NULL AND NOT u.completed
    ORDER BY u.id
""")
# Set-based: every subscribed row's best email in one join and sort (a lookup per row was
# ten seconds at a million members, and this runs on every sync).
_QUEUE_EMAIL_CHANGES = sa.text("""
    WITH candidates AS (
        SELECT DISTINCT ON (c.id) c.id, c.civicrm_contact_id, c.mailchimp_email, e.email AS best
        FROM civicrm_mailchimpsync_cache c
        JOIN civicrm_email e ON e.contact_id = c.civicrm_contact_id
        WHERE c.mailchimp_list_id = :list_id
          AND c.mailchimp_status = 'subscribed' AND c.mailchimp_email IS NOT NULL
          AND e.on_hold = 0 AND btrim(e.email) <> ''
        ORDER BY c.id, e.is_bulkmail DESC, e.is_primary DESC, e.id
    ), changes AS (
        SELECT k.id, k.best FROM candidates k
        -- Most addresses are the same text: the plain comparison spares lower() for them.
        WHERE k.best <> k.mailchimp_email AND lower(k.best) <> lower(k.mailchimp_email)
          AND NOT EXISTS (
              SELECT 1 FROM civicrm_mailchimpsync_cache o
              WHERE o.mailchimp_list_id = :list_id
                AND o.civicrm_contact_id = k.civicrm_contact_id
                AND lower(o.mailchimp_email) = lower(k.best))
          AND NOT EXISTS (
              SELECT 1 FROM civicrm_mailchimpsync_update u
              WHERE u.mailchimpsync_cache_id = k.id AND NOT u.completed
                AND u.data ->> 'email_address' = k.best)
    ), queued AS (
        INSERT INTO civicrm_mailchimpsync_update (mailchimpsync_cache_id, data)
        SELECT id, jsonb_build_object('email_address', best) FROM changes ORDER BY id
        RETURNING mailchimpsync_cache_id
    ), moved AS (
        UPDATE civicrm_mailchimpsync_cache c SET sync_status = 'live'
        FROM queued q WHERE c.id = q.mailchimpsync_cache_id AND c.sync_status <> 'todo'
    )
    SELECT count(*) FROM queued
""")


def abort_unsubmitted(conn: sa.Connection, list_id: str, error: str) -> list[tuple[int, int]]:
    """Complete the audience's open unsubmitted updates with ``error`` (``abortsync``);
    returns (update id, cache id) of each. Take the claim lock first (``common.db.batches``)
    so a submission cannot claim them meanwhile."""
    rows = conn.execute(_ABORT_UNSUBMITTED, {"list_id": list_id, "error": error})
    return [(int(update_id), int(cache_id)) for update_id, cache_id in rows]


_ABORT_UNSUBMITTED = sa.text("""
    UPDATE civicrm_mailchimpsync_update u SET completed = true, error_response = :error
    FROM civicrm_mailchimpsync_cache c
    WHERE c.id = u.mailchimpsync_cache_id AND c.mailchimp_list_id = :list_id
      AND u.mailchimpsync_batch_id IS NULL AND NOT u.completed
    RETURNING u.id, u.mailchimpsync_cache_id
""")
