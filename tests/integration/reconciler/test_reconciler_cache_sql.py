"""The cache table's SQL for the fetcher and for counting."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from reconciler_support import LIST_ID, T0, World

from common.db import cache
from common.db.cache import FetchedRow
from common.vocabulary import SyncStatus

pytestmark = pytest.mark.integration


def fetched(n: int, status: str = "subscribed", name: str = "A") -> FetchedRow:
    data = {"status": status, "status@": T0.isoformat(), "first_name": name}
    return FetchedRow(f"m{n}", f"p{n}@example.org", status, T0 + timedelta(hours=n), data)


def test_fetched_members_are_inserted_then_updated_as_todo(world: World) -> None:
    assert cache.upsert_fetched(world.conn, LIST_ID, [fetched(1), fetched(2)]) == 2
    world.conn.execute(sa.text("UPDATE civicrm_mailchimpsync_cache SET sync_status = 'ok'"))

    cache.upsert_fetched(world.conn, LIST_ID, [fetched(1, "unsubscribed", "B")])

    rows = {r["mailchimp_member_id"]: r for r in world.rows().values()}
    assert rows["m1"]["mailchimp_status"] == "unsubscribed"
    assert rows["m1"]["mailchimp_data"]["first_name"] == "B"
    assert (rows["m1"]["sync_status"], rows["m2"]["sync_status"]) == ("todo", "ok")
    assert rows["m1"]["mailchimp_updated"] == T0 + timedelta(hours=1)


def test_a_member_fetched_back_unchanged_leaves_its_row_as_it_was(world: World) -> None:
    cache.upsert_fetched(world.conn, LIST_ID, [fetched(1), fetched(2)])
    world.conn.execute(sa.text("UPDATE civicrm_mailchimpsync_cache SET sync_status = 'ok'"))

    written = cache.upsert_fetched(world.conn, LIST_ID, [fetched(1), fetched(2, "unsubscribed")])

    rows = {r["mailchimp_member_id"]: r["sync_status"] for r in world.rows().values()}
    assert (written, rows) == (1, {"m1": "ok", "m2": "todo"})


def test_load_mailchimp_data_returns_the_stored_data_of_known_members(world: World) -> None:
    cache.upsert_fetched(world.conn, LIST_ID, [fetched(1)])

    found = cache.load_mailchimp_data(world.conn, LIST_ID, ["m1", "unknown"])

    assert found == {"m1": fetched(1).mailchimp_data}


def test_a_thousand_fetched_members_are_written_in_one_statement(
    world: World, statements: list[str]
) -> None:
    assert cache.upsert_fetched(world.conn, LIST_ID, [fetched(n) for n in range(1000)]) == 1000
    assert len(statements) == 1


def test_status_counts(world: World) -> None:
    world.row("a@example.org", "subscribed", sync_status="todo")
    world.row("b@example.org", "subscribed", sync_status="fail")

    counts = cache.status_counts(world.conn, LIST_ID)
    assert counts[SyncStatus.TODO] == counts[SyncStatus.FAIL] == 1
    assert counts[SyncStatus.OK] == 0


def _plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", ()):
        yield from _plan_nodes(child)


def test_a_growing_audience_is_analyzed_so_page_lookups_probe_the_unique_index(
    committing_db: sa.Connection,
) -> None:
    conn = committing_db
    # As in a first fetch: statistics taken of an empty cache, then pages of members merged.
    conn.execute(sa.text("ANALYZE civicrm_mailchimpsync_cache"))
    conn.commit()
    assert not cache.refresh_statistics_if_outgrown(conn)  # nothing new yet
    cache.upsert_fetched(conn, LIST_ID, [fetched(n) for n in range(5000)])
    conn.commit()
    conn.execute(sa.text("SELECT pg_stat_force_next_flush()"))  # as an idle backend would
    conn.commit()

    analyzed = cache.refresh_statistics_if_outgrown(conn)
    conn.commit()

    page = [f"m{n}" for n in range(2000, 3000)]
    conn.execute(cache._PROBES_ONLY, {"on": "off"})  # what load_mailchimp_data runs
    explained = conn.execute(
        sa.text("EXPLAIN (FORMAT JSON) " + cache._LOAD_MAILCHIMP_DATA.text),
        {"list_id": LIST_ID, "ids": page},
    ).scalar_one()
    nodes = list(_plan_nodes(explained[0]["Plan"]))
    conn.rollback()

    assert analyzed and not cache.refresh_statistics_if_outgrown(conn)
    scans = {(n["Node Type"], n.get("Index Name")) for n in nodes if "Relation Name" in n}
    assert scans == {("Index Scan", "uq_civicrm_mailchimpsync_cache_mailchimp_list_id_mailch_0544")}
    assert {"Hash Join", "Merge Join", "Materialize"}.isdisjoint(n["Node Type"] for n in nodes)
    assert len(cache.load_mailchimp_data(conn, LIST_ID, page)) == 1000
