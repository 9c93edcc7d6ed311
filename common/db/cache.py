"""SQL for the cache table (``civicrm_mailchimpsync_cache``): one row per member/contact.

Every function is set-based (a fixed number of statements, whatever the audience's size),
runs on the caller's connection and never commits. Rows travel as one JSON parameter
expanded by ``jsonb_to_recordset`` (``common.db.params``).

The stage statements here join the CRM tables read-only (contacts, emails, memberships,
history) so that a stage over a million rows stays one statement; every CRM *write* goes
through ``common.db.crm``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa

from common.db import planner
from common.db.crm import HistoryEntry
from common.db.params import id_array, json_rows
from common.member_data import FetchedMember, merge_mailchimp_data, to_utc
from common.vocabulary import PLUGIN_DATA_SENT, GroupStatus, SyncStatus

__all__ = [
    "ClaimedRow",
    "DecidedRow",
    "EarlierRow",
    "FetchedRow",
    "NewMember",
    "PluginSource",
    "RowStatus",
    "add_crm_only_rows",
    "claim_todo_rows",
    "clear_missing_contacts",
    "delete_crm_only_duplicates",
    "delete_orphan_rows",
    "group_snapshot",
    "load_earlier_rows",
    "load_plugin_rows",
    "mark_all_contacts_todo",
    "mark_contacts_todo",
    "mark_group_changes_todo",
    "match_contacts_by_email",
    "members_without_contact",
    "set_contact_ids",
    "set_contact_snapshots",
    "set_decided",
    "set_sync_statuses",
    "status_counts",
    "store_plugin_data",
    "store_plugin_sent",
    "upsert_fetched",
]


@dataclass(frozen=True)
class FetchedRow:
    """One member as the fetcher stores it: ``mailchimp_data`` already merged."""

    member_id: str
    email: str
    status: str
    updated: datetime
    mailchimp_data: Mapping[str, Any]
    linked: bool = False  # its row has a contact already: no owner of the email is looked for


@dataclass(frozen=True)
class EarlierRow:
    """What a member's row held before a fetch: its Mailchimp columns and whether it is
    linked to a contact."""

    mailchimp_data: dict[str, Any] | None
    linked: bool
    email: str | None
    status: str | None
    updated: datetime | None

    def holds(self, row: FetchedRow) -> bool:
        """The row holds exactly what was fetched, and has a contact (so nothing to match)."""
        return (
            self.linked
            and self.email == row.email
            and self.status == row.status
            and self.updated == row.updated
            and self.mailchimp_data == row.mailchimp_data
        )


class ClaimedRow(NamedTuple):
    """A ``todo`` cache row claimed for reconciling, with the cache-side facts (a named
    tuple: a chunk builds a thousand, and a frozen dataclass took three times as long)."""

    id: int
    contact_id: int | None
    member_id: str | None
    email: str | None
    status: str | None
    updated: datetime | None
    mailchimp_data: Mapping[str, Any] | None
    civicrm_data: Mapping[str, Any] | None
    other_row_subscribed: bool
    other_rows: bool  # the contact has other rows in the audience (subscribed or not)


@dataclass(frozen=True)
class RowStatus:
    """A cache row's new ``sync_status``."""

    cache_id: int
    sync_status: SyncStatus


Snapshot = dict[str, dict[str, str]] | None


class DecidedRow(NamedTuple):
    """A decided row's new ``sync_status``, ``civicrm_groups`` snapshot and ``fail_reason``
    (None unless the row fails)."""

    cache_id: int
    sync_status: SyncStatus
    civicrm_groups: Snapshot
    fail_reason: str | None = None


ROWS = "{rows}"
ROW_IDS = "AND c.id = ANY(CAST(:cache_ids AS bigint[]))"
ROW_CONTACTS = "AND c.civicrm_contact_id = ANY(CAST(:contact_ids AS integer[]))"


@dataclass(frozen=True)
class _Scoped:
    """A stage statement over the whole audience, and the same limited to some rows (a
    webhook's "sync this member now"): two statements, so each gets its own plan."""

    audience: sa.TextClause
    some_rows: sa.TextClause

    @classmethod
    def of(cls, template: str, row_filter: str = ROW_IDS) -> _Scoped:
        return cls(sa.text(template.replace(ROWS, "")), sa.text(template.replace(ROWS, row_filter)))

    def run(
        self,
        conn: sa.Connection,
        params: Mapping[str, Any],
        cache_ids: Iterable[int] | None = None,
        contact_ids: Iterable[int] | None = None,
    ) -> Any:  # a CursorResult; Any lets callers unpack its rows
        if cache_ids is None and contact_ids is None:
            return conn.execute(self.audience, dict(params))
        scope = {
            "cache_ids": sorted(set(cache_ids or ())),
            "contact_ids": sorted(set(contact_ids or ())),
        }
        return conn.execute(self.some_rows, {**params, **scope})


# --- the fetcher -----------------------------------------------------------------------


def upsert_fetched(
    conn: sa.Connection, list_id: str, subscription_group_id: int, rows: Sequence[FetchedRow]
) -> int:
    """Insert or update fetched members (keyed by audience + member id) as ``todo``; a row
    that already holds exactly what was fetched is left as it is (the incremental fetch
    reads back every member the last run's batches changed, whose results are applied).

    A row not ``linked`` to a contact is linked on the way to the owner of its email that
    ``readyToFixContactIds`` would choose (the phases of ``match_contacts_by_email``): a row
    written once instead of written then rewritten with its contact, and the owners looked
    up a page at a time by parallel fetchers rather than by one statement over the audience.
    That stage still matches what is left, after unlinking deleted contacts.

    One statement; returns the number of rows written. Duplicate member ids in ``rows``
    keep the last one.
    """
    if not rows:
        return 0
    latest = {row.member_id: row for row in rows}
    payload = [
        {
            "member_id": r.member_id,
            "email": r.email,
            "status": r.status,
            "updated": r.updated.isoformat(),
            "data": r.mailchimp_data,
            "linked": r.linked,
        }
        for r in latest.values()
    ]
    params = {
        "list_id": list_id,
        "group_id": subscription_group_id,
        "added": GroupStatus.ADDED.value,
        "rows": json_rows(payload),
    }
    return int(conn.execute(_UPSERT_FETCHED, params).rowcount)


def merge_fetched(
    conn: sa.Connection, list_id: str, subscription_group_id: int, members: Sequence[FetchedMember]
) -> int:
    """Merge fetched members into their rows (per-field change times kept), as ``todo``;
    a row without a contact is linked to its email's owner (see ``upsert_fetched``).

    A linked row that already holds what was fetched is not sent at all: an incremental
    fetch reads back every member the last run's batches changed, whose results are in
    their rows already, and the upsert locked each of them (a WAL record, a dirtied page) to
    find nothing to write. Two statements whatever the page's size; rows are written in
    member-id order, one lock order for concurrent pages. Returns the rows written.
    """
    ordered = sorted(members, key=lambda member: member.member_id)
    earlier = load_earlier_rows(conn, list_id, [m.member_id for m in ordered])
    rows = []
    for member in ordered:
        row = earlier.get(member.member_id)
        previous = row.mailchimp_data if row is not None else None
        fetched = FetchedRow(
            member_id=member.member_id,
            email=member.email,
            status=member.status.value,
            updated=member.last_changed,
            mailchimp_data=merge_mailchimp_data(previous, member),
            linked=row is not None and row.linked,
        )
        if row is None or not row.holds(fetched):
            rows.append(fetched)
    return upsert_fetched(conn, list_id, subscription_group_id, rows)


def load_earlier_rows(
    conn: sa.Connection, list_id: str, member_ids: Iterable[str]
) -> dict[str, EarlierRow]:
    """The audience's rows with these member ids, by member id (absent: no row)."""
    ids = list(member_ids)
    if not ids:
        return {}
    # One probe of the unique index per member, whatever the statistics say: while an
    # audience being fetched is small, hashing all of it (read by a scan or another index)
    # looks cheaper to the planner than a thousand probes, and it read the whole audience for
    # every page (at 25,000 rows: 54 ms a page instead of 2.4 ms).
    conn.execute(_KEY_PROBES_ONLY)
    result = conn.execute(_LOAD_EARLIER_ROWS, {"list_id": list_id, "ids": ids}).all()
    conn.execute(_ANY_PLAN)
    return {str(member_id): EarlierRow(*columns) for member_id, *columns in result}


@dataclass(frozen=True)
class MemberRow:
    """The cache row of one member (found by member id, else by email)."""

    id: int
    contact_id: int | None
    member_id: str | None
    email: str | None


def row_of_member(
    conn: sa.Connection, list_id: str, member_id: str | None, email: str
) -> MemberRow | None:
    """The audience's row with this member id, else the one with this email (any case)."""
    params = {"list_id": list_id, "member_id": member_id, "email": email}
    found = conn.execute(_ROW_OF_MEMBER, params).first()
    return None if found is None else MemberRow(*found[:4])


def member_row(conn: sa.Connection, cache_id: int) -> MemberRow | None:
    """One row, by id."""
    found = conn.execute(_MEMBER_ROW, {"id": cache_id}).first()
    return None if found is None else MemberRow(*found)


def move_row_to_member(conn: sa.Connection, cache_id: int, member_id: str, email: str) -> None:
    """Re-key a row to the member an address change made of it (``upemail``)."""
    conn.execute(_MOVE_ROW, {"id": cache_id, "member_id": member_id, "email": email})


def delete_rows(conn: sa.Connection, cache_ids: Iterable[int]) -> int:
    """Delete rows (their updates go with them)."""
    return conn.execute(_DELETE_ROWS, {"ids": sorted(set(cache_ids))}).rowcount


# --- counting --------------------------------------------------------------------------


def refresh_statistics(conn: sa.Connection) -> bool:
    """ANALYZE the cache after a fetch that changed a tenth of it: a big fetch changes it
    faster than autovacuum notices, and the stages' joins planned on stale statistics go
    nested-loop. Returns whether it analyzed."""
    return planner.analyze_if_outdated(conn, "civicrm_mailchimpsync_cache")


def refresh_statistics_if_outgrown(conn: sa.Connection, list_id: str, rows_fetched: int) -> bool:
    """ANALYZE the audience's key columns when the planner takes the audience for fewer than
    half of the ``rows_fetched`` into it so far (and at least 1000), as during a first fetch
    into an empty cache or of a new audience beside a big one: statistics that know nothing
    of the audience make every index of its rows look alike to the planner. The planner
    scales what it knows by the table's current size, so a growing audience is analyzed once
    it has rows, and again only if its share of the table grows faster than the table.
    Cheap to ask after every page (a plan, not a count); of the pages asking at once, only
    the one taking the advisory lock analyzes. Returns whether it analyzed."""
    if rows_fetched < 1000:
        return False
    plan = conn.execute(_ESTIMATED_AUDIENCE_ROWS, {"list_id": list_id}).scalar_one()
    if plan[0]["Plan"]["Plan Rows"] * 2 >= rows_fetched:
        return False
    if not conn.execute(_ANALYZE_LOCK).scalar_one():
        return False
    # Only the columns the page's lookup plans on: a whole-table ANALYZE (jsonb included)
    # costs three times as much, and the stages after the fetch get one (refresh_statistics).
    conn.execute(
        sa.text("ANALYZE civicrm_mailchimpsync_cache (mailchimp_list_id, mailchimp_member_id)")
    )
    return True


def status_counts(conn: sa.Connection, list_id: str) -> dict[SyncStatus, int]:
    """The audience's rows per ``sync_status``; every status present, zero if none."""
    counts = dict.fromkeys(SyncStatus, 0)
    for status, count in conn.execute(_STATUS_COUNTS, {"list_id": list_id}):
        counts[SyncStatus(status)] = int(count)
    return counts


# --- readyToFixContactIds --------------------------------------------------------------


def clear_missing_contacts(
    conn: sa.Connection, list_id: str, cache_ids: Iterable[int] | None = None
) -> int:
    """Unlink rows whose contact is deleted or gone: ``todo``, group snapshot cleared.
    ``cache_ids`` limits it to those rows (every function here taking it does the same)."""
    return int(_CLEAR_MISSING_CONTACTS.run(conn, {"list_id": list_id}, cache_ids).rowcount)


def delete_orphan_rows(conn: sa.Connection, list_id: str) -> int:
    """Delete rows with neither a member id nor a contact id."""
    return conn.execute(_DELETE_ORPHANS, {"list_id": list_id}).rowcount


def match_contacts_by_email(
    conn: sa.Connection, list_id: str, group_id: int, cache_ids: Iterable[int] | None = None
) -> dict[int, int]:
    """Link rows without a contact to an undeleted owner of their email, by the phases of
    ``services.reconciler.match`` (narrowest first); matched rows become ``todo``.

    One statement. Returns the number of rows matched per phase number (1-4).
    """
    params = {"list_id": list_id, "group_id": group_id, "added": GroupStatus.ADDED.value}
    matched = _MATCH_BY_EMAIL.run(conn, params, cache_ids)
    return {int(phase): int(n) for phase, n in matched}


def set_contact_ids(conn: sa.Connection, contact_ids: Mapping[int, int]) -> int:
    """Set ``civicrm_contact_id`` of cache rows (cache id -> contact id) in one statement."""
    if not contact_ids:
        return 0
    rows = [{"id": cache_id, "contact_id": cid} for cache_id, cid in contact_ids.items()]
    return conn.execute(_SET_CONTACT_IDS, {"rows": json_rows(rows)}).rowcount


@dataclass(frozen=True)
class NewMember:
    """A row subscribed/pending at Mailchimp without a contact: names from Mailchimp."""

    cache_id: int
    email: str
    first_name: str | None
    last_name: str | None


def members_without_contact(
    conn: sa.Connection,
    list_id: str,
    after_id: int,
    limit: int,
    cache_ids: Iterable[int] | None = None,
) -> list[NewMember]:
    """The next ``limit`` rows (ids after ``after_id``) subscribed/pending at Mailchimp,
    with an email but no contact, in id order (keyset paging)."""
    params = {"list_id": list_id, "after": after_id, "limit": limit}
    return [NewMember(*row) for row in _MEMBERS_WITHOUT_CONTACT.run(conn, params, cache_ids)]


# --- readyToCheckForDataUpdates ---------------------------------------------------------


@dataclass(frozen=True)
class PluginSource:
    """A row whose plugin data is to be computed, with its stored ``civicrm_data``."""

    cache_id: int
    contact_id: int | None
    member_id: str | None
    email: str | None
    status: str | None
    civicrm_data: Mapping[str, Any] | None


def load_plugin_rows(
    conn: sa.Connection,
    list_id: str,
    after_id: int,
    limit: int,
    cache_ids: Iterable[int] | None = None,
) -> list[PluginSource]:
    """The next ``limit`` rows (ids after ``after_id``) subscribed/pending at Mailchimp or
    ``todo``, in id order (keyset paging)."""
    params = {"list_id": list_id, "after": after_id, "limit": limit}
    return [PluginSource(*row) for row in _PLUGIN_ROWS.run(conn, params, cache_ids)]


def store_plugin_data(conn: sa.Connection, data: Mapping[int, Mapping[str, Any] | None]) -> int:
    """Store ``civicrm_data`` per cache id (None: null); rows whose data changes -> ``todo``.

    One statement; returns the rows changed.
    """
    if not data:
        return 0
    rows = [{"id": cache_id, "data": value} for cache_id, value in data.items()]
    return conn.execute(_STORE_PLUGIN_DATA, {"rows": json_rows(rows)}).rowcount


def store_plugin_sent(conn: sa.Connection, sent: Mapping[int, Mapping[str, Any]]) -> int:
    """Note, per cache id, the plugin data just queued for Mailchimp (one statement)."""
    if not sent:
        return 0
    rows = [{"id": cache_id, "sent": value} for cache_id, value in sent.items()]
    params = {"rows": json_rows(rows), "key": PLUGIN_DATA_SENT}
    return conn.execute(_STORE_PLUGIN_SENT, params).rowcount


# --- readyToCleanUpDuplicates / readyToAddCiviOnly --------------------------------------


def delete_crm_only_duplicates(
    conn: sa.Connection, list_id: str, contact_ids: Iterable[int] | None = None
) -> int:
    """Delete CRM-only rows (no member id) of contacts that have a Mailchimp row here
    (``contact_ids``: of those contacts only).

    Their updates, sent or not, move to that Mailchimp row first, so none is lost.
    """
    ids = None if contact_ids is None else list(contact_ids)
    _MOVE_DUPLICATES_UPDATES.run(conn, {"list_id": list_id}, contact_ids=ids)
    deleted = _DELETE_CRM_ONLY_DUPLICATES.run(conn, {"list_id": list_id}, contact_ids=ids)
    return int(deleted.rowcount)


def add_crm_only_rows(conn: sa.Connection, list_id: str, group_id: int) -> int:
    """Give undeleted contacts ``Added`` to the group, without a row here, a ``todo`` row."""
    params = {"list_id": list_id, "group_id": group_id, "added": GroupStatus.ADDED.value}
    return conn.execute(_ADD_CRM_ONLY, params).rowcount


# --- readyToCheckForGroupChanges -------------------------------------------------------


def mark_group_changes_todo(
    conn: sa.Connection, list_id: str, group_ids: Sequence[int], since: datetime
) -> int:
    """Rows whose contact has history in ``group_ids`` dated on/after ``since`` that their
    ``civicrm_groups`` snapshot does not hold yet -> ``todo``."""
    params = {"list_id": list_id, "group_ids": list(group_ids), "since": since}
    return conn.execute(_MARK_GROUP_CHANGES, params).rowcount


def mark_contacts_todo(conn: sa.Connection, contact_ids: Iterable[int]) -> int:
    """Every row of these contacts, in every audience, -> ``todo`` (``includeinsync``);
    returns the rows (not contacts) marked. The ids travel as one array parameter."""
    ids = sorted(set(contact_ids))
    return conn.execute(_MARK_CONTACTS_TODO, {"ids": ids}).rowcount


def mark_all_contacts_todo(conn: sa.Connection, list_id: str) -> int:
    """Every row with a contact -> ``todo`` (a full sync); returns the rows changed."""
    return conn.execute(_MARK_ALL_CONTACTS, {"list_id": list_id}).rowcount


# --- readyToReconcileQueue -------------------------------------------------------------


def claim_todo_rows(
    conn: sa.Connection, list_id: str, cache_ids: Sequence[int]
) -> list[ClaimedRow]:
    """Lock those of these rows that are still ``todo``, skipping rows another transaction
    holds (``FOR UPDATE SKIP LOCKED``), so no row is decided twice at once. Ids with none
    missing between them (a first sync's chunk) are read as one range; ids far apart (an
    incremental run's) are probed one by one, and no row between them is read."""
    ids = sorted(set(cache_ids))
    if not ids:
        return []
    params: dict[str, object] = {"list_id": list_id, "first": ids[0], "last": ids[-1]}
    statement = _CLAIM_TODO_RANGE
    if ids[-1] - ids[0] + 1 > len(ids):
        params["ids"] = id_array(ids)
        statement = _CLAIM_TODO_IDS
    return [ClaimedRow(*row) for row in conn.execute(statement, params).all()]


def group_snapshot(newest: Mapping[int, HistoryEntry]) -> Snapshot:
    """The ``civicrm_groups`` snapshot of a contact's newest history per group, as
    ``_MARK_GROUP_CHANGES`` reads each group's entry in SQL (None: no history)."""
    if not newest:
        return None
    return {
        str(group): {"status": entry.status, "date": _iso_utc(entry.date)}
        for group, entry in newest.items()
    }


def _iso_utc(moment: datetime) -> str:
    return to_utc(moment).isoformat(timespec="microseconds")


def set_decided(conn: sa.Connection, rows: Sequence[DecidedRow]) -> int:
    """Set each decided row's ``sync_status``, snapshot and ``fail_reason`` in one statement
    (rows already so are not written)."""
    if not rows:
        return 0
    payload = [
        {
            "id": r.cache_id,
            "status": r.sync_status.value,
            "groups": r.civicrm_groups,
            "reason": r.fail_reason,
        }
        for r in rows
    ]
    return conn.execute(_SET_DECIDED, {"rows": json_rows(payload)}).rowcount


def set_contact_snapshots(
    conn: sa.Connection, list_id: str, snapshots: Mapping[int, Snapshot], except_ids: Iterable[int]
) -> int:
    """Set the snapshot of the audience's other rows of these contacts (a contact's duplicate
    rows share its memberships), leaving the rows ``except_ids`` alone."""
    if not snapshots:
        return 0
    payload = [{"contact_id": c, "groups": g} for c, g in snapshots.items()]
    params = {"list_id": list_id, "rows": json_rows(payload), "except_ids": sorted(set(except_ids))}
    return conn.execute(_SET_CONTACT_SNAPSHOTS, params).rowcount


def set_sync_statuses(conn: sa.Connection, statuses: Sequence[RowStatus]) -> int:
    """Set each row's ``sync_status`` in one statement."""
    if not statuses:
        return 0
    params = {
        "ids": [s.cache_id for s in statuses],
        "statuses": [s.sync_status.value for s in statuses],
    }
    return conn.execute(_SET_STATUSES, params).rowcount


# The phases of services.reconciler.match in one ordering, for the addresses of a CTE
# ``unmatched(em)`` (lower-cased): among the undeleted owners of an address, a sole owner wins
# (phase 1); else Added to the group, then any history in it, then the lowest id. Gives
# ``chosen(em, contact_id, phase)``. tests/integration/reconciler checks it agrees with
# match_rows.
_CHOSEN_OWNERS = """
    owners AS (
        SELECT DISTINCT lower(e.email) AS em, e.contact_id
        FROM civicrm_email e JOIN civicrm_contact k ON k.id = e.contact_id AND NOT k.is_deleted
        WHERE lower(e.email) IN (SELECT em FROM unmatched)
    ), counted AS (
        SELECT o.em, o.contact_id, count(*) OVER (PARTITION BY o.em) AS n_owners FROM owners o
    ), ranked AS (
        -- A sole owner needs no tie-break: CASE probes the group only for shared addresses.
        SELECT o.em, o.contact_id, o.n_owners,
            CASE WHEN o.n_owners > 1 THEN EXISTS (
                SELECT 1 FROM civicrm_group_contact gc
                WHERE gc.contact_id = o.contact_id AND gc.group_id = :group_id
                  AND gc.status = :added) ELSE false END AS added,
            CASE WHEN o.n_owners > 1 THEN EXISTS (
                SELECT 1 FROM civicrm_subscription_history h
                WHERE h.contact_id = o.contact_id AND h.group_id = :group_id) ELSE false END
                AS history
        FROM counted o
    ), chosen AS (
        SELECT DISTINCT ON (em) em, contact_id,
            CASE WHEN n_owners = 1 THEN 1 WHEN added THEN 2 WHEN history THEN 3 ELSE 4 END
                AS phase
        FROM ranked ORDER BY em, added DESC, history DESC, contact_id
    )
"""
_UPSERT_FETCHED = sa.text(f"""
    WITH r AS (
        SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(member_id text,
            email text, status text, updated timestamptz, data jsonb, linked boolean)
    ), unmatched AS (
        SELECT DISTINCT lower(r.email) AS em FROM r WHERE NOT r.linked AND r.email IS NOT NULL
    ), {_CHOSEN_OWNERS}
    INSERT INTO civicrm_mailchimpsync_cache AS c (mailchimp_list_id, mailchimp_member_id,
        mailchimp_email, mailchimp_status, mailchimp_updated, mailchimp_data,
        civicrm_contact_id, sync_status)
    SELECT :list_id, r.member_id, r.email, r.status, r.updated, r.data, ch.contact_id, 'todo'
    FROM r LEFT JOIN chosen ch ON NOT r.linked AND ch.em = lower(r.email)
    ON CONFLICT (mailchimp_list_id, mailchimp_member_id) DO UPDATE SET
        mailchimp_email = EXCLUDED.mailchimp_email,
        mailchimp_status = EXCLUDED.mailchimp_status,
        mailchimp_updated = EXCLUDED.mailchimp_updated,
        mailchimp_data = EXCLUDED.mailchimp_data,
        civicrm_contact_id = coalesce(c.civicrm_contact_id, EXCLUDED.civicrm_contact_id),
        sync_status = 'todo'
    WHERE c.mailchimp_email IS DISTINCT FROM EXCLUDED.mailchimp_email
       OR c.mailchimp_status IS DISTINCT FROM EXCLUDED.mailchimp_status
       OR c.mailchimp_updated IS DISTINCT FROM EXCLUDED.mailchimp_updated
       OR c.mailchimp_data IS DISTINCT FROM EXCLUDED.mailchimp_data
       OR (c.civicrm_contact_id IS NULL AND EXCLUDED.civicrm_contact_id IS NOT NULL)
""")

_ESTIMATED_AUDIENCE_ROWS = sa.text("""
    EXPLAIN (FORMAT JSON)
    SELECT 1 FROM civicrm_mailchimpsync_cache WHERE mailchimp_list_id = :list_id
""")
_ANALYZE_LOCK = sa.text("SELECT pg_try_advisory_xact_lock(hashtext('mcsync: analyze the cache'))")
_PLANNER_CHOICES = ("enable_seqscan", "enable_hashjoin", "enable_mergejoin")
_KEY_PROBES_ONLY = sa.text(
    "SELECT " + ", ".join(f"set_config('{name}', 'off', true)" for name in _PLANNER_CHOICES)
)
_ANY_PLAN = sa.text(
    "SELECT " + ", ".join(f"set_config('{name}', 'on', true)" for name in _PLANNER_CHOICES)
)
# A nested loop of probes of the unique index (the only plan left, see load_earlier_rows);
# the other indexes lead by the audience too, and statistics that know the audience
# (refresh_statistics_if_outgrown) make them cost a walk of the audience per probe.
_LOAD_EARLIER_ROWS = sa.text("""
    SELECT c.mailchimp_member_id, c.mailchimp_data, c.civicrm_contact_id IS NOT NULL,
        c.mailchimp_email, c.mailchimp_status, c.mailchimp_updated
    FROM unnest(CAST(:ids AS text[])) AS k(member_id)
    JOIN civicrm_mailchimpsync_cache c
        ON c.mailchimp_list_id = :list_id AND c.mailchimp_member_id = k.member_id
""")
# Two index probes (member id, then address), never a scan of the audience.
_ROW_OF_MEMBER = sa.text("""
    (SELECT id, civicrm_contact_id, mailchimp_member_id, mailchimp_email, 1 AS rank
     FROM civicrm_mailchimpsync_cache
     WHERE mailchimp_list_id = :list_id AND mailchimp_member_id = :member_id)
    UNION ALL
    (SELECT id, civicrm_contact_id, mailchimp_member_id, mailchimp_email, 2 AS rank
     FROM civicrm_mailchimpsync_cache
     WHERE mailchimp_list_id = :list_id AND lower(mailchimp_email) = lower(:email))
    ORDER BY rank, id LIMIT 1
""")
_MEMBER_ROW = sa.text("""
    SELECT id, civicrm_contact_id, mailchimp_member_id, mailchimp_email
    FROM civicrm_mailchimpsync_cache WHERE id = :id
""")
_MOVE_ROW = sa.text("""
    UPDATE civicrm_mailchimpsync_cache
    SET mailchimp_member_id = :member_id, mailchimp_email = :email, sync_status = 'todo'
    WHERE id = :id
""")
_DELETE_ROWS = sa.text("""
    DELETE FROM civicrm_mailchimpsync_cache WHERE id = ANY(CAST(:ids AS bigint[]))
""")
_STATUS_COUNTS = sa.text("""
    SELECT sync_status, count(*) FROM civicrm_mailchimpsync_cache
    WHERE mailchimp_list_id = :list_id GROUP BY sync_status
""")

_CLEAR_MISSING_CONTACTS = _Scoped.of("""
    UPDATE civicrm_mailchimpsync_cache c
    SET civicrm_contact_id = NULL, civicrm_groups = NULL, sync_status = 'todo'
    WHERE c.mailchimp_list_id = :list_id AND c.civicrm_contact_id IS NOT NULL {rows}
      AND NOT EXISTS (SELECT 1 FROM civicrm_contact k
                      WHERE k.id = c.civicrm_contact_id AND NOT k.is_deleted)
""")
_DELETE_ORPHANS = sa.text("""
    DELETE FROM civicrm_mailchimpsync_cache
    WHERE mailchimp_list_id = :list_id
      AND mailchimp_member_id IS NULL AND civicrm_contact_id IS NULL
""")
_MATCH_BY_EMAIL = _Scoped.of(f"""
    WITH unmatched AS (
        SELECT c.id, lower(c.mailchimp_email) AS em FROM civicrm_mailchimpsync_cache c
        WHERE c.mailchimp_list_id = :list_id AND c.civicrm_contact_id IS NULL
          AND c.mailchimp_email IS NOT NULL {ROWS}
    ), {_CHOSEN_OWNERS},
    -- The pairs first: with the unlinked rows joined straight to the rows to update, the
    -- planner hashed the whole audience before the owners were known (1.4 s a run at a
    -- million members, to match none).
    pairs AS MATERIALIZED (
        SELECT u.id, ch.contact_id, ch.phase FROM unmatched u JOIN chosen ch ON ch.em = u.em
    ), matched AS (
        UPDATE civicrm_mailchimpsync_cache c
        SET civicrm_contact_id = p.contact_id, sync_status = 'todo'
        FROM pairs p
        WHERE c.id = p.id
        RETURNING p.phase
    )
    SELECT phase, count(*) FROM matched GROUP BY phase
""")
_SET_CONTACT_IDS = sa.text("""
    UPDATE civicrm_mailchimpsync_cache c SET civicrm_contact_id = r.contact_id
    FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(id bigint, contact_id integer)
    WHERE c.id = r.id
""")

_MEMBERS_WITHOUT_CONTACT = _Scoped.of("""
    SELECT c.id, c.mailchimp_email, NULLIF(c.mailchimp_data ->> 'first_name', ''),
        NULLIF(c.mailchimp_data ->> 'last_name', '')
    FROM civicrm_mailchimpsync_cache c
    WHERE c.mailchimp_list_id = :list_id AND c.civicrm_contact_id IS NULL AND c.id > :after
      AND c.mailchimp_status IN ('subscribed', 'pending') {rows}
      AND c.mailchimp_email IS NOT NULL AND btrim(c.mailchimp_email) <> ''
    ORDER BY c.id LIMIT :limit
""")
_PLUGIN_ROWS = _Scoped.of("""
    SELECT c.id, c.civicrm_contact_id, c.mailchimp_member_id, c.mailchimp_email,
        c.mailchimp_status, c.civicrm_data
    FROM civicrm_mailchimpsync_cache c
    WHERE c.mailchimp_list_id = :list_id AND c.id > :after {rows}
      AND (c.mailchimp_status IN ('subscribed', 'pending') OR c.sync_status = 'todo')
    ORDER BY c.id LIMIT :limit
""")
# A JSON null arrives as the jsonb value 'null', which is not SQL NULL (SQLAlchemy's JSON type
# also stores None that way): NULLIF makes both sides SQL NULL before comparing.
_STORE_PLUGIN_DATA = sa.text("""
    UPDATE civicrm_mailchimpsync_cache c
    SET civicrm_data = NULLIF(r.data, 'null'::jsonb), sync_status = 'todo'
    FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(id bigint, data jsonb)
    WHERE c.id = r.id
      AND NULLIF(c.civicrm_data, 'null'::jsonb) IS DISTINCT FROM NULLIF(r.data, 'null'::jsonb)
""")
_STORE_PLUGIN_SENT = sa.text("""
    UPDATE civicrm_mailchimpsync_cache c
    SET civicrm_data = coalesce(NULLIF(c.civicrm_data, 'null'::jsonb), '{}'::jsonb)
        || jsonb_build_object(CAST(:key AS text), r.sent)
    FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(id bigint, sent jsonb)
    WHERE c.id = r.id
""")
_CRM_ONLY_DUPLICATES = """
    SELECT c.id, min(o.id) AS survivor
    FROM civicrm_mailchimpsync_cache c
    JOIN civicrm_mailchimpsync_cache o
      ON o.mailchimp_list_id = c.mailchimp_list_id
     AND o.civicrm_contact_id = c.civicrm_contact_id
     AND o.mailchimp_member_id IS NOT NULL
    WHERE c.mailchimp_list_id = :list_id AND c.mailchimp_member_id IS NULL
      AND c.civicrm_contact_id IS NOT NULL {rows}
    GROUP BY c.id
"""
# A CRM-only row can have updates already in a batch (the member it creates is what the
# new row is): they move to the surviving row, or deleting the row would cascade to them.
_MOVE_DUPLICATES_UPDATES = _Scoped.of(
    f"""
    UPDATE civicrm_mailchimpsync_update u SET mailchimpsync_cache_id = d.survivor
    FROM ({_CRM_ONLY_DUPLICATES}) AS d
    WHERE u.mailchimpsync_cache_id = d.id
""",
    ROW_CONTACTS,
)
_DELETE_CRM_ONLY_DUPLICATES = _Scoped.of(
    f"""
    DELETE FROM civicrm_mailchimpsync_cache c
    USING ({_CRM_ONLY_DUPLICATES}) AS d
    WHERE c.id = d.id
""",
    ROW_CONTACTS,
)
_ADD_CRM_ONLY = sa.text("""
    INSERT INTO civicrm_mailchimpsync_cache (mailchimp_list_id, civicrm_contact_id, sync_status)
    SELECT CAST(:list_id AS text), gc.contact_id, 'todo'
    FROM civicrm_group_contact gc
    JOIN civicrm_contact k ON k.id = gc.contact_id AND NOT k.is_deleted
    WHERE gc.group_id = :group_id AND gc.status = :added
      AND NOT EXISTS (SELECT 1 FROM civicrm_mailchimpsync_cache c
                      WHERE c.mailchimp_list_id = CAST(:list_id AS text)
                        AND c.civicrm_contact_id = gc.contact_id)
    ORDER BY gc.contact_id
""")

# The date of one group's entry of a civicrm_groups snapshot ({"status": ..., "date": ...}),
# from a history row ``n``: rendered in UTC whatever the session's TimeZone, so the snapshot
# is stable, exactly as group_snapshot renders it from Python (_iso_utc).
_SNAPSHOT_DATE = """to_char(n.date AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')"""
# Rows whose snapshot does not hold their contact's newest history in a group changed since:
# a change the sync itself wrote (and snapshotted) when it decided the row is not news to the
# next run. Rows dated on/after ``since`` are newer than any before it, so the newest of
# them per contact and group is that group's newest history: compared with the snapshot's
# entry for the group (status and date compared as text: building a jsonb entry for each of
# a big run's history rows cost a third more), without reading the contact's older history.
# Set-based: the 2-hour overlap holds every history row a big run wrote, too many to probe
# one at a time.
_MARK_GROUP_CHANGES = sa.text(f"""
    WITH newest AS (
        SELECT DISTINCT ON (h.contact_id, h.group_id) h.contact_id, h.group_id, h.status, h.date
        FROM civicrm_subscription_history h
        WHERE h.group_id = ANY(CAST(:group_ids AS integer[])) AND h.date >= :since
        ORDER BY h.contact_id, h.group_id, h.date DESC, h.id DESC
    ), news AS (
        SELECT DISTINCT t.id
        FROM newest n JOIN civicrm_mailchimpsync_cache t ON t.civicrm_contact_id = n.contact_id
        WHERE t.mailchimp_list_id = :list_id AND t.sync_status <> 'todo'
          AND ((t.civicrm_groups -> (n.group_id::text) ->> 'status') IS DISTINCT FROM n.status
           OR (t.civicrm_groups -> (n.group_id::text) ->> 'date') IS DISTINCT FROM {_SNAPSHOT_DATE})
    )
    UPDATE civicrm_mailchimpsync_cache t SET sync_status = 'todo'
    FROM news WHERE t.id = news.id
""")
# Through the (audience, contact) index: every audience a connection syncs.
_MARK_CONTACTS_TODO = sa.text("""
    UPDATE civicrm_mailchimpsync_cache SET sync_status = 'todo'
    WHERE mailchimp_list_id = ANY(ARRAY(SELECT mailchimp_list_id FROM mailchimpsync_connection))
      AND civicrm_contact_id = ANY(CAST(:ids AS integer[]))
""")
_MARK_ALL_CONTACTS = sa.text("""
    UPDATE civicrm_mailchimpsync_cache SET sync_status = 'todo'
    WHERE mailchimp_list_id = :list_id AND civicrm_contact_id IS NOT NULL
      AND sync_status <> 'todo'
""")
_CLAIM_TODO = """
    SELECT c.id, c.civicrm_contact_id, c.mailchimp_member_id, c.mailchimp_email,
        c.mailchimp_status, c.mailchimp_updated, c.mailchimp_data, c.civicrm_data,
        o.subscribed, o.any
    FROM civicrm_mailchimpsync_cache c
    CROSS JOIN LATERAL (
        SELECT coalesce(bool_or(o.mailchimp_status IN ('subscribed', 'pending')), false)
                AS subscribed,
            count(*) > 0 AS any
        FROM civicrm_mailchimpsync_cache o
        WHERE o.mailchimp_list_id = c.mailchimp_list_id AND o.id <> c.id
          AND o.civicrm_contact_id = c.civicrm_contact_id
    ) AS o
    WHERE c.id BETWEEN :first AND :last {ids}
      AND c.mailchimp_list_id = :list_id AND c.sync_status = 'todo'
    ORDER BY c.id
    FOR UPDATE OF c SKIP LOCKED
"""
_CLAIM_TODO_RANGE = sa.text(_CLAIM_TODO.format(ids=""))
_CLAIM_TODO_IDS = sa.text(_CLAIM_TODO.format(ids="AND c.id = ANY(CAST(:ids AS bigint[]))"))
_SET_DECIDED = sa.text("""
    UPDATE civicrm_mailchimpsync_cache c
    SET sync_status = r.status, civicrm_groups = r.groups, fail_reason = r.reason
    FROM jsonb_to_recordset(CAST(:rows AS jsonb))
        AS r(id bigint, status text, groups jsonb, reason text)
    WHERE c.id = r.id
      AND (c.sync_status IS DISTINCT FROM r.status OR c.civicrm_groups IS DISTINCT FROM r.groups
           OR c.fail_reason IS DISTINCT FROM r.reason)
""")
_SET_CONTACT_SNAPSHOTS = sa.text("""
    UPDATE civicrm_mailchimpsync_cache c SET civicrm_groups = r.groups
    FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(contact_id integer, groups jsonb)
    WHERE c.mailchimp_list_id = :list_id AND c.civicrm_contact_id = r.contact_id
      AND c.id <> ALL(CAST(:except_ids AS bigint[]))
      AND c.civicrm_groups IS DISTINCT FROM r.groups
""")
_SET_STATUSES = sa.text("""
    UPDATE civicrm_mailchimpsync_cache c SET sync_status = r.status
    FROM unnest(CAST(:ids AS bigint[]), CAST(:statuses AS text[])) AS r(id, status)
    WHERE c.id = r.id AND c.sync_status IS DISTINCT FROM r.status
""")
