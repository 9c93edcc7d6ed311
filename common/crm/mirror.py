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
ANALYZE_AFTER = 0.1  # a table of which a refresh changed more than this share is analyzed
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
class _Column:
    """A column read from CiviCRM: its type in staging, and its value in the copy (an
    expression over the staged column; by default the column itself)."""

    name: str
    staged: str
    value: str = ""

    @property
    def copied(self) -> str:
        return f"{self.value or self.name} AS {self.name}"


@dataclass(frozen=True)
class _Table:
    """One table of the copy: how it is read from CiviCRM and merged in."""

    name: str
    select: str  # the columns of ``read``, then FROM ... WHERE; keyset on id is appended
    read: tuple[_Column, ...]
    key: tuple[str, ...] = ("id",)
    copied: tuple[str, ...] = ()  # the columns the copy takes (default: all read)
    scope: str = "true"  # which of the copy's rows the read covers (deletes stay inside it)
    also_delete: str = ""  # more rows to delete first, as a condition on copy row ``t``
    updates: bool = True  # history rows never change: only new ones are inserted

    @property
    def stage(self) -> str:
        return ", ".join(f"{c.name} {c.staged}" for c in self.read)

    @property
    def columns(self) -> tuple[_Column, ...]:
        return tuple(c for c in self.read if not self.copied or c.name in self.copied)

    def merge(self, deletes: bool = True) -> list[str]:
        """The statements merging ``crm_stage`` into the copy: rows CiviCRM no longer has
        deleted (``deletes``), then new and changed rows written, unchanged ones untouched
        (an upsert would lock, and so write, every row it matches)."""
        names = [c.name for c in self.columns]
        rest = [n for n in names if n not in self.key]
        on = " AND ".join(f"{side}.{k} = t.{k}" for side in ("s",) for k in self.key)
        statements = []
        if deletes:
            extra = f" OR ({self.also_delete})" if self.also_delete else ""
            statements.append(
                f"DELETE FROM {self.name} t WHERE ({self.scope}) AND (NOT EXISTS "
                f"(SELECT 1 FROM crm_stage s WHERE {on}){extra})"
            )
        joined = " AND ".join(f"o.{k} = i.{k}" for k in self.key)
        changed = f"o.{self.key[0]} IS NULL"
        if self.updates and rest:
            old = ", ".join(f"o.{n}" for n in rest)
            new = ", ".join(f"i.{n}" for n in rest)
            changed += f" OR ({old}) IS DISTINCT FROM ({new})"
        if self.updates and rest:
            sets = ", ".join(f"{n} = EXCLUDED.{n}" for n in rest)
            conflict = f"DO UPDATE SET {sets}"
        else:
            conflict = "DO NOTHING"
        statements.append(
            f"WITH i AS (SELECT {', '.join(c.copied for c in self.columns)} FROM crm_stage) "
            f"INSERT INTO {self.name} ({', '.join(names)}) "
            f"SELECT {', '.join(f'i.{n}' for n in names)} FROM i "
            f"LEFT JOIN {self.name} o ON {joined} WHERE {changed} "
            f"ON CONFLICT ({', '.join(self.key)}) {conflict}"
        )
        return statements


def _utc(name: str) -> _Column:
    """A TIMESTAMP read in a UTC session: naive in staging, timezone-aware in the copy."""
    return _Column(name, "timestamp", f"{name} AT TIME ZONE 'UTC'")


def _flag(name: str) -> _Column:
    return _Column(name, "smallint", f"{name} <> 0")


_GROUPS = _Table(
    "civicrm_group",
    "SELECT id, name, title FROM civicrm_group WHERE id > %s",
    (_Column("id", "integer"), _Column("name", "text"), _Column("title", "text")),
    # A name is unique in the copy: a group of the copy holding a name CiviCRM gave another.
    also_delete="EXISTS (SELECT 1 FROM crm_stage s WHERE s.name = t.name AND s.id <> t.id)",
)
_CONTACTS = _Table(
    "civicrm_contact",
    "SELECT id, contact_type, first_name, last_name, source, is_deleted, created_date, "
    "modified_date FROM civicrm_contact WHERE id > %s",
    (
        _Column("id", "integer"),
        _Column("contact_type", "text", "coalesce(contact_type, 'Individual')"),
        _Column("first_name", "text"),
        _Column("last_name", "text"),
        _Column("source", "text"),
        _flag("is_deleted"),
        _utc("created_date"),
        _utc("modified_date"),
    ),
)
_EMAILS = _Table(
    "civicrm_email",
    "SELECT id, contact_id, email, is_primary, is_bulkmail, on_hold, hold_date "
    "FROM civicrm_email WHERE id > %s",
    (
        _Column("id", "integer"),
        _Column("contact_id", "integer"),
        _Column("email", "text"),
        _flag("is_primary"),
        _flag("is_bulkmail"),
        _Column("on_hold", "integer"),
        _utc("hold_date"),
    ),
)
# Memberships of the run's groups: the copy's own ids (a row written here by the sync has one
# before a refresh reads CiviCRM's), matched on (group, contact).
_MEMBERSHIPS = _Table(
    "civicrm_group_contact",
    "SELECT id, group_id, contact_id, status FROM civicrm_group_contact "
    "WHERE group_id IN ({groups}) AND id > %s",
    (
        _Column("id", "integer"),
        _Column("group_id", "integer"),
        _Column("contact_id", "integer"),
        _Column("status", "text"),
    ),
    key=("group_id", "contact_id"),
    copied=("group_id", "contact_id", "status"),
    scope="t.group_id = ANY(CAST(:groups AS integer[]))",
)
_HISTORY = _Table(
    "civicrm_subscription_history",
    "SELECT id, contact_id, group_id, date, method, status FROM civicrm_subscription_history "
    "WHERE group_id IN ({groups}) AND id > %s",
    (
        _Column("id", "integer"),
        _Column("contact_id", "integer"),
        _Column("group_id", "integer"),
        _utc("date"),
        _Column("method", "text"),
        _Column("status", "text"),
    ),
    updates=False,
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
    for statement in table.merge(deletes=table.updates):
        changed += conn.execute(sa.text(statement), bind).rowcount
    conn.exec_driver_sql("DROP TABLE crm_stage")
    if changed > ANALYZE_AFTER * max(copied, 1):
        # The stages plan on these statistics next; the stale ones may date from an empty copy.
        conn.exec_driver_sql(f"ANALYZE {table.name}")
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
    conn.execute(sa.text(table.merge(deletes=False)[-1]))
    conn.exec_driver_sql("DROP TABLE crm_stage")
