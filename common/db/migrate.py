"""Run the Alembic migrations programmatically: no alembic.ini is needed to deploy.

``common/db/alembic.ini`` exists only for developers running the ``alembic`` command line
(``alembic -c common/db/alembic.ini revision --autogenerate -m "..."``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from common.db.engine import create_engine
from common.settings import masked

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def make_config(connection: sa.Connection | None = None) -> Config:
    """An Alembic config for our scripts; ``env.py`` runs on ``connection`` when given."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    config.attributes["connection"] = connection
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at ``url`` up to ``revision``, in one transaction."""
    _run(url, lambda config: command.upgrade(config, revision))


def downgrade(url: str, revision: str) -> None:
    """Migrate the database at ``url`` down to ``revision`` (``"base"``: drop everything)."""
    _run(url, lambda config: command.downgrade(config, revision))


def current(url: str) -> str | None:
    """The revision the database at ``url`` is at, or None when it was never migrated."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return current_on(connection)
    finally:
        engine.dispose()


class SchemaNotCurrent(RuntimeError):
    """The database is not at the code's migration head: ``mcsync migrate`` first."""


def head() -> str:
    """The newest revision of the code's migrations."""
    found = ScriptDirectory.from_config(make_config()).get_current_head()
    assert found is not None
    return found


def require_current(url: str) -> None:
    """Raise SchemaNotCurrent unless the database at ``url`` is at the code's head."""
    where = masked(sa.make_url(url).render_as_string(hide_password=False))
    problem = behind(current(url), where)
    if problem:
        raise SchemaNotCurrent(problem)


def current_on(conn: sa.Connection) -> str | None:
    """The revision of the database ``conn`` is on, or None when it was never migrated."""
    return MigrationContext.configure(conn).get_current_revision()


def behind(at: str | None, where: str) -> str | None:
    """What is wrong with a database at revision ``at`` (named ``where``); None when it is at
    the code's head."""
    wanted = head()
    if at == wanted:
        return None
    if at is None:
        return f"the database at {where} is not migrated: run `mcsync migrate`"
    return (
        f"the database at {where} is at revision {at}, the code needs {wanted}: "
        "run `mcsync migrate`"
    )


# Held for the migration's transaction: two `mcsync migrate` at once (an initContainer per
# replica) run one after the other, and the second finds nothing to do.
_MIGRATION_LOCK = sa.text("SELECT pg_advisory_xact_lock(hashtext('mailchimpsync-migrate'))")


def _run(url: str, step: Callable[[Config], None]) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(_MIGRATION_LOCK)
            step(make_config(connection))
    finally:
        engine.dispose()
