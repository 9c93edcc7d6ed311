"""Planner statistics of the tables a run rewrites faster than autovacuum looks at them.

A big fetch or reconcile changes the cache and the subscription history within
minutes; the stages after it plan their joins on what ANALYZE last saw. Autovacuum's rule
(more than 50 rows plus a tenth of the table changed since the last ANALYZE) is applied at
once by ``analyze_if_outdated``, so an incremental run that changed a few rows keeps the
statistics it has instead of sampling the whole table again.
"""

from __future__ import annotations

import sqlalchemy as sa

# autovacuum_analyze_threshold and autovacuum_analyze_scale_factor's defaults.
CHANGED_ROWS_BASE = 50
CHANGED_SHARE = 0.1

# Counters that know of no ANALYZE (none yet, or reset: a crash, a copied database) read as
# outdated, since they no longer count what changed since the last one. Counters from the
# last second of other sessions' writes may not be in yet: the share is a rule of thumb.
_OUTDATED = sa.text("""
    SELECT coalesce(s.n_mod_since_analyze > :base + :share * greatest(c.reltuples, 0)
                    OR coalesce(s.last_analyze, s.last_autoanalyze) IS NULL, true)
    FROM pg_class c LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
    WHERE c.oid = CAST(:table AS regclass)
""")


def analyze_if_outdated(conn: sa.Connection, table: str) -> bool:
    """ANALYZE ``table`` (one of the schema's names, never input) when more than a tenth of
    it changed since it was last analyzed; return whether it did. A role that does not own
    the table gets a warning from Postgres, not an error."""
    params = {"base": CHANGED_ROWS_BASE, "share": CHANGED_SHARE, "table": table}
    if not conn.execute(_OUTDATED, params).scalar_one():
        return False
    conn.execute(sa.text(f"ANALYZE {table}"))
    return True
