"""Alembic environment: runs on the connection ``common.db.migrate`` passes in.

From the alembic command line (no connection given) it connects to the database the
Settings name, so developers can autogenerate against their own database.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from common.db.engine import create_engine, database_url
from common.db.schema import metadata
from common.settings import Settings


def run_on(connection: sa.Connection) -> None:
    """Run the pending migrations on ``connection`` inside one transaction."""
    context.configure(connection=connection, target_metadata=metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


def run_from_settings() -> None:
    """Connect to the database the environment names and migrate it."""
    engine = create_engine(database_url(Settings.from_env()))
    try:
        with engine.begin() as connection:
            run_on(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run against a database")

given: sa.Connection | None = context.config.attributes.get("connection")
if given is None:
    run_from_settings()
else:
    run_on(given)
