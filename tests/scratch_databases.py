"""Scratch databases on the test server, for tests that need one of their own."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from common.db.engine import create_engine


@contextmanager
def scratch_database(database_url: str, name: str) -> Iterator[str]:
    """A freshly created, empty database ``name`` beside ``database_url``'s; its URL. Dropped
    afterwards."""
    admin = create_engine(
        sa.make_url(database_url).set(database="postgres").render_as_string(hide_password=False)
    ).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    try:
        yield sa.make_url(database_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()
