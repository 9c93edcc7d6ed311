"""Fixtures shared by every test: the test database, migrated once per session.

Database fixtures, from cheapest to dearest:
- ``db``: a connection inside a transaction rolled back after the test (the default).
- ``committing_db``: a connection whose commits are real; every table is truncated afterwards.
- ``clean_tables``: the engine itself, for code that opens its own connections; truncates too.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from server_checks import in_ci, port_open, require_server

from common.db import migrate
from common.db.engine import create_engine
from common.db.schema import metadata
from common.embedded import embedded_postgres_url

LOCAL_TEST_DATABASE = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
EMBEDDED_TEST_DIR = Path(__file__).resolve().parent.parent / ".mcsync" / "test"
TEST_RUN_LOCK = 0x6D6373796E63  # advisory lock key: one test run at a time per database


@pytest.fixture(scope="session")
def database_url() -> str:
    """MCSYNC_TEST_DATABASE_URL, else this machine's Postgres, else the embedded one."""
    configured = os.environ.get("MCSYNC_TEST_DATABASE_URL", "").strip()
    if configured:
        return configured
    if port_open("127.0.0.1", 5432) or in_ci():
        require_server("127.0.0.1", 5432, "PostgreSQL")
        return LOCAL_TEST_DATABASE
    return embedded_postgres_url(EMBEDDED_TEST_DIR)


@pytest.fixture(scope="session")
def test_run_lock(database_url: str) -> Iterator[None]:
    """Hold a session advisory lock so two test runs never reset the same database at once."""
    engine = create_engine(database_url)
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": TEST_RUN_LOCK})
        conn.commit()
        yield
        conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": TEST_RUN_LOCK})
        conn.commit()
    engine.dispose()


@pytest.fixture(scope="session")
def migrated_engine(database_url: str, test_run_lock: None) -> Iterator[sa.Engine]:
    """An engine on the test database, reset to an empty schema and migrated to head."""
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE"))
        conn.execute(sa.text("CREATE SCHEMA public"))
    migrate.upgrade(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def db(migrated_engine: sa.Engine) -> Iterator[sa.Connection]:
    """A connection in a transaction that is rolled back after the test."""
    with migrated_engine.connect() as conn:
        transaction = conn.begin()
        try:
            yield conn
        finally:
            transaction.rollback()


@pytest.fixture
def clean_tables(migrated_engine: sa.Engine) -> Iterator[sa.Engine]:
    """The migrated engine, for tests that commit; every table is emptied afterwards."""
    yield migrated_engine
    names = ", ".join(f'"{table.name}"' for table in metadata.sorted_tables)
    with migrated_engine.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


@pytest.fixture
def committing_db(clean_tables: sa.Engine) -> Iterator[sa.Connection]:
    """A connection whose commits are real (the test commits); tables are emptied afterwards."""
    with clean_tables.connect() as conn:
        yield conn


@pytest.fixture
def statements(db: sa.Connection) -> Iterator[list[str]]:
    """The SQL statements sent on ``db`` while the test runs (an executemany counts once)."""
    sent: list[str] = []

    def record(*args: Any) -> None:
        sent.append(args[2])

    sa.event.listen(db, "before_cursor_execute", record)
    yield sent
    sa.event.remove(db, "before_cursor_execute", record)
