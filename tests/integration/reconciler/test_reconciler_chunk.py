"""The reconcile queue on a real Postgres: a chunk end to end, claiming, statement counts."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from reconciler_support import LIST_ID, T0, World, planned_chunks

from common.db import batches as batches_sql
from common.db import cache as cache_sql
from common.db import runs
from common.db import updates as updates_sql
from common.db.params import id_array
from common.vocabulary import GroupStatus, SyncStatus
from services.reconciler import chunk, stages
from services.reconciler.decide import CLEANED_ADDRESS
from services.reconciler.example_plugins import ContactNamesPlugin

pytestmark = pytest.mark.integration

ADDED, REMOVED = GroupStatus.ADDED, GroupStatus.REMOVED
NOW = T0 + timedelta(days=10)
H = timedelta(hours=1)


def memberships(w: World, contact_id: int) -> dict[int, str]:
    sql = "SELECT group_id, status FROM civicrm_group_contact WHERE contact_id = :c"
    return dict(w.conn.execute(sa.text(sql), {"c": contact_id}).all())  # type: ignore[arg-type]


def sync_history(w: World) -> list[tuple[Any, ...]]:
    sql = (
        "SELECT contact_id, group_id, status, date FROM civicrm_subscription_history "
        "WHERE method = 'MCsync' ORDER BY id"
    )
    return [tuple(r) for r in w.conn.execute(sa.text(sql))]


def reconcile_all(w: World, size: int = 1000) -> dict[str, int]:
    totals: dict[str, int] = {}
    for row_ids in planned_chunks(w.conn, size):
        for key, n in chunk.reconcile_chunk(
            w.conn, w.sc, row_ids, NOW, writes=w.writes
        ).counts.items():
            totals[key] = totals.get(key, 0) + n
    return totals


def test_a_mixed_chunk_is_decided_and_written_in_bulk(world: World) -> None:
    w = world
    interest = w.interest_groups[0]

    def person(name: str, crm: GroupStatus | None = None, at: Any = T0) -> int:
        cid = w.contact(name, f"{name}@example.org")
        if crm is not None:
            w.history(cid, crm, at)
        return cid

    def mc(name: str, cid: int | None, status: str, at: Any, **data: Any) -> int:
        payload = {"status": status, "status@": at.isoformat(), **data}
        return w.row(f"{name}@example.org", status, cid, at=at, data=payload, sync_status="todo")

    in_sync = mc("a", person("a", ADDED, T0), "subscribed", T0 + H)
    b = person("b")
    added = mc("b", b, "subscribed", T0)
    resubscribe = mc("c", person("c", ADDED, T0 + 2 * H), "unsubscribed", T0)
    new_member = w.row(contact_id=person("d", ADDED, T0), sync_status="todo")
    e = person("e", ADDED, T0)
    removed = mc("e", e, "unsubscribed", T0 + H)
    cleaned = mc("f", person("f", ADDED, T0 + 2 * H), "cleaned", T0)
    unsubscribe = mc("g", person("g", REMOVED, T0 + 2 * H), "subscribed", T0)
    pending = mc("h", person("h", ADDED, T0 + 2 * H), "unsubscribed", T0)
    older = updates_sql.insert_updates(
        w.conn, [updates_sql.NewUpdate(pending, {"status": "pending"})]
    )
    i = person("i", ADDED, T0)
    interest_row = mc(
        "i",
        i,
        "subscribed",
        T0 + H,
        **{"interest-int0": True, "interest-int0@": (T0 + 3 * H).isoformat()},
    )
    no_contact = mc("j", None, "unsubscribed", T0)
    k = person("k", ADDED, T0)
    email_moving = mc("k", k, "subscribed", T0 + H)
    updates_sql.insert_updates(
        w.conn, [updates_sql.NewUpdate(email_moving, {"email_address": "k2@example.org"})]
    )

    counts = reconcile_all(w)

    statuses = {cid: r["sync_status"] for cid, r in w.rows().items()}
    assert statuses == {
        in_sync: "ok",
        added: "ok",
        resubscribe: "live",
        new_member: "live",
        removed: "ok",
        cleaned: "fail",
        unsubscribe: "live",
        pending: "live",
        interest_row: "ok",
        no_contact: "ok",
        email_moving: "live",
    }
    assert memberships(w, b) == {w.group: "Added"}
    assert memberships(w, e) == {w.group: "Removed"}
    assert memberships(w, i) == {w.group: "Added", interest: "Added"}
    assert sync_history(w) == [
        (b, w.group, "Added", NOW),
        (e, w.group, "Removed", NOW),
        (i, interest, "Added", NOW),
    ]
    assert w.updates() == [
        (pending, {"status": "pending"}, True, updates_sql.CANCELLED),
        (email_moving, {"email_address": "k2@example.org"}, False, None),
        (resubscribe, {"status": "subscribed"}, False, None),
        (new_member, {"email_address": "d@example.org", "status": "subscribed"}, False, None),
        (unsubscribe, {"status": "unsubscribed"}, False, None),
        (pending, {"status": "pending"}, False, None),
    ]
    assert older
    assert counts == {
        "in_sync": 3,
        "added_to_group": 1,
        "removed_from_group": 1,
        "queued": 5,
        "failed": 1,
        "crm_changes": 3,
        "updates_queued": 4,
        "updates_cancelled": 1,
    }
    assert cache_sql.status_counts(w.conn, LIST_ID)[SyncStatus.TODO] == 0


def test_a_row_that_cannot_sync_keeps_why_until_it_is_decided_otherwise(world: World) -> None:
    fay = world.contact("Fay", "fay@example.org")
    world.history(fay, ADDED, T0 + 2 * H)
    row = world.row("fay@example.org", "cleaned", fay, at=T0, sync_status="todo")

    reconcile_all(world)
    failed = world.rows()[row]

    world.history(fay, REMOVED, T0 + 3 * H)  # the CRM lets her go: nothing left to do
    stages.check_for_group_changes(world.conn, world.sc, None)
    reconcile_all(world)
    settled = world.rows()[row]

    assert (failed["sync_status"], failed["fail_reason"]) == ("fail", CLEANED_ADDRESS)
    assert (settled["sync_status"], settled["fail_reason"]) == ("ok", None)


def test_reconciling_again_finds_nothing_to_do(world: World) -> None:
    b = world.contact("b", "b@example.org")
    world.row("b@example.org", "subscribed", b, sync_status="todo")
    reconcile_all(world)
    before = world.snapshot()

    assert reconcile_all(world) == {}
    assert world.snapshot() == before


def test_plugin_data_goes_in_the_member_update_and_tags_in_a_separate_one(
    db: sa.Connection,
) -> None:
    w = World(db, data_sync=True)
    ada = w.contact("Ada", "ada@example.org", source="fair")
    w.history(ada, ADDED, T0)
    row = w.row("ada@example.org", "subscribed", ada, at=T0 + H)
    stages.check_for_data_updates(w.conn, w.sc, [ContactNamesPlugin()])

    reconcile_all(w)

    assert w.updates() == [
        (row, {"merge_fields": {"FNAME": "Ada", "LNAME": "Tester"}}, False, None),
        (row, {"tags": [{"name": "source: fair", "status": "active"}]}, False, None),
    ]
    assert w.rows()[row]["sync_status"] == "live"


def test_plugin_data_goes_to_mailchimp_once_unless_its_update_failed(db: sa.Connection) -> None:
    w = World(db, data_sync=True)
    ada = w.contact("Ada", "ada@example.org", source="fair")
    w.history(ada, ADDED, T0)
    row = w.row("ada@example.org", "subscribed", ada, at=T0 + H)
    plugins = [ContactNamesPlugin()]
    stages.check_for_data_updates(w.conn, w.sc, plugins)
    reconcile_all(w)
    queued_first = len(w.updates())

    stages.check_for_group_changes(w.conn, w.sc, None)  # a full sync decides every row again
    stages.check_for_data_updates(w.conn, w.sc, plugins)
    reconcile_all(w)

    assert len(w.updates()) == queued_first == 2

    open_updates = updates_sql.load_open_updates(w.conn, [row])[row]
    refused = [batches_sql.Completion(u.update_id, "Invalid Resource") for u in open_updates]
    batches_sql.fail_rows_of_updates(w.conn, batches_sql.complete_updates(w.conn, refused))
    stages.check_for_group_changes(w.conn, w.sc, None)
    stages.check_for_data_updates(w.conn, w.sc, plugins)
    reconcile_all(w)

    assert [data for _, data, _, _ in w.updates()[2:]] == [
        {"merge_fields": {"FNAME": "Ada", "LNAME": "Tester"}},
        {"tags": [{"name": "source: fair", "status": "active"}]},
    ]


def test_plan_chunks_covers_the_todo_rows_in_chunks_of_chunk_size(world: World) -> None:
    ids = []
    for n in range(7):
        ids.append(world.row(f"{n}@example.org", "unsubscribed", sync_status="todo"))
        world.row(f"done{n}@example.org", "unsubscribed")  # between them, decided

    planned = runs.plan_chunks(world.conn, LIST_ID, "a-run", 3)

    assert planned == [(ids[0], ids[2], 3, 0), (ids[3], ids[5], 3, 0), (ids[6], ids[6], 1, 0)]
    taken = [runs.take_chunk(world.conn, LIST_ID, "a-run", c.first_id, NOW) for c in planned]
    assert taken == [ids[0:3], ids[3:6], ids[6:]]


def test_chunks_of_rows_not_at_mailchimp_are_planned_to_be_decided_first(world: World) -> None:
    # As after a first fetch: members, then the CRM-only rows readyToAddCiviOnly added.
    members = [world.row(f"{n}@example.org", "subscribed", sync_status="todo") for n in range(4)]
    crm_only = [world.row(contact_id=n, sync_status="todo") for n in range(1, 4)]
    mixed = world.row("4@example.org", "subscribed", sync_status="todo")

    planned = runs.plan_chunks(world.conn, LIST_ID, "a-run", 2)

    assert planned == [
        (crm_only[0], crm_only[1], 2, 2),
        (crm_only[2], mixed, 2, 1),
        (members[0], members[1], 2, 0),
        (members[2], members[3], 2, 0),
    ]


def test_a_chunk_claims_its_planned_rows_and_reads_none_between_them(world: World) -> None:
    # An incremental run: a few todo rows spread over an audience otherwise decided.
    def rows(n: int, sync_status: str) -> list[int]:
        sql = """
            INSERT INTO civicrm_mailchimpsync_cache (mailchimp_list_id, sync_status)
            SELECT :list_id, :status FROM generate_series(1, :n) RETURNING id
        """
        params = {"list_id": LIST_ID, "status": sync_status, "n": n}
        return list(world.conn.execute(sa.text(sql), params).scalars())

    todo = rows(3, "todo")
    rows(5000, "ok")
    todo += rows(1, "todo")
    world.conn.execute(sa.text("ANALYZE civicrm_mailchimpsync_cache"))
    assert planned_chunks(world.conn) == [todo]

    params = {"list_id": LIST_ID, "first": todo[0], "last": todo[-1], "ids": id_array(todo)}
    plan = world.conn.execute(
        sa.text("EXPLAIN (ANALYZE, FORMAT JSON) " + cache_sql._CLAIM_TODO_IDS.text), params
    ).scalar_one()
    assert _rows_read(plan[0]["Plan"], "civicrm_mailchimpsync_cache", "c") == 4
    assert chunk.reconcile_chunk(world.conn, world.sc, todo, NOW).claimed == 4


def _rows_read(node: dict[str, Any], table: str, alias: str) -> int:
    """Rows the plan's scans of ``table`` as ``alias`` read (returned plus filtered out)."""
    read = 0
    if node.get("Relation Name") == table and node.get("Alias") == alias:
        loops = node.get("Actual Loops", 1)
        returned = node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0)
        read += returned * loops
    return read + sum(_rows_read(child, table, alias) for child in node.get("Plans", []))


# --- SKIP LOCKED ------------------------------------------------------------------------


@pytest.fixture
def committed_world(clean_tables: sa.Engine) -> World:
    with clean_tables.connect() as conn:
        w = World(conn)
        for n in range(60):
            cid = w.contact(f"p{n}", f"p{n}@example.org")
            w.row(f"p{n}@example.org", "subscribed", cid, sync_status="todo")
        conn.commit()
    return w


def test_an_overlapping_range_skips_rows_another_transaction_is_deciding(
    committed_world: World, clean_tables: sa.Engine
) -> None:
    with clean_tables.connect() as one, clean_tables.connect() as two:
        (row_ids,) = planned_chunks(one)
        half = row_ids[: len(row_ids) // 2]
        a = chunk.reconcile_chunk(one, committed_world.sc, half, NOW)
        b = chunk.reconcile_chunk(two, committed_world.sc, row_ids, NOW)
        one.commit()
        two.commit()
        assert a.claimed + b.claimed == 60
        assert a.claimed == len(half)
        history = one.execute(
            sa.text("SELECT contact_id, count(*) FROM civicrm_subscription_history GROUP BY 1")
        ).all()
    assert len(history) == 60 and all(n == 1 for _, n in history)


def test_two_workers_reconciling_the_same_chunks_never_decide_a_row_twice(
    committed_world: World, clean_tables: sa.Engine
) -> None:
    with clean_tables.connect() as conn:
        planned = planned_chunks(conn, 7)
        conn.commit()
    claimed: list[int] = []
    barrier = threading.Barrier(2)

    def worker() -> None:
        with clean_tables.connect() as conn:
            barrier.wait()
            for row_ids in planned:
                claimed.append(
                    chunk.reconcile_chunk(conn, committed_world.sc, row_ids, NOW).claimed
                )
                conn.commit()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with clean_tables.connect() as conn:
        history = conn.execute(
            sa.text("SELECT count(*), count(DISTINCT contact_id) FROM civicrm_subscription_history")
        ).one()
    assert sum(claimed) == 60
    assert tuple(history) == (60, 60)


# --- statement counts -------------------------------------------------------------------


def mixed_rows(w: World, n: int) -> None:
    """``n`` todo rows of every outcome kind, in bulk (SQL), for counting statements."""
    w.conn.execute(
        sa.text("""
        WITH people AS (
            INSERT INTO civicrm_contact (first_name, last_name, source)
            SELECT 'P' || g, 'Tester', 'test' FROM generate_series(1, :n) g RETURNING id
        ), mails AS (
            INSERT INTO civicrm_email (contact_id, email, is_primary, is_bulkmail)
            SELECT id, 'p' || id || '@example.org', true, true FROM people
        ), hist AS (
            INSERT INTO civicrm_subscription_history (contact_id, group_id, status, date, method)
            SELECT id, :g, CASE WHEN id % 2 = 0 THEN 'Added' ELSE 'Removed' END,
                :t0 + (id % 3) * interval '1 hour', 'Admin' FROM people
        ), members AS (
            INSERT INTO civicrm_group_contact (contact_id, group_id, status)
            SELECT id, :g, CASE WHEN id % 2 = 0 THEN 'Added' ELSE 'Removed' END FROM people
        )
        INSERT INTO civicrm_mailchimpsync_cache (mailchimp_list_id, mailchimp_member_id,
            mailchimp_email, mailchimp_status, mailchimp_updated, mailchimp_data,
            civicrm_contact_id, sync_status)
        SELECT :list_id,
            CASE WHEN id % 5 = 0 THEN NULL ELSE md5('p' || id) END,
            CASE WHEN id % 5 = 0 THEN NULL ELSE 'p' || id || '@example.org' END,
            CASE WHEN id % 5 = 0 THEN NULL
                 ELSE (ARRAY['subscribed', 'unsubscribed', 'cleaned', 'pending'])[id % 4 + 1] END,
            :t0 + interval '1 hour',
            jsonb_build_object('status@', to_char(:t0 + (id % 4) * interval '1 hour',
                'YYYY-MM-DD"T"HH24:MI:SS+00:00')),
            id, 'todo'
        FROM people
        """),
        {"n": n, "g": w.group, "t0": T0, "list_id": LIST_ID},
    )


# Counts our Postgres's statements, on rows seeded there by SQL: CiviCRM's statements are
# counted in test_civicrm_writes.
@pytest.mark.parametrize("crm_kind", ["embedded"])
def test_a_chunk_of_1000_rows_runs_a_bounded_number_of_statements(
    world: World, statements: list[str]
) -> None:
    mixed_rows(world, 1000)
    (row_ids,) = planned_chunks(world.conn)
    statements.clear()

    report = chunk.reconcile_chunk(world.conn, world.sc, row_ids, NOW, writes=world.writes)

    assert report.claimed == 1000
    kinds = ("in_sync", "added_to_group", "removed_from_group", "queued", "failed")
    assert all(report.counts[kind] > 0 for kind in kinds), report.counts
    assert len(statements) <= 8


def fetched_members_with_contacts(w: World, n: int) -> None:
    """``n`` todo rows as a fetch leaves them (the demo's member data: names and two
    interests, each with its change time), each linked to a contact Added to the group."""
    w.conn.execute(
        sa.text("""
        WITH people AS (
            INSERT INTO civicrm_contact (first_name, last_name, source)
            SELECT 'P' || g, 'Tester', 'test' FROM generate_series(1, :n) g RETURNING id
        ), hist AS (
            INSERT INTO civicrm_subscription_history (contact_id, group_id, status, date, method)
            SELECT id, :g, 'Added', :t0, 'Admin' FROM people
        ), members AS (
            INSERT INTO civicrm_group_contact (contact_id, group_id, status)
            SELECT id, :g, 'Added' FROM people
        )
        INSERT INTO civicrm_mailchimpsync_cache (mailchimp_list_id, mailchimp_member_id,
            mailchimp_email, mailchimp_status, mailchimp_updated, mailchimp_data,
            civicrm_contact_id, sync_status)
        SELECT :list_id, md5('p' || id), 'p' || id || '@example.org', 'subscribed', :t0,
            jsonb_build_object('status', 'subscribed', 'status@', CAST(:at AS text),
                'first_name', 'P' || id, 'first_name@', CAST(:at AS text),
                'last_name', 'Tester', 'last_name@', CAST(:at AS text),
                'interest-5b606e253e', false, 'interest-5b606e253e@', CAST(:at AS text),
                'interest-984cd11a6e', false, 'interest-984cd11a6e@', CAST(:at AS text)),
            id, 'todo'
        FROM people
        """),
        {"n": n, "g": w.group, "t0": T0, "at": T0.isoformat(), "list_id": LIST_ID},
    )


def pages_of_rows(w: World) -> dict[int, int]:
    sql = "SELECT id, (ctid::text::point)[0]::int FROM civicrm_mailchimpsync_cache"
    return dict(w.conn.execute(sa.text(sql)).all())  # type: ignore[arg-type]


def test_deciding_a_chunk_updates_its_rows_in_place_on_their_pages(world: World) -> None:
    # A row's new version stays on its page (a HOT update, no new entry in any index) only
    # if the page kept room for it; deciding adds the snapshot, so every row grows.
    fetched_members_with_contacts(world, 1000)
    before = pages_of_rows(world)

    assert reconcile_all(world)["in_sync"] == 1000

    after = pages_of_rows(world)
    moved = [row for row, page in before.items() if after[row] != page]
    assert world.rows()[min(before)]["civicrm_groups"] is not None
    assert moved == []


STAGES = {
    "fix_contact_ids": lambda w: stages.fix_contact_ids(w.conn, w.sc),
    "create_new_contacts": lambda w: stages.create_new_contacts_from_mailchimp(
        w.conn, w.sc, writes=w.writes
    ),
    "clean_up_duplicates": lambda w: stages.clean_up_duplicates(w.conn, w.sc),
    "add_civi_only": lambda w: stages.add_civi_only(w.conn, w.sc),
    "group_changes_full": lambda w: stages.check_for_group_changes(w.conn, w.sc, None),
    "group_changes_since": lambda w: stages.check_for_group_changes(w.conn, w.sc, T0),
}


def unmatched_and_new(w: World, n: int) -> None:
    """``n`` rows of every kind the stages act on: unmatched, new, deleted contacts."""
    mixed_rows(w, n)
    w.conn.execute(
        sa.text("""
        INSERT INTO civicrm_mailchimpsync_cache (mailchimp_list_id, mailchimp_member_id,
            mailchimp_email, mailchimp_status, mailchimp_data, sync_status)
        SELECT :list_id, md5('new' || g), 'new' || g || '@example.org', 'subscribed',
            jsonb_build_object('first_name', 'N' || g), 'ok'
        FROM generate_series(1, :n) g
        """),
        {"n": n, "list_id": LIST_ID},
    )
    w.conn.execute(
        sa.text("UPDATE civicrm_mailchimpsync_cache SET civicrm_contact_id = NULL WHERE id % 7 = 0")
    )


@pytest.mark.parametrize("name", STAGES)
def test_each_stage_runs_the_same_number_of_statements_for_10_or_1000_rows(
    db: sa.Connection, statements: list[str], name: str
) -> None:
    counts = []
    for n in (10, 1000):
        savepoint = db.begin_nested()
        w = World(db, interests=1)
        unmatched_and_new(w, n)
        statements.clear()
        STAGES[name](w)
        counts.append(len(statements))
        savepoint.rollback()
    assert counts[0] == counts[1] <= 7


def test_the_data_stage_runs_three_statements_per_page_of_rows(
    db: sa.Connection, statements: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stages, "PLUGIN_PAGE", 100)
    w = World(db, data_sync=True)
    mixed_rows(w, 1000)
    statements.clear()

    report = stages.check_for_data_updates(db, w.sc, [ContactNamesPlugin()])

    pages = -(-report.counts["computed"] // 100)
    assert pages == 10
    # per page: load the rows, the plugin's one CRM query, store; then the empty last page
    assert len(statements) == 3 * pages + 1
