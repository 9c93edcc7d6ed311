"""The cache table's SQL for the fetcher and for counting."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
import sqlalchemy as sa
from reconciler_support import LIST_ID, T0, World

from common.db import cache
from common.db.cache import FetchedRow
from common.member_data import FetchedMember
from common.vocabulary import GroupStatus, MailchimpStatus, SyncStatus

NO_GROUP = 0  # no group: the test has no shared addresses to rank

pytestmark = pytest.mark.integration


def fetched(n: int, status: str = "subscribed", name: str = "A") -> FetchedRow:
    data = {"status": status, "status@": T0.isoformat(), "first_name": name}
    return FetchedRow(f"m{n}", f"p{n}@example.org", status, T0 + timedelta(hours=n), data)


def test_fetched_members_are_inserted_then_updated_as_todo(world: World) -> None:
    assert cache.upsert_fetched(world.conn, LIST_ID, world.group, [fetched(1), fetched(2)]) == 2
    world.conn.execute(sa.text("UPDATE civicrm_mailchimpsync_cache SET sync_status = 'ok'"))

    cache.upsert_fetched(world.conn, LIST_ID, world.group, [fetched(1, "unsubscribed", "B")])

    rows = {r["mailchimp_member_id"]: r for r in world.rows().values()}
    assert rows["m1"]["mailchimp_status"] == "unsubscribed"
    assert rows["m1"]["mailchimp_data"]["first_name"] == "B"
    assert (rows["m1"]["sync_status"], rows["m2"]["sync_status"]) == ("todo", "ok")
    assert rows["m1"]["mailchimp_updated"] == T0 + timedelta(hours=1)


def test_a_member_fetched_back_unchanged_leaves_its_row_as_it_was(world: World) -> None:
    cache.upsert_fetched(world.conn, LIST_ID, world.group, [fetched(1), fetched(2)])
    world.conn.execute(sa.text("UPDATE civicrm_mailchimpsync_cache SET sync_status = 'ok'"))

    written = cache.upsert_fetched(
        world.conn, LIST_ID, world.group, [fetched(1), fetched(2, "unsubscribed")]
    )

    rows = {r["mailchimp_member_id"]: r["sync_status"] for r in world.rows().values()}
    assert (written, rows) == (1, {"m1": "ok", "m2": "todo"})


def test_load_earlier_rows_returns_the_stored_data_of_known_members(world: World) -> None:
    world.contact("Pat", "p1@example.org")
    cache.upsert_fetched(world.conn, LIST_ID, world.group, [fetched(1), fetched(2)])

    found = cache.load_earlier_rows(world.conn, LIST_ID, ["m1", "m2", "unknown"])

    one, two = fetched(1), fetched(2)
    assert found == {
        "m1": cache.EarlierRow(one.mailchimp_data, True, one.email, one.status, one.updated),
        "m2": cache.EarlierRow(two.mailchimp_data, False, two.email, two.status, two.updated),
    }


def member(n: int, status: str = "subscribed") -> FetchedMember:
    return FetchedMember(
        f"m{n}", f"p{n}@example.org", MailchimpStatus(status), T0 + timedelta(hours=n)
    )


def test_members_fetched_back_unchanged_are_neither_written_nor_locked(
    clean_tables: sa.Engine,
) -> None:
    with clean_tables.connect() as conn:
        world = World(conn)
        for n in (1, 2):
            world.contact(f"P{n}", f"p{n}@example.org")
        assert cache.merge_fetched(conn, LIST_ID, world.group, [member(n) for n in range(4)]) == 4
        conn.execute(sa.text("UPDATE civicrm_mailchimpsync_cache SET sync_status = 'ok'"))
        conn.commit()

        # m1 is as it was; m2 changed; m3 has no contact yet, so its owner is looked for.
        page = [member(1), member(2, "unsubscribed"), member(3)]
        assert cache.merge_fetched(conn, LIST_ID, world.group, page) == 1
        with clean_tables.connect() as other:
            unlocked = other.execute(
                sa.text(
                    "SELECT mailchimp_member_id FROM civicrm_mailchimpsync_cache "
                    "ORDER BY 1 FOR UPDATE SKIP LOCKED"
                )
            ).scalars()
            assert list(unlocked) == ["m0", "m1"]  # m2 written, m3 looked at by the upsert
        conn.commit()

        statuses = {r["mailchimp_member_id"]: r["sync_status"] for r in world.rows().values()}
        assert statuses == {"m0": "ok", "m1": "ok", "m2": "todo", "m3": "ok"}


def test_a_thousand_fetched_members_are_written_in_one_statement(
    world: World, statements: list[str]
) -> None:
    assert (
        cache.upsert_fetched(world.conn, LIST_ID, world.group, [fetched(n) for n in range(1000)])
        == 1000
    )
    assert len(statements) == 1


def test_a_fetched_member_arrives_linked_to_the_owner_of_its_email(world: World) -> None:
    pat = world.contact("Pat", "P1@example.org")

    cache.upsert_fetched(world.conn, LIST_ID, world.group, [fetched(1), fetched(2)])

    rows = {r["mailchimp_member_id"]: r["civicrm_contact_id"] for r in world.rows().values()}
    assert rows == {"m1": pat, "m2": None}


def test_a_linked_row_keeps_its_contact_and_an_unlinked_one_is_linked_when_fetched_back(
    world: World,
) -> None:
    pat = world.contact("Pat", "p1@example.org")
    cache.upsert_fetched(world.conn, LIST_ID, world.group, [fetched(1), fetched(2)])
    world.conn.execute(sa.text("UPDATE civicrm_mailchimpsync_cache SET sync_status = 'ok'"))
    lee = world.contact("Lee", "p1@example.org")
    world.history(lee, GroupStatus.ADDED, T0)  # would now win p1 in readyToFixContactIds
    sam = world.contact("Sam", "p2@example.org")

    m1_linked = replace(fetched(1), linked=True)  # as merge_fetched says of m1's row
    cache.upsert_fetched(world.conn, LIST_ID, world.group, [m1_linked, fetched(2)])

    rows = {
        r["mailchimp_member_id"]: (r["civicrm_contact_id"], r["sync_status"])
        for r in world.rows().values()
    }
    assert rows == {"m1": (pat, "ok"), "m2": (sam, "todo")}


def test_status_counts(world: World) -> None:
    world.row("a@example.org", "subscribed", sync_status="todo")
    world.row("b@example.org", "subscribed", sync_status="fail")

    counts = cache.status_counts(world.conn, LIST_ID)
    assert counts[SyncStatus.TODO] == counts[SyncStatus.FAIL] == 1
    assert counts[SyncStatus.OK] == 0


def _planned_rows(conn: sa.Connection, list_id: str) -> int:
    plan = conn.execute(
        sa.text(
            "EXPLAIN (FORMAT JSON) SELECT 1 FROM civicrm_mailchimpsync_cache "
            "WHERE mailchimp_list_id = :l"
        ),
        {"l": list_id},
    ).scalar_one()
    return int(plan[0]["Plan"]["Plan Rows"])


def test_a_growing_audience_is_analyzed_so_the_planner_knows_its_rows(
    committing_db: sa.Connection,
) -> None:
    conn = committing_db
    # As in a first fetch: statistics taken of an empty cache, then pages of members merged.
    # (Emptied first: rows earlier tests rolled back would leave pages the planner counts.)
    conn.execute(sa.text("TRUNCATE civicrm_mailchimpsync_cache CASCADE"))
    conn.execute(sa.text("ANALYZE civicrm_mailchimpsync_cache"))
    conn.commit()
    cache.upsert_fetched(conn, LIST_ID, NO_GROUP, [fetched(n) for n in range(5000)])
    conn.commit()
    assert _planned_rows(conn, LIST_ID) < 100

    analyzed = cache.refresh_statistics_if_outgrown(conn, LIST_ID, rows_fetched=5000)
    conn.commit()

    assert analyzed and _planned_rows(conn, LIST_ID) == 5000
    # Known now: more pages of the same audience do not analyze it again.
    more = [replace(fetched(n), member_id=f"more{n}") for n in range(5000)]
    cache.upsert_fetched(conn, LIST_ID, NO_GROUP, more)
    conn.commit()
    assert not cache.refresh_statistics_if_outgrown(conn, LIST_ID, rows_fetched=10_000)
    assert _planned_rows(conn, LIST_ID) >= 9000  # the planner scales by the table's size


def _analyzed_audience(conn: sa.Connection, members: int) -> None:
    """``members`` fetched into the audience, and the cache analyzed since (committed)."""
    cache.upsert_fetched(conn, LIST_ID, NO_GROUP, [fetched(n) for n in range(members)])
    conn.execute(sa.text("ANALYZE civicrm_mailchimpsync_cache"))
    conn.commit()


def test_a_new_audience_beside_a_big_one_is_analyzed_once_it_has_rows(
    committing_db: sa.Connection,
) -> None:
    conn = committing_db
    _analyzed_audience(conn, 5000)
    assert not cache.refresh_statistics_if_outgrown(conn, "newaudience", rows_fetched=999)
    newcomers = [replace(fetched(n), member_id=f"new{n}") for n in range(1000)]
    cache.upsert_fetched(conn, "newaudience", NO_GROUP, newcomers)
    conn.commit()

    assert cache.refresh_statistics_if_outgrown(conn, "newaudience", rows_fetched=1000)
    conn.commit()
    assert _planned_rows(conn, "newaudience") == 1000


def _changed_and_counted(conn: sa.Connection, rows: list[FetchedRow]) -> None:
    """``rows`` merged and committed, with this session's row counters sent to the
    statistics collector (Postgres sends them at most once a second otherwise)."""
    cache.upsert_fetched(conn, LIST_ID, NO_GROUP, rows)
    conn.execute(sa.text("SELECT pg_stat_force_next_flush()"))
    conn.commit()


def test_the_cache_is_analyzed_after_a_fetch_only_once_a_tenth_of_it_changed(
    committing_db: sa.Connection,
) -> None:
    conn = committing_db
    _changed_and_counted(conn, [fetched(n) for n in range(5000)])
    assert cache.refresh_statistics(conn)  # a first fetch: all of it is new
    conn.commit()

    _changed_and_counted(conn, [fetched(n, "unsubscribed") for n in range(300)])
    assert not cache.refresh_statistics(conn)  # 6%: the statistics still hold
    _changed_and_counted(conn, [fetched(n, "unsubscribed") for n in range(300, 600)])
    assert cache.refresh_statistics(conn)  # 12% since the last ANALYZE
    conn.commit()
    assert not cache.refresh_statistics(conn)
    # Counters reset (a crash, a copied database) no longer say what changed: analyze.
    conn.execute(
        sa.text(
            "SELECT pg_stat_reset_single_table_counters('civicrm_mailchimpsync_cache'::regclass)"
        )
    )
    conn.commit()
    assert cache.refresh_statistics(conn)


def test_analyzing_the_cache_samples_its_keys_but_not_its_json_documents(
    committing_db: sa.Connection,
) -> None:
    conn = committing_db
    _changed_and_counted(conn, [fetched(n) for n in range(200)])
    assert cache.refresh_statistics(conn)
    conn.commit()

    sampled = set(
        conn.execute(
            sa.text("SELECT attname FROM pg_stats WHERE tablename = 'civicrm_mailchimpsync_cache'")
        ).scalars()
    )
    assert {"mailchimp_list_id", "mailchimp_member_id", "civicrm_contact_id"} <= sampled
    assert not sampled & {"mailchimp_data", "civicrm_data", "civicrm_groups"}


def _index_scans(conn: sa.Connection) -> dict[str, int]:
    conn.execute(sa.text("SELECT pg_stat_force_next_flush()"))
    conn.commit()
    conn.execute(sa.text("SELECT pg_stat_clear_snapshot()"))
    rows = conn.execute(
        sa.text(
            "SELECT indexrelname, idx_scan FROM pg_stat_user_indexes "
            "WHERE relname = 'civicrm_mailchimpsync_cache'"
        )
    )
    return {str(name): int(scans) for name, scans in rows}


def test_a_page_looks_up_its_members_by_the_unique_key_even_where_hashing_looks_cheaper(
    committing_db: sa.Connection,
) -> None:
    conn = committing_db
    _analyzed_audience(conn, 5000)
    before = _index_scans(conn)

    found = cache.load_earlier_rows(conn, LIST_ID, [f"m{n}" for n in range(4000, 5000)])
    conn.commit()

    scans = {name: n - before[name] for name, n in _index_scans(conn).items()}
    unique_key = next(name for name in scans if name.startswith("uq_"))
    assert len(found) == 1000
    assert scans.pop(unique_key) == 1000  # one probe per member
    assert set(scans.values()) == {0}  # no other index read the audience
