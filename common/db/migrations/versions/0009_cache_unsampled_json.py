"""No planner statistics for the cache's JSON documents (``mailchimp_data``,
``civicrm_data``, ``civicrm_groups``): no stage's plan depends on them, as they are only
compared or read from, and sampling them was 40% of each ANALYZE a run makes of the cache
before its stages (100k members: 340 -> 200 ms).

Revision ID: 0009_cache_unsampled_json
Revises: 0008_cache_fillfactor_45
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0009_cache_unsampled_json"
down_revision: str | Sequence[str] | None = "0008_cache_fillfactor_45"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CACHE = "civicrm_mailchimpsync_cache"
COLUMNS = ("mailchimp_data", "civicrm_data", "civicrm_groups")


def _set_statistics(target: int) -> None:
    columns = ", ".join(f"ALTER COLUMN {name} SET STATISTICS {target}" for name in COLUMNS)
    op.execute(f"ALTER TABLE {CACHE} {columns}")


def upgrade() -> None:
    _set_statistics(0)


def downgrade() -> None:
    _set_statistics(-1)  # the server's default_statistics_target again
