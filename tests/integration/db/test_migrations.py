"""The migrations build exactly the schema of ``common/db/schema.py``, and undo it."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from scratch_databases import scratch_database

from common.db import migrate
from common.db.engine import create_engine
from common.db.schema import metadata

pytestmark = pytest.mark.integration

SCRATCH = "mcsync_migrations_check"

# Autogenerate ignores CHECK constraints, index predicates, storage parameters and statistics
# targets, so compare the catalog too.
CATALOG = sa.text("""
    SELECT 'constraint', conrelid::regclass::text, conname, pg_get_constraintdef(oid)
    FROM pg_constraint WHERE connamespace = 'public'::regnamespace
    UNION ALL
    SELECT 'index', tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'
    UNION ALL
    SELECT 'storage', relname::text, array_to_string(reloptions, ','), ''
    FROM pg_class WHERE relnamespace = 'public'::regnamespace AND reloptions IS NOT NULL
    UNION ALL
    SELECT 'statistics', attrelid::regclass::text, attname::text, attstattarget::text
    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
    WHERE c.relnamespace = 'public'::regnamespace AND a.attnum > 0 AND a.attstattarget <> -1
    UNION ALL
    SELECT 'column', table_name, column_name,
           concat_ws(' ', data_type, character_maximum_length, is_nullable, column_default)
    FROM information_schema.columns WHERE table_schema = 'public'
    ORDER BY 1, 2, 3
""")


@pytest.fixture
def scratch_url(database_url: str, test_run_lock: None) -> Iterator[str]:
    """A freshly created, empty database on the test server; dropped afterwards."""
    with scratch_database(database_url, SCRATCH) as url:
        yield url


def _inspect(url: str) -> tuple[set[str], list[tuple[str, ...]], list[tuple[object, ...]]]:
    """The tables (without alembic's own), the catalog rows, and autogenerate's differences."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            tables = set(sa.inspect(conn).get_table_names()) - {"alembic_version"}
            catalog = [tuple(row) for row in conn.execute(CATALOG)]
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "compare_server_default": True}
            )
            diff = compare_metadata(context, metadata)
    finally:
        engine.dispose()
    return tables, catalog, diff


def _create_all(url: str, create: bool) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            (metadata.create_all if create else metadata.drop_all)(conn)
    finally:
        engine.dispose()


def test_upgrade_to_head_creates_exactly_the_tables_of_the_schema(scratch_url: str) -> None:
    migrate.upgrade(scratch_url)

    tables, _, _ = _inspect(scratch_url)
    assert tables == set(metadata.tables)
    heads = ScriptDirectory.from_config(migrate.make_config()).get_heads()
    assert [migrate.current(scratch_url)] == heads


def test_autogenerate_finds_no_difference_between_migrations_and_schema(scratch_url: str) -> None:
    migrate.upgrade(scratch_url)

    _, _, diff = _inspect(scratch_url)
    assert diff == []


def test_migrated_catalog_matches_create_all_including_checks_and_index_predicates(
    scratch_url: str,
) -> None:
    migrate.upgrade(scratch_url)
    _, migrated, _ = _inspect(scratch_url)
    migrate.downgrade(scratch_url, "base")
    _create_all(scratch_url, create=True)
    _, created, _ = _inspect(scratch_url)
    _create_all(scratch_url, create=False)

    assert sorted(migrated) == sorted(created)
    assert any("WHERE" in str(row[3]) for row in migrated)  # the partial index is compared
    assert any("lower(" in str(row[3]) for row in migrated)  # and the functional one
    assert any(row[0] == "statistics" for row in migrated)  # and the unsampled columns


def test_downgrade_to_base_removes_every_table_and_upgrade_works_again(scratch_url: str) -> None:
    migrate.upgrade(scratch_url)
    migrate.downgrade(scratch_url, "base")

    assert _inspect(scratch_url)[0] == set()
    assert migrate.current(scratch_url) is None

    migrate.upgrade(scratch_url)
    assert _inspect(scratch_url)[0] == set(metadata.tables)


def test_a_database_never_migrated_has_no_current_revision(scratch_url: str) -> None:
    assert migrate.current(scratch_url) is None


def test_two_migrations_at_once_run_one_after_the_other(scratch_url: str) -> None:
    # As two replicas' initContainers would: the second waits, then finds nothing to do.
    with ThreadPoolExecutor(2) as pool:
        for done in [pool.submit(migrate.upgrade, scratch_url) for _ in range(2)]:
            done.result()

    assert migrate.current(scratch_url) == migrate.head()
