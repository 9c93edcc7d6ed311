"""CiviCRM's own tables on this machine's MariaDB, for the tests of the CiviCRM CRM.

``tests/civicrm/civicrm_schema.sql`` holds the tables the sync touches as CiviCRM defines
them (its header names the release); a test database gets them loaded afresh.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pymysql
from pymysql.constants import CLIENT
from server_checks import require_server

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
