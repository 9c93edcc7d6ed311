"""The migration scripts load, form one line of history, and live inside the package."""

from __future__ import annotations

from alembic.script import ScriptDirectory

from common.db import migrate


def test_migration_history_is_one_line_from_the_initial_revision() -> None:
    scripts = ScriptDirectory.from_config(migrate.make_config())

    assert len(scripts.get_heads()) == 1
    history = [s.revision for s in scripts.walk_revisions()]
    assert history[-1] == "0001_initial"
    assert history == sorted(history, reverse=True)


def test_migration_scripts_are_shipped_as_packages_of_common() -> None:
    versions = migrate.MIGRATIONS / "versions"

    assert (migrate.MIGRATIONS / "__init__.py").is_file()
    assert (versions / "__init__.py").is_file()
    assert (migrate.MIGRATIONS / "script.py.mako").is_file()
    assert migrate.MIGRATIONS.parent.name == "db"
