"""The one gateway for CRM reads and writes (CiviCRM's tables and meaning).

Every function is set-based: it takes sequences and runs a fixed number of statements,
never one query per row. Rows travel as one JSON parameter expanded by ``json_to_recordset``
(psycopg adapts each list parameter element by element in Python, so parallel arrays of
100,000 rows cost the client seconds; orjson serialises the rows in milliseconds); a plain
list of ids or addresses travels as one array (on a chunk's path, as one array literal:
``id_array``). The SQL is written out, and only here, so that a later adapter can point it
at a real CiviCRM database. Functions run on the caller's connection and never commit: the
caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

import sqlalchemy as sa

from common.db import planner
from common.db.params import id_array, json_rows
from common.vocabulary import SYNC_METHOD, GroupStatus

__all__ = [
    "ContactDetails",
    "ContactGroupFacts",
    "EmailToAdd",
    "HistoryEntry",
    "MembershipChange",
    "NewContact",
    "NewEmail",
    "add_emails",
    "best_emails",
    "clean_name",
    "contact_count",
    "contact_details",
    "contact_group_facts",
    "create_group",
    "insert_contacts",
    "membership_counts",
    "put_emails_on_hold",
    "refresh_history_statistics",
    "set_memberships",
    "soft_delete_contacts",
]


# Enum lookup by value (GroupStatus(s)) costs ten times a dict's, once per membership read.
_GROUP_STATUS = {status.value: status for status in GroupStatus}
# A membership whose status is none of these (CiviCRM's column takes any text, or none) is no
# membership to the sync.
_KNOWN_STATUS = "gc.status IN (" + ", ".join(f"'{s.value}'" for s in GroupStatus) + ")"


@dataclass(frozen=True)
class NewEmail:
    """An email address of a contact about to be created."""

    email: str
    is_primary: bool = False
    is_bulkmail: bool = False
    on_hold: int = 0


@dataclass(frozen=True)
class NewContact:
    """A contact to create, with its email addresses."""

    first_name: str | None
    last_name: str | None
    source: str | None
    emails: tuple[NewEmail, ...] = ()
    contact_type: str = "Individual"
    is_deleted: bool = False


@dataclass(frozen=True)
class EmailToAdd:
    """An email address to add to an existing contact."""

    contact_id: int
    email: str
    is_bulkmail: bool = False


@dataclass(frozen=True)
class MembershipChange:
    """A contact's new status in a group, as of ``date`` (timezone-aware)."""

    contact_id: int
    group_id: int
    status: GroupStatus
    date: datetime
    method: str = SYNC_METHOD

    def __post_init__(self) -> None:
        if self.date.tzinfo is None:
            raise ValueError(f"MembershipChange.date must be timezone-aware; got {self.date!r}")


def create_group(conn: sa.Connection, name: str, title: str) -> int:
    """Create the group called ``name`` unless it exists; return its id either way."""
    inserted = conn.execute(_INSERT_GROUP, {"name": name, "title": title}).scalar_one_or_none()
    if inserted is not None:
        return int(inserted)
    return int(conn.execute(_GROUP_ID, {"name": name}).scalar_one())


def insert_contacts(conn: sa.Connection, contacts: Sequence[NewContact]) -> list[int]:
    """Create ``contacts`` and their emails in three statements; return the ids in input order.

    Ids are taken from the sequence first, so the order is guaranteed rather than inferred
    from the order of ``RETURNING`` rows.
    """
    if not contacts:
        return []
    ids: list[int] = sorted(conn.execute(_NEXT_CONTACT_IDS, {"n": len(contacts)}).scalar_one())
    conn.execute(_INSERT_CONTACTS, {"rows": json_rows(_contact_rows(ids, contacts))})
    emails = _email_rows(ids, contacts)
    if emails:
        conn.execute(_INSERT_EMAILS, {"rows": json_rows(emails)})
    return ids


def set_memberships(conn: sa.Connection, changes: Sequence[MembershipChange]) -> int:
    """Apply ``changes``: one history row per change, one membership row per (contact, group).

    When a pair appears more than once, its membership takes the latest change (by date, then
    input order). Returns the number of changes applied.
    """
    if not changes:
        return 0
    rows = {"rows": json_rows(changes)}
    conn.execute(_INSERT_HISTORY, rows)
    conn.execute(_UPSERT_MEMBERSHIPS, rows)
    return len(changes)


def refresh_history_statistics(conn: sa.Connection) -> bool:
    """ANALYZE the subscription history when a tenth of it changed since it was last
    analyzed: a big run writes a history row per change, faster than autovacuum notices, and
    the group check planned on stale statistics probes the audience once per history row.
    Returns whether it analyzed."""
    return planner.analyze_if_outdated(conn, "civicrm_subscription_history")


def put_emails_on_hold(conn: sa.Connection, emails: Sequence[str], when: datetime) -> int:
    """Put every address matching one of ``emails`` (case-insensitively) on hold since ``when``.

    Addresses already on hold keep their original hold date. Returns the rows newly held.
    """
    if not emails:
        return 0
    result = conn.execute(_HOLD_EMAILS, {"emails": list(emails), "when": when})
    return result.rowcount


def add_emails(conn: sa.Connection, rows: Sequence[EmailToAdd]) -> int:
    """Add each address to its contact unless the contact has it already (case-insensitively).

    A new bulk-mail address takes the bulk-mail flag from the contact's other addresses, as
    CiviCRM keeps one per contact. Returns the number of addresses added.
    """
    if not rows:
        return 0
    return int(conn.execute(_ADD_EMAILS, {"rows": json_rows(rows)}).scalar_one())


def set_contact_names(
    conn: sa.Connection, contact_id: int, first_name: str | None, last_name: str | None
) -> int:
    """Take the names that are given and not blank; a missing or blank one (an empty merge
    field at Mailchimp) leaves the CRM's name as it is. Returns the contacts changed."""
    first, last = clean_name(first_name), clean_name(last_name)
    if first is None and last is None:
        return 0
    return conn.execute(_SET_NAMES, {"id": contact_id, "first": first, "last": last}).rowcount


def clean_name(value: str | None) -> str | None:
    """A name as ``civicrm_contact`` holds it (64 characters), None when blank."""
    return (value or "").strip()[:64] or None


def soft_delete_contacts(conn: sa.Connection, contact_ids: Iterable[int]) -> int:
    """Mark the contacts deleted (CiviCRM's trash); return how many were not deleted before."""
    ids = list(contact_ids)
    if not ids:
        return 0
    return conn.execute(_SOFT_DELETE, {"ids": ids}).rowcount


def membership_counts(conn: sa.Connection, group_id: int) -> dict[GroupStatus, int]:
    """Undeleted contacts in the group per status; every status is present, zero if none."""
    counts = dict.fromkeys(GroupStatus, 0)
    for status, count in conn.execute(_MEMBERSHIP_COUNTS, {"group_id": group_id}):
        counts[_GROUP_STATUS[status]] = int(count)
    return counts


def contact_count(conn: sa.Connection) -> int:
    """The number of undeleted contacts."""
    return int(conn.execute(_CONTACT_COUNT).scalar_one())


def best_emails(conn: sa.Connection, contact_ids: Iterable[int]) -> dict[int, str]:
    """Each contact's best email: not on hold, non-empty, bulk-mail first, then primary, then
    lowest id. Contacts without a usable address are absent from the result.
    """
    ids = list(contact_ids)
    if not ids:
        return {}
    return {int(cid): str(email) for cid, email in conn.execute(_BEST_EMAILS, {"ids": ids})}


class HistoryEntry(NamedTuple):
    """A subscription-history row's status (``Added``, ``Removed``, ...) and date. A named
    tuple: a chunk builds one per contact and group, and a tuple is built fastest."""

    status: str
    date: datetime


class ContactGroupFacts(NamedTuple):
    """A contact's standing in a set of groups, for deciding its cache rows (a named tuple,
    built once per contact of a chunk).

    ``memberships``: status per group (absent: not a member). ``newest_history``: the newest
    history row per group (by date, then id; absent: none). ``best_email``: as
    ``best_emails``. ``held_emails``: the contact's addresses on hold, lower-cased.
    """

    contact_id: int
    memberships: dict[int, GroupStatus]
    newest_history: dict[int, HistoryEntry]
    best_email: str | None
    held_emails: frozenset[str]

    @property
    def history_at(self) -> dict[int, datetime]:
        """The newest history date per group."""
        return {group: entry.date for group, entry in self.newest_history.items()}


@dataclass(frozen=True)
class ContactDetails:
    """A contact's names and source."""

    contact_id: int
    first_name: str | None
    last_name: str | None
    source: str | None


def contact_group_facts(
    conn: sa.Connection, contact_ids: Iterable[int], group_ids: Sequence[int]
) -> dict[int, ContactGroupFacts]:
    """Memberships, newest history dates, best email and held emails of each contact, for
    ``group_ids`` only, in one query. Every requested contact that exists is in the result."""
    ids = sorted(set(contact_ids))
    if not ids:
        return {}
    params = {"ids": id_array(ids), "group_ids": list(group_ids)}
    # Columns by position and dicts from zip/map: a chunk builds a thousand of these, and
    # named access and comprehensions cost as much as the query's own probes.
    facts = {}
    for contact_id, m_groups, m_status, h_groups, h_status, h_dates, best, held in conn.execute(
        _CONTACT_GROUP_FACTS, params
    ):
        facts[contact_id] = ContactGroupFacts(
            contact_id,
            dict(zip(m_groups, map(_GROUP_STATUS.__getitem__, m_status), strict=True)),
            dict(zip(h_groups, map(HistoryEntry, h_status, h_dates), strict=True)),
            best,
            frozenset(held),
        )
    return facts


def contact_details(conn: sa.Connection, contact_ids: Iterable[int]) -> dict[int, ContactDetails]:
    """Names and source of each existing contact, in one query."""
    ids = sorted(set(contact_ids))
    if not ids:
        return {}
    return {
        int(row[0]): ContactDetails(int(row[0]), row[1], row[2], row[3])
        for row in conn.execute(_CONTACT_DETAILS, {"ids": ids})
    }


def _contact_rows(ids: list[int], contacts: Sequence[NewContact]) -> list[dict[str, object]]:
    return [
        {
            "id": cid,
            "contact_type": c.contact_type,
            "first_name": c.first_name,
            "last_name": c.last_name,
            "source": c.source,
            "is_deleted": c.is_deleted,
        }
        for cid, c in zip(ids, contacts, strict=True)
    ]


def _email_rows(ids: list[int], contacts: Sequence[NewContact]) -> list[dict[str, object]]:
    return [
        {
            "contact_id": cid,
            "email": e.email,
            "is_primary": e.is_primary,
            "is_bulkmail": e.is_bulkmail,
            "on_hold": e.on_hold,
        }
        for cid, c in zip(ids, contacts, strict=True)
        for e in c.emails
    ]


_INSERT_GROUP = sa.text(
    "INSERT INTO civicrm_group (name, title) VALUES (:name, :title) "
    "ON CONFLICT (name) DO NOTHING RETURNING id"
)
_GROUP_ID = sa.text("SELECT id FROM civicrm_group WHERE name = :name")

# The sequence is looked up once: pg_get_serial_sequence per row would cost more than nextval.
_NEXT_CONTACT_IDS = sa.text("""
    SELECT array_agg(nextval(s.seq)) FROM generate_series(1, :n),
        (SELECT CAST(pg_get_serial_sequence('civicrm_contact', 'id') AS regclass) AS seq) AS s
""")
_INSERT_CONTACTS = sa.text("""
    INSERT INTO civicrm_contact (id, contact_type, first_name, last_name, source, is_deleted)
    SELECT * FROM json_to_recordset(CAST(:rows AS json)) AS r(
        id integer, contact_type text, first_name text, last_name text, source text,
        is_deleted boolean)
""")
_INSERT_EMAILS = sa.text("""
    INSERT INTO civicrm_email (contact_id, email, is_primary, is_bulkmail, on_hold)
    SELECT contact_id, email, is_primary, is_bulkmail, on_hold
    FROM json_to_recordset(CAST(:rows AS json)) AS r(
        contact_id integer, email text, is_primary boolean, is_bulkmail boolean, on_hold smallint)
""")

_CHANGES = """
    ROWS FROM (json_to_recordset(CAST(:rows AS json))
        AS (contact_id integer, group_id integer, status text, date timestamptz, method text))
    WITH ORDINALITY AS c(contact_id, group_id, status, date, method, n)
"""
_INSERT_HISTORY = sa.text(f"""
    INSERT INTO civicrm_subscription_history (contact_id, group_id, status, date, method)
    SELECT contact_id, group_id, status, date, method FROM {_CHANGES} ORDER BY n
""")
# ON CONFLICT may touch a row only once per statement, hence one change per pair: the latest.
_UPSERT_MEMBERSHIPS = sa.text(f"""
    INSERT INTO civicrm_group_contact (contact_id, group_id, status)
    SELECT DISTINCT ON (group_id, contact_id) contact_id, group_id, status
    FROM {_CHANGES} ORDER BY group_id, contact_id, date DESC, n DESC
    ON CONFLICT (group_id, contact_id) DO UPDATE SET status = EXCLUDED.status
""")

# lower(email) matches the functional index ix_civicrm_email_lower_email.
_HOLD_EMAILS = sa.text("""
    UPDATE civicrm_email SET on_hold = 1, hold_date = :when
    WHERE on_hold = 0
      AND lower(email) IN (SELECT lower(e) FROM unnest(CAST(:emails AS text[])) AS e)
""")

_ADD_EMAILS = sa.text("""
    WITH wanted AS (
        SELECT DISTINCT ON (w.contact_id, lower(w.email)) w.*
        FROM json_to_recordset(CAST(:rows AS json))
            AS w(contact_id integer, email text, is_bulkmail boolean)
        WHERE NOT EXISTS (SELECT 1 FROM civicrm_email e
                          WHERE e.contact_id = w.contact_id AND lower(e.email) = lower(w.email))
        ORDER BY w.contact_id, lower(w.email), w.is_bulkmail DESC
    ), added AS (
        INSERT INTO civicrm_email (contact_id, email, is_bulkmail)
        SELECT contact_id, email, is_bulkmail FROM wanted
        RETURNING contact_id, is_bulkmail
    ), unflagged AS (
        UPDATE civicrm_email e SET is_bulkmail = false
        WHERE e.is_bulkmail AND e.contact_id IN (SELECT contact_id FROM added WHERE is_bulkmail)
    )
    SELECT count(*) FROM added
""")

_SET_NAMES = sa.text("""
    UPDATE civicrm_contact SET modified_date = now(),
        first_name = coalesce(CAST(:first AS text), first_name),
        last_name = coalesce(CAST(:last AS text), last_name)
    WHERE id = :id
      AND (first_name, last_name) IS DISTINCT FROM
          (coalesce(CAST(:first AS text), first_name), coalesce(CAST(:last AS text), last_name))
""")
_SOFT_DELETE = sa.text("""
    UPDATE civicrm_contact SET is_deleted = true, modified_date = now()
    WHERE id = ANY(CAST(:ids AS integer[])) AND NOT is_deleted
""")

_MEMBERSHIP_COUNTS = sa.text(f"""
    SELECT gc.status, count(*) FROM civicrm_group_contact gc
    JOIN civicrm_contact c ON c.id = gc.contact_id AND NOT c.is_deleted
    WHERE gc.group_id = :group_id AND {_KNOWN_STATUS} GROUP BY gc.status
""")
_CONTACT_COUNT = sa.text("SELECT count(*) FROM civicrm_contact WHERE NOT is_deleted")

_BEST_EMAILS = sa.text("""
    SELECT DISTINCT ON (contact_id) contact_id, email FROM civicrm_email
    WHERE contact_id = ANY(CAST(:ids AS integer[])) AND on_hold = 0 AND btrim(email) <> ''
    ORDER BY contact_id, is_bulkmail DESC, is_primary DESC, id
""")

# Correlated subqueries per contact: each is an index lookup, so a chunk of 1000 contacts
# costs one round trip and a few thousand index probes.
# One probe per contact and table: memberships, the newest history row per group (by date,
# then id, as the cache's civicrm_groups snapshot takes it), and the emails (best and held
# from one read: two subqueries cost a fifth more buffer reads).
_CONTACT_GROUP_FACTS = sa.text(
    """
    SELECT k.id AS contact_id, m.m_groups, m.m_status, h.h_groups, h.h_status, h.h_dates,
        em.best_email, em.held
    FROM civicrm_contact k
    CROSS JOIN LATERAL (
        SELECT coalesce(array_agg(gc.group_id ORDER BY gc.group_id), '{}') AS m_groups,
            coalesce(array_agg(gc.status ORDER BY gc.group_id), '{}') AS m_status
        FROM civicrm_group_contact gc
        WHERE gc.contact_id = k.id AND gc.group_id = ANY(CAST(:group_ids AS integer[]))
          AND {known}
    ) AS m
    CROSS JOIN LATERAL (
        SELECT coalesce(array_agg(n.group_id), '{}') AS h_groups,
            coalesce(array_agg(n.status), '{}') AS h_status,
            coalesce(array_agg(n.date), '{}') AS h_dates
        FROM (
            SELECT DISTINCT ON (h.group_id) h.group_id, h.status, h.date
            FROM civicrm_subscription_history h
            WHERE h.contact_id = k.id AND h.group_id = ANY(CAST(:group_ids AS integer[]))
            ORDER BY h.group_id, h.date DESC, h.id DESC
        ) AS n
    ) AS h
    CROSS JOIN LATERAL (
        SELECT (array_agg(e.email ORDER BY e.is_bulkmail DESC, e.is_primary DESC, e.id)
                FILTER (WHERE e.on_hold = 0 AND btrim(e.email) <> ''))[1] AS best_email,
            coalesce(array_agg(lower(e.email)) FILTER (WHERE e.on_hold <> 0), '{}') AS held
        FROM civicrm_email e WHERE e.contact_id = k.id
    ) AS em
    WHERE k.id = ANY(CAST(:ids AS integer[]))
""".replace("{known}", _KNOWN_STATUS)
)
_CONTACT_DETAILS = sa.text("""
    SELECT id, first_name, last_name, source FROM civicrm_contact
    WHERE id = ANY(CAST(:ids AS integer[]))
""")
