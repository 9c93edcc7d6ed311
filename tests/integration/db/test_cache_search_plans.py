"""Searching the cache by email or member id without naming the audience uses the audience's
indexes (one probe per synced audience), not a read of every row."""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from common.db import config, crm, stats
from common.db.stats import CacheFilter

pytestmark = pytest.mark.integration


def _index_conditions(conn: sa.Connection, where: CacheFilter) -> list[str]:
    query = stats._cache_search(where).compile(
        dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}
    )
    conn.execute(sa.text("SET LOCAL enable_seqscan = off"))
    plan = conn.execute(sa.text(f"EXPLAIN (FORMAT JSON) {query}")).scalar_one()
    return _conditions(plan[0]["Plan"])


def _conditions(node: dict[str, Any]) -> list[str]:
    found = [node.get("Index Cond", "")]
    for child in node.get("Plans", []):
        found += _conditions(child)
    return found


@pytest.mark.parametrize(
    ("where", "column"),
    [
        (CacheFilter(mailchimp_email="Ann@Example.org"), "lower((mailchimp_email)::text)"),
        (CacheFilter(mailchimp_member_id="0123abcd"), "mailchimp_member_id"),
        (CacheFilter(civicrm_contact_id=7), "civicrm_contact_id"),
    ],
)
def test_a_search_by_one_member_probes_the_audiences_index(
    db: sa.Connection, where: CacheFilter, column: str
) -> None:
    group = crm.create_group(db, "news", "News")
    config.add_connection(db, config.add_account(db, "A", "0" * 32 + "-us1"), "a1", group, {})
    conditions = _index_conditions(db, where)
    probes = [c for c in conditions if column in c and "mailchimp_list_id)::text = ANY" in c]
    assert probes, json.dumps(conditions)
