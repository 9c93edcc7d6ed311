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

from common.db.engine import create_engine

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
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def _run(url: str, step: Callable[[Config], None]) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            step(make_config(connection))
    finally:
        engine.dispose()
