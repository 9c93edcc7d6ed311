"""The run's CRM facts: CiviCRM's rows that the sync reads, mirrored into our Postgres.

With ``MCSYNC_CRM_URL`` set, the ``civicrm_*`` tables of our Postgres hold a copy of
CiviCRM's, and the set-based stages keep running on them. ``refresh`` brings the copy up to
date at the start of a run: every group, contact and email, and the memberships of the
run's groups, read in keyset pages from one consistent snapshot of CiviCRM and streamed
into staging tables by COPY, then merged (a row is rewritten only when it changed); the
subscription history of the run's groups is read incrementally (its ids only grow).
``copy_contacts`` brings a few contacts up to date (after the sync wrote them, or before a
webhook's member is decided). Design: docs/civicrm.md.

Writers of the copy take ``share_mirror`` in their transaction and ``refresh`` holds it
exclusively, so a refresh never merges a row read before a write over that write.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from common.db.params import id_array, json_rows

PAGE = 20_000
# History ids are taken in CiviCRM's inserts, but a transaction may commit after a later id
# was read: each incremental read goes back this many ids (rows already here are skipped).
HISTORY_OVERLAP = 10_000
MIRROR_LOCK = 0x6D6373796E636D  # "mcsyncm": the advisory lock on the copy

__all__ = [
    "RefreshReport",
    "TableRead",
    "copy_contacts",
    "refresh",
    "refresh_on",
    "share_mirror",
]


@dataclass(frozen=True)
class TableRead:
    """What ``refresh`` read of one CiviCRM table: rows, and seconds reading and merging."""

    table: str
    rows: int
    read_seconds: float
    merge_seconds: float
    changed: int


@dataclass(frozen=True)
class RefreshReport:
    tables: list[TableRead] = field(default_factory=list)

    @property
    def line(self) -> str:
        """One line for the status log."""
        parts = [f"{t.table} {t.rows} read, {t.changed} changed" for t in self.tables]
        seconds = sum(t.read_seconds + t.merge_seconds for t in self.tables)
        return f"CRM facts from CiviCRM in {seconds:.1f} s: " + "; ".join(parts)


def share_mirror(conn: sa.Connection) -> None:
    """Hold the copy shared for the caller's transaction (a writer: no refresh meanwhile)."""
    conn.execute(sa.text("SELECT pg_advisory_xact_lock_shared(:key)"), {"key": MIRROR_LOCK})


@dataclass(frozen=True)
class _Table:
    name: str
    select: str  # columns, then FROM ... WHERE; keyset on id is appended
    stage: str  # staging columns, in the order of the select
    merge: tuple[str, ...]  # statements merging crm_stage into the copy; the last one counts too


_GROUPS = _Table(
    "civicrm_group",
    "SELECT id, name, title FROM civicrm_group WHERE id > %s",
    "id integer, name text, title text",
    (
        """DELETE FROM civicrm_group g
           WHERE NOT EXISTS (SELECT 1 FROM crm_stage s WHERE s.id = g.id)
              OR EXISTS (SELECT 1 FROM crm_stage s WHERE s.name = g.name AND s.id <> g.id)""",
        """INSERT INTO civicrm_group (id, name, title) SELECT id, name, title FROM crm_stage
           ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, title = EXCLUDED.title
           WHERE (civicrm_group.name, civicrm_group.title)
               IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.title)""",
    ),
)
_CONTACTS = _Table(
    "civicrm_contact",
    "SELECT id, contact_type, first_name, last_name, source, is_deleted, created_date, "
    "modified_date FROM civicrm_contact WHERE id > %s",
    "id integer, contact_type text, first_name text, last_name text, source text, "
    "is_deleted smallint, created_date timestamp, modified_date timestamp",
    (
        """DELETE FROM civicrm_contact c
           WHERE NOT EXISTS (SELECT 1 FROM crm_stage s WHERE s.id = c.id)""",
        """INSERT INTO civicrm_contact AS c (id, contact_type, first_name, last_name, source,
               is_deleted, created_date, modified_date)
           SELECT id, coalesce(contact_type, 'Individual'), first_name, last_name, source,
               is_deleted <> 0, created_date AT TIME ZONE 'UTC', modified_date AT TIME ZONE 'UTC'
           FROM crm_stage
           ON CONFLICT (id) DO UPDATE SET contact_type = EXCLUDED.contact_type,
               first_name = EXCLUDED.first_name, last_name = EXCLUDED.last_name,
               source = EXCLUDED.source, is_deleted = EXCLUDED.is_deleted,
               created_date = EXCLUDED.created_date, modified_date = EXCLUDED.modified_date
           WHERE (c.contact_type, c.first_name, c.last_name, c.source, c.is_deleted,
                  c.created_date, c.modified_date)
               IS DISTINCT FROM (EXCLUDED.contact_type, EXCLUDED.first_name, EXCLUDED.last_name,
                  EXCLUDED.source, EXCLUDED.is_deleted, EXCLUDED.created_date,
                  EXCLUDED.modified_date)""",
    ),
)
_EMAILS = _Table(
    "civicrm_email",
    "SELECT id, contact_id, email, is_primary, is_bulkmail, on_hold, hold_date "
    "FROM civicrm_email WHERE id > %s",
    "id integer, contact_id integer, email text, is_primary smallint, is_bulkmail smallint, "
    "on_hold integer, hold_date timestamp",
    (
        """DELETE FROM civicrm_email e
           WHERE NOT EXISTS (SELECT 1 FROM crm_stage s WHERE s.id = e.id)""",
        """INSERT INTO civicrm_email AS e (id, contact_id, email, is_primary, is_bulkmail,
               on_hold, hold_date)
           SELECT id, contact_id, email, is_primary <> 0, is_bulkmail <> 0, on_hold,
               hold_date AT TIME ZONE 'UTC'
           FROM crm_stage
           ON CONFLICT (id) DO UPDATE SET contact_id = EXCLUDED.contact_id,
               email = EXCLUDED.email, is_primary = EXCLUDED.is_primary,
               is_bulkmail = EXCLUDED.is_bulkmail, on_hold = EXCLUDED.on_hold,
               hold_date = EXCLUDED.hold_date
           WHERE (e.contact_id, e.email, e.is_primary, e.is_bulkmail, e.on_hold, e.hold_date)
               IS DISTINCT FROM (EXCLUDED.contact_id, EXCLUDED.email, EXCLUDED.is_primary,
                  EXCLUDED.is_bulkmail, EXCLUDED.on_hold, EXCLUDED.hold_date)""",
    ),
)
# Memberships of the run's groups: the copy's own ids (a row written here by the sync has one
# before a refresh reads CiviCRM's), matched on (group, contact).
_MEMBERSHIPS = _Table(
    "civicrm_group_contact",
    "SELECT id, group_id, contact_id, status FROM civicrm_group_contact "
    "WHERE group_id IN ({groups}) AND id > %s",
    "id integer, group_id integer, contact_id integer, status text",
    (
        """DELETE FROM civicrm_group_contact gc
           WHERE gc.group_id = ANY(CAST(:groups AS integer[]))
             AND NOT EXISTS (SELECT 1 FROM crm_stage s
                             WHERE s.group_id = gc.group_id AND s.contact_id = gc.contact_id)""",
        """INSERT INTO civicrm_group_contact AS gc (group_id, contact_id, status)
           SELECT group_id, contact_id, status FROM crm_stage
           ON CONFLICT (group_id, contact_id) DO UPDATE SET status = EXCLUDED.status
           WHERE gc.status IS DISTINCT FROM EXCLUDED.status""",
    ),
)
_HISTORY = _Table(
    "civicrm_subscription_history",
    "SELECT id, contact_id, group_id, date, method, status FROM civicrm_subscription_history "
    "WHERE group_id IN ({groups}) AND id > %s",
    "id integer, contact_id integer, group_id integer, date timestamp, method text, status text",
    (
        """INSERT INTO civicrm_subscription_history (id, contact_id, group_id, date, method,
               status)
           SELECT id, contact_id, group_id, date AT TIME ZONE 'UTC', method, status FROM crm_stage
           ON CONFLICT (id) DO NOTHING""",
    ),
)


def refresh(pg: sa.Engine, civicrm: sa.Engine, group_ids: Sequence[int]) -> RefreshReport:
    """Bring the copy up to date with CiviCRM for a run of ``group_ids``, in one transaction
    of each database (CiviCRM's a consistent, read-only snapshot). Idempotent."""
    with pg.begin() as conn, civicrm.connect() as crm:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIRROR_LOCK})
        crm.exec_driver_sql("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        try:
            return refresh_on(conn, crm, group_ids)
        finally:
            crm.rollback()


def refresh_on(conn: sa.Connection, crm: sa.Connection, group_ids: Sequence[int]) -> RefreshReport:
    """``refresh`` on the caller's connections and transactions (and locks)."""
    groups = sorted(set(group_ids))
    report = RefreshReport()
    for table in (_GROUPS, _CONTACTS, _EMAILS):
        report.tables.append(_mirror(conn, crm, table, 0, {}))
    if groups:
        report.tables.append(_mirror(conn, crm, _MEMBERSHIPS, 0, {"groups": groups}))
        since = _history_read_through(conn, groups)
        start = max(0, since - HISTORY_OVERLAP) if since else 0
        report.tables.append(_mirror(conn, crm, _HISTORY, start, {"groups": groups}))
        _record_history_read(conn, groups)
    return report


def _mirror(
    conn: sa.Connection, crm: sa.Connection, table: _Table, after: int, params: dict[str, Any]
) -> TableRead:
    conn.exec_driver_sql(f"CREATE TEMP TABLE crm_stage ({table.stage}) ON COMMIT DROP")
    select = table.select.replace("{groups}", ", ".join(map(str, params.get("groups", ()))))
    started = time.perf_counter()
    copied = _copy(conn, f"crm_stage ({_names(table.stage)})", _pages(crm, select, after))
    read = time.perf_counter() - started
    conn.exec_driver_sql("ANALYZE crm_stage")
    changed = 0
    bind = {"groups": id_array(params["groups"])} if "groups" in params else {}
    for statement in table.merge:
        changed += conn.execute(sa.text(statement), bind).rowcount
    conn.exec_driver_sql("DROP TABLE crm_stage")
    return TableRead(table.name, copied, read, time.perf_counter() - started - read, changed)


def _names(stage: str) -> str:
    return ", ".join(column.split()[0] for column in stage.split(","))


def _pages(crm: sa.Connection, select: str, after: int) -> Iterator[tuple[Any, ...]]:
    """Every row of ``select`` with an id after ``after``, in keyset pages of PAGE rows."""
    cursor = crm.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        while True:
            cursor.execute(f"{select} ORDER BY id LIMIT {PAGE}", (after,))
            rows = cursor.fetchall()
            yield from rows
            if len(rows) < PAGE:
                return
            after = rows[-1][0]
    finally:
        cursor.close()


def _copy(conn: sa.Connection, target: str, rows: Iterator[tuple[Any, ...]]) -> int:
    """COPY ``rows`` into ``target`` on the caller's connection; the number copied."""
    count = 0
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    with cursor, cursor.copy(f"COPY {target} FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
            count += 1
    return count


def _history_read_through(conn: sa.Connection, groups: list[int]) -> int:
    """The history id read through for every group of ``groups`` (0: one was never read)."""
    found = conn.execute(
        sa.text(
            "SELECT count(*), min(history_id) FROM mailchimpsync_crm_read "
            "WHERE group_id = ANY(CAST(:groups AS integer[]))"
        ),
        {"groups": id_array(groups)},
    ).one()
    return int(found[1]) if found[0] == len(groups) else 0


def _record_history_read(conn: sa.Connection, groups: list[int]) -> None:
    conn.execute(
        sa.text("""
            INSERT INTO mailchimpsync_crm_read (group_id, history_id, read_at)
            SELECT g, coalesce((SELECT max(id) FROM civicrm_subscription_history), 0), now()
            FROM unnest(CAST(:groups AS integer[])) AS g
            ON CONFLICT (group_id) DO UPDATE
                SET history_id = EXCLUDED.history_id, read_at = EXCLUDED.read_at
        """),
        {"groups": id_array(groups)},
    )


def copy_contacts(
    conn: sa.Connection, crm: sa.Connection, contact_ids: Sequence[int], groups: Sequence[int] = ()
) -> None:
    """Bring ``contact_ids`` up to date in the copy, on the caller's transactions: the
    contacts, their emails and (for ``groups``) their memberships and history. A contact
    CiviCRM no longer has leaves the copy."""
    ids = sorted(set(contact_ids))
    if not ids:
        return
    share_mirror(conn)
    listed = ", ".join(map(str, ids))
    contacts = _rows(crm, _CONTACTS.select.replace("id > %s", f"id IN ({listed})"))
    emails = _rows(crm, _EMAILS.select.replace("id > %s", f"contact_id IN ({listed})"))
    bind = {"ids": id_array(ids)}
    conn.execute(
        sa.text(
            "DELETE FROM civicrm_contact WHERE id = ANY(CAST(:ids AS integer[])) "
            "AND id <> ALL(CAST(:found AS integer[]))"
        ),
        bind | {"found": id_array(row[0] for row in contacts)},
    )
    conn.execute(
        sa.text(
            "DELETE FROM civicrm_email WHERE contact_id = ANY(CAST(:ids AS integer[])) "
            "AND id <> ALL(CAST(:found AS integer[]))"
        ),
        bind | {"found": id_array(row[0] for row in emails)},
    )
    tables = [(_CONTACTS, contacts), (_EMAILS, emails)]
    if groups:
        in_groups = ", ".join(map(str, sorted(set(groups))))
        for table in (_MEMBERSHIPS, _HISTORY):
            select = table.select.replace("{groups}", in_groups)
            tables.append(
                (table, _rows(crm, select.replace("id > %s", f"contact_id IN ({listed})")))
            )
    for table, rows in tables:
        _merge_rows(conn, table, rows)


def _rows(crm: sa.Connection, select: str) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in crm.exec_driver_sql(select)]


def _merge_rows(conn: sa.Connection, table: _Table, rows: list[tuple[Any, ...]]) -> None:
    """Merge a few rows into the copy as ``refresh`` merges a table, without its deletes."""
    names = _names(table.stage).split(", ")
    conn.exec_driver_sql(f"CREATE TEMP TABLE crm_stage ({table.stage}) ON COMMIT DROP")
    conn.execute(
        sa.text(
            "INSERT INTO crm_stage SELECT * FROM json_populate_recordset("
            "NULL::crm_stage, CAST(:rows AS json))"
        ),
        {"rows": json_rows([dict(zip(names, row, strict=True)) for row in rows])},
    )
    conn.execute(sa.text(table.merge[-1]))
    conn.exec_driver_sql("DROP TABLE crm_stage")
