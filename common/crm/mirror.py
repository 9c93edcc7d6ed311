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
from collections.abc import Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa

from common.db.params import id_array

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
    read: tuple[_Column, ...]
    where: str = "true"  # which of CiviCRM's rows to read ({groups}: the run's group ids)
    key: tuple[str, ...] = ("id",)
    copied: tuple[str, ...] = ()  # the columns the copy takes (default: all read)
    scope: str = "true"  # which of the copy's rows the read covers (deletes stay inside it)
    also_delete: str = ""  # more rows to delete first, as a condition on copy row ``t``
    updates: bool = True  # history rows never change: only new ones are inserted

    @property
    def stage(self) -> str:
        return ", ".join(f"{c.name} {c.staged}" for c in self.read)

    def select(self, where: str, paged: bool = True) -> str:
        """Rows of CiviCRM's table matching ``where`` with an id after one given: the id,
        and the row as one line of COPY's text format, formatted by CiviCRM's server (three
        times faster than parsing each column in Python). ``paged``: a keyset page, in id
        order (else every match at once: a few contacts' rows, found by their index, where
        ordering by id would have the server walk the whole table)."""
        line = "CONCAT_WS('\\t', " + ", ".join(_copy_text(c) for c in self.read) + ")"
        select = f"SELECT id, {line} FROM {self.name} WHERE ({where}) AND id > %s"
        return f"{select} ORDER BY id LIMIT {PAGE}" if paged else select

    @property
    def columns(self) -> tuple[_Column, ...]:
        return tuple(c for c in self.read if not self.copied or c.name in self.copied)

    def merge(self, deletes: bool = True, within: str = "true") -> list[str]:
        """The statements merging ``crm_stage`` into the copy: rows CiviCRM no longer has
        deleted (``deletes``; of the copy's rows ``within``), then new and changed rows
        written, unchanged ones untouched (an upsert would lock, and so write, every row it
        matches)."""
        names = [c.name for c in self.columns]
        rest = [n for n in names if n not in self.key]
        statements = []
        if deletes:
            on = " AND ".join(f"s.{k} = t.{k}" for k in self.key)
            extra = f" OR ({self.also_delete})" if self.also_delete else ""
            statements.append(
                f"DELETE FROM {self.name} t WHERE ({self.scope}) AND ({within}) AND (NOT EXISTS "
                f"(SELECT 1 FROM crm_stage s WHERE {on}){extra})"
            )
        joined = " AND ".join(f"o.{k} = i.{k}" for k in self.key)
        changed = f"o.{self.key[0]} IS NULL"
        conflict = "DO NOTHING"
        if self.updates and rest:
            old = ", ".join(f"o.{n}" for n in rest)
            new = ", ".join(f"i.{n}" for n in rest)
            changed += f" OR ({old}) IS DISTINCT FROM ({new})"
            conflict = "DO UPDATE SET " + ", ".join(f"{n} = EXCLUDED.{n}" for n in rest)
        statements.append(
            f"WITH i AS (SELECT {', '.join(c.copied for c in self.columns)} FROM crm_stage) "
            f"INSERT INTO {self.name} ({', '.join(names)}) "
            f"SELECT {', '.join(f'i.{n}' for n in names)} FROM i "
            f"LEFT JOIN {self.name} o ON {joined} WHERE {changed} "
            f"ON CONFLICT ({', '.join(self.key)}) {conflict}"
        )
        return statements


def _copy_text(column: _Column) -> str:
    """MySQL's expression of ``column`` as COPY's text format writes it: NULL as \\N, and in
    text the backslash, tab, newline and carriage return escaped."""
    value = column.name
    if column.staged == "text":
        for char, escaped in (
            ("\\\\", "\\\\\\\\"),
            ("\\t", "\\\\t"),
            ("\\n", "\\\\n"),
            ("\\r", "\\\\r"),
        ):
            value = f"REPLACE({value}, '{char}', '{escaped}')"
    return f"IFNULL({value}, '\\\\N')"


def _utc(name: str) -> _Column:
    """A TIMESTAMP read in a UTC session: naive in staging, timezone-aware in the copy."""
    return _Column(name, "timestamp", f"{name} AT TIME ZONE 'UTC'")


def _flag(name: str) -> _Column:
    return _Column(name, "smallint", f"{name} <> 0")


_GROUPS = _Table(
    "civicrm_group",
    (_Column("id", "integer"), _Column("name", "text"), _Column("title", "text")),
    # A name is unique in the copy: a group of the copy holding a name CiviCRM gave another.
    also_delete="EXISTS (SELECT 1 FROM crm_stage s WHERE s.name = t.name AND s.id <> t.id)",
)
_CONTACTS = _Table(
    "civicrm_contact",
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
    (
        _Column("id", "integer"),
        _Column("group_id", "integer"),
        _Column("contact_id", "integer"),
        _Column("status", "text"),
    ),
    where="group_id IN ({groups})",
    key=("group_id", "contact_id"),
    copied=("group_id", "contact_id", "status"),
    scope="t.group_id = ANY(CAST(:groups AS integer[]))",
)
_HISTORY = _Table(
    "civicrm_subscription_history",
    (
        _Column("id", "integer"),
        _Column("contact_id", "integer"),
        _Column("group_id", "integer"),
        _utc("date"),
        _Column("method", "text"),
        _Column("status", "text"),
    ),
    where="group_id IN ({groups})",
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
        report.tables.append(_mirror(conn, crm, table, 0, groups))
    if groups:
        report.tables.append(_mirror(conn, crm, _MEMBERSHIPS, 0, groups))
        since = _history_read_through(conn, groups)
        start = max(0, since - HISTORY_OVERLAP) if since else 0
        report.tables.append(_mirror(conn, crm, _HISTORY, start, groups))
        _record_history_read(conn, groups)
    return report


def _mirror(
    conn: sa.Connection, crm: sa.Connection, table: _Table, after: int, groups: list[int]
) -> TableRead:
    started = time.perf_counter()
    copied = _stage(conn, crm, table, _in_groups(table.where, groups), after)
    read = time.perf_counter() - started
    conn.exec_driver_sql("ANALYZE crm_stage")
    changed = _merge_staged(conn, table, {"groups": id_array(groups)})
    if changed > ANALYZE_AFTER * max(copied, 1):
        # The stages plan on these statistics next; the stale ones may date from an empty copy.
        conn.exec_driver_sql(f"ANALYZE {table.name}")
    return TableRead(table.name, copied, read, time.perf_counter() - started - read, changed)


def _merge_staged(
    conn: sa.Connection, table: _Table, bind: dict[str, str], within: str = "true"
) -> int:
    """Merge ``crm_stage`` into the copy (``_Table.merge``) and drop it; the rows changed."""
    changed = 0
    for statement in table.merge(deletes=table.updates, within=within):
        changed += conn.execute(sa.text(statement), bind).rowcount
    conn.exec_driver_sql("DROP TABLE crm_stage")
    return changed


def _in_groups(where: str, groups: Sequence[int]) -> str:
    return where.replace("{groups}", ", ".join(map(str, groups)))


def _stage(
    conn: sa.Connection,
    crm: sa.Connection,
    table: _Table,
    where: str,
    after: int,
    paged: bool = True,
) -> int:
    """CiviCRM's rows of ``table`` matching ``where`` with an id after ``after``, streamed
    into a new staging table ``crm_stage`` by COPY, a keyset page at a time (``paged``, else
    all at once); their number."""
    conn.exec_driver_sql(f"CREATE TEMP TABLE crm_stage ({table.stage}) ON COMMIT DROP")
    select = table.select(where, paged)
    count = 0
    reader = crm.connection.driver_connection.cursor()  # type: ignore[union-attr]
    writer = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    with reader, writer, writer.copy("COPY crm_stage FROM STDIN") as copy:
        while True:
            reader.execute(select, (after,))
            rows = reader.fetchall()
            if rows:
                copy.write("\n".join(line for _, line in rows) + "\n")
                count += len(rows)
                after = rows[-1][0]
            if not paged or len(rows) < PAGE:
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
    contacts, their emails and (for ``groups``) their memberships and history. What CiviCRM
    no longer has of them leaves the copy."""
    ids = sorted(set(contact_ids))
    if not ids:
        return
    share_mirror(conn)
    listed = ", ".join(map(str, ids))
    in_groups = sorted(set(groups))
    parts = [(_CONTACTS, "id"), (_EMAILS, "contact_id")]
    if in_groups:
        parts += [(_MEMBERSHIPS, "contact_id"), (_HISTORY, "contact_id")]
    bind = {"ids": id_array(ids), "groups": id_array(in_groups)}
    for table, owner in parts:
        where = f"{_in_groups(table.where, in_groups)} AND {owner} IN ({listed})"
        _stage(conn, crm, table, where, 0, paged=False)
        _merge_staged(conn, table, bind, within=f"t.{owner} = ANY(CAST(:ids AS integer[]))")
