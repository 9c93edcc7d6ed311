"""CiviCRM's own tables on this machine's MariaDB, for the tests of the CiviCRM CRM.

``tests/civicrm/civicrm_schema.sql`` holds the tables the sync touches as CiviCRM defines
them (its header names the release); a test database gets them loaded afresh.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pymysql
import sqlalchemy as sa
from pymysql.constants import CLIENT
from server_checks import require_server

from common.crm.civicrm import crm_engine
from common.crm.writes import EMBEDDED, CiviCrm, CrmWrites
from common.db import crm

SCHEMA = Path(__file__).resolve().parent / "civicrm" / "civicrm_schema.sql"
HOST, PORT = "127.0.0.1", 3306


def root() -> pymysql.Connection:  # type: ignore[type-arg]
    """A root connection (this machine's MariaDB: root, no password), statements in batches."""
    return pymysql.connect(
        host=HOST, port=PORT, user="root", autocommit=True, client_flag=CLIENT.MULTI_STATEMENTS
    )


@contextmanager
def civicrm_database(name: str, with_schema: bool = True) -> Iterator[str]:
    """A database ``name`` holding CiviCRM's tables (none when not ``with_schema``); its root
    URL. Skipped without MariaDB (failed under CI=true); dropped afterwards."""
    require_server(HOST, PORT, "MariaDB")
    with root() as conn, conn.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        if with_schema:
            cursor.execute(f"USE `{name}`")
            cursor.execute(SCHEMA.read_text())
            while cursor.nextset():
                pass
    try:
        yield f"mysql://root@{HOST}:{PORT}/{name}"
    finally:
        with root() as conn, conn.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")


@contextmanager
def crm_user(database: str, user: str, password: str, grants: dict[str, str]) -> Iterator[str]:
    """A MariaDB user holding ``grants`` (table -> privileges) on ``database``; its URL."""
    with root() as conn, conn.cursor() as cursor:
        cursor.execute(f"DROP USER IF EXISTS '{user}'@'%'")
        cursor.execute(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'")
        for table, privileges in grants.items():
            cursor.execute(f"GRANT {privileges} ON `{database}`.`{table}` TO '{user}'@'%'")
    try:
        yield f"mysql://{user}:{password}@{HOST}:{PORT}/{database}"
    finally:
        with root() as conn, conn.cursor() as cursor:
            cursor.execute(f"DROP USER IF EXISTS '{user}'@'%'")


class CiviCrmTables:
    """CiviCRM's tables in a test database, written and read as CiviCRM's users would."""

    def __init__(self, database: str) -> None:
        self.database = database

    def _connect(self) -> pymysql.Connection:  # type: ignore[type-arg]
        return pymysql.connect(
            host=HOST,
            port=PORT,
            user="root",
            database=self.database,
            autocommit=True,
            init_command="SET time_zone = '+00:00'",
        )

    def execute(self, sql: str, *args: object) -> int:
        """Run one statement; the id it inserted (or the rows it changed)."""
        with self._connect() as conn, conn.cursor() as cursor:
            changed = cursor.execute(sql, args)
            return int(cursor.lastrowid or changed)

    def rows(self, sql: str, *args: object) -> list[tuple[object, ...]]:
        with self._connect() as conn, conn.cursor() as cursor:
            cursor.execute(sql, args)
            return [tuple(row) for row in cursor.fetchall()]

    def empty(self) -> None:
        """Delete every row the tests write (a database shared by many tests)."""
        with self._connect() as conn, conn.cursor() as cursor:
            for table in (
                "civicrm_subscription_history",
                "civicrm_group_contact",
                "civicrm_email",
                "civicrm_group",
                "civicrm_contact",
            ):
                cursor.execute(f"DELETE FROM {table}")

    def group(self, name: str) -> int:
        return self.execute(
            "INSERT INTO civicrm_group (name, title, frontend_title) VALUES (%s, %s, %s)",
            name,
            name.title(),
            name.title(),
        )

    def contact(self, first: str, last: str, *emails: str) -> int:
        """An Individual; its first email is primary and bulk-mail."""
        cid = self.execute(
            "INSERT INTO civicrm_contact (contact_type, first_name, last_name, display_name, "
            "sort_name, created_date) VALUES ('Individual', %s, %s, %s, %s, NOW())",
            first,
            last,
            f"{first} {last}",
            f"{last}, {first}",
        )
        for n, email in enumerate(emails):
            self.execute(
                "INSERT INTO civicrm_email (contact_id, email, is_primary, is_bulkmail) "
                "VALUES (%s, %s, %s, %s)",
                cid,
                email,
                n == 0,
                n == 0,
            )
        return cid

    def join(
        self, contact: int, group: int, status: str, date: str | None = None, method: str = "Admin"
    ) -> None:
        """CiviCRM's own change of membership: the row and its history (dated now if no
        ``date``)."""
        self.execute(
            "INSERT INTO civicrm_group_contact (group_id, contact_id, status) VALUES (%s, %s, %s) "
            "ON DUPLICATE KEY UPDATE status = VALUES(status)",
            group,
            contact,
            status,
        )
        self.execute(
            "INSERT INTO civicrm_subscription_history (contact_id, group_id, date, method, status)"
            " VALUES (%s, %s, coalesce(%s, CURRENT_TIMESTAMP), %s, %s)",
            contact,
            group,
            date,
            method,
            status,
        )


CRMS = ("embedded", "civicrm")  # the CRMs a test parametrised over both runs with


@dataclass(frozen=True)
class CrmSide:
    """One CRM for a test: its MCSYNC_CRM_URL (None: embedded), the engine on its tables
    (our Postgres's, or CiviCRM's database), its writes and how a group is made there."""

    url: str | None
    engine: sa.Engine
    writes: CrmWrites
    create_group: Callable[[sa.Connection, str, str], int]


@contextmanager
def crm_side(kind: str, engine: sa.Engine, database: str) -> Iterator[CrmSide]:
    """The CRM ``kind`` (``embedded``, or ``civicrm``: a fresh CiviCRM ``database``)."""
    if kind == "embedded":
        yield CrmSide(None, engine, EMBEDDED, crm.create_group)
        return
    with civicrm_database(database) as url:
        tables = CiviCrmTables(database)
        civi = crm_engine(url)
        try:
            yield CrmSide(url, civi, CiviCrm(civi), lambda _conn, name, _title: tables.group(name))
        finally:
            civi.dispose()
