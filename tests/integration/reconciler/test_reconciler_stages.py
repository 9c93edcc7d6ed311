"""Stages 2-7 on a real Postgres: the cache (and CRM) rows before and after each stage."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from reconciler_support import LIST_ID, T0, World

from common.db import cache as cache_sql
from common.vocabulary import GroupStatus, SyncStatus
from services.reconciler import chunk, stages
from services.reconciler.example_plugins import ContactNamesPlugin

pytestmark = pytest.mark.integration

ADDED, REMOVED = GroupStatus.ADDED, GroupStatus.REMOVED


def run_twice(world: World, stage: Callable[[], object]) -> None:
    """Run a stage, then again: the second run must leave every table as the first did."""
    stage()
    before = world.snapshot()
    stage()
    assert world.snapshot() == before


# --- readyToFixContactIds ---------------------------------------------------------------


def test_a_row_pointing_at_a_deleted_contact_is_cleared_and_marked_todo(world: World) -> None:
    gone = world.contact("Gone", "gone@example.org", deleted=True)
    row = world.row("other@example.org", "subscribed", gone)
    world.conn.execute(
        sa.text("UPDATE civicrm_mailchimpsync_cache SET civicrm_groups = '{}' WHERE id = :id"),
        {"id": row},
    )

    report = stages.fix_contact_ids(world.conn, world.sc)

    after = world.rows()[row]
    assert (after["civicrm_contact_id"], after["sync_status"], after["civicrm_groups"]) == (
        None,
        "todo",
        None,
    )
    assert report.counts["cleared"] == 1


def test_a_row_pointing_at_a_missing_contact_is_cleared(world: World) -> None:
    row = world.row("x@example.org", "unsubscribed", 999_999)

    stages.fix_contact_ids(world.conn, world.sc)

    assert world.rows()[row]["civicrm_contact_id"] is None


def test_a_crm_only_row_of_a_deleted_contact_is_deleted(world: World) -> None:
    gone = world.contact("Gone", "gone@example.org", deleted=True)
    world.row(contact_id=gone)

    report = stages.fix_contact_ids(world.conn, world.sc)

    assert world.rows() == {}
    assert report.counts["deleted"] == 1


def test_an_email_owned_by_one_contact_matches_it(world: World) -> None:
    ada = world.contact("Ada", "Ada@Example.org")
    row = world.row("ada@example.org", "subscribed")

    report = stages.fix_contact_ids(world.conn, world.sc)

    assert world.rows()[row]["civicrm_contact_id"] == ada
    assert report.counts["matched_phase_1"] == 1


def test_a_shared_email_matches_the_contact_added_to_the_group(world: World) -> None:
    world.contact("First", "shared@example.org")
    added = world.contact("Second", "shared@example.org")
    world.history(added, ADDED, T0)
    with_history = world.contact("Third", "shared@example.org")
    world.history(with_history, REMOVED, T0)
    row = world.row("shared@example.org", "subscribed")

    report = stages.fix_contact_ids(world.conn, world.sc)

    assert world.rows()[row]["civicrm_contact_id"] == added
    assert report.counts["matched_phase_2"] == 1


def test_a_shared_email_without_group_members_matches_the_contact_with_history(
    world: World,
) -> None:
    world.contact("First", "shared@example.org")
    with_history = world.contact("Second", "shared@example.org")
    world.history(with_history, REMOVED, T0)
    row = world.row("shared@example.org", "unsubscribed")

    stages.fix_contact_ids(world.conn, world.sc)

    assert world.rows()[row]["civicrm_contact_id"] == with_history


def test_a_shared_email_otherwise_matches_the_lowest_undeleted_owner(world: World) -> None:
    world.contact("Deleted", "shared@example.org", deleted=True)
    lowest = world.contact("Lowest", "shared@example.org")
    world.contact("Higher", "shared@example.org")
    row = world.row("shared@example.org", "cleaned")

    report = stages.fix_contact_ids(world.conn, world.sc)

    assert world.rows()[row]["civicrm_contact_id"] == lowest
    assert report.counts["matched_phase_4"] == 1


def test_an_email_owned_only_by_deleted_contacts_stays_unmatched(world: World) -> None:
    world.contact("Deleted", "gone@example.org", deleted=True)
    row = world.row("gone@example.org", "subscribed")

    stages.fix_contact_ids(world.conn, world.sc)

    assert world.rows()[row]["civicrm_contact_id"] is None


def test_fixing_contact_ids_twice_changes_nothing_more(world: World) -> None:
    gone = world.contact("Gone", "gone@example.org", deleted=True)
    world.contact("Ada", "ada@example.org")
    world.row("ada@example.org", "subscribed")
    world.row("gone@example.org", "subscribed", gone)
    world.row(contact_id=gone)

    run_twice(world, lambda: stages.fix_contact_ids(world.conn, world.sc))


# --- readyToCreateNewContactsFromMailchimp ---------------------------------------------


def test_subscribed_member_without_contact_becomes_a_new_contact_with_mailchimp_names(
    world: World,
) -> None:
    data = {"status": "subscribed", "first_name": "Grace", "last_name": "Hopper"}
    row = world.row("grace@example.org", "subscribed", data=data)

    report = stages.create_new_contacts_from_mailchimp(world.conn, world.sc, writes=world.writes)

    contact_id = world.rows()[row]["civicrm_contact_id"]
    contact = world.conn.execute(
        sa.text(
            "SELECT first_name, last_name, source, contact_type FROM civicrm_contact WHERE id = :id"
        ),
        {"id": contact_id},
    ).one()
    assert tuple(contact) == ("Grace", "Hopper", "mailchimpsync", "Individual")
    emails = world.conn.execute(
        sa.text("SELECT email, is_primary, is_bulkmail FROM civicrm_email WHERE contact_id = :id"),
        {"id": contact_id},
    ).all()
    assert [tuple(e) for e in emails] == [("grace@example.org", True, True)]
    assert report.counts["created"] == 1


def test_pending_member_gets_a_contact_but_unsubscribed_and_cleaned_do_not(world: World) -> None:
    pending = world.row("p@example.org", "pending")
    unsubscribed = world.row("u@example.org", "unsubscribed")
    cleaned = world.row("c@example.org", "cleaned")

    stages.create_new_contacts_from_mailchimp(world.conn, world.sc, writes=world.writes)

    rows = world.rows()
    assert rows[pending]["civicrm_contact_id"] is not None
    assert rows[unsubscribed]["civicrm_contact_id"] is None
    assert rows[cleaned]["civicrm_contact_id"] is None


def test_a_changed_crm_email_is_queued_for_a_subscribed_member(world: World) -> None:
    ada = world.contact("Ada", "new@example.org", "old@example.org")
    row = world.row("old@example.org", "subscribed", ada)

    report = stages.create_new_contacts_from_mailchimp(world.conn, world.sc, writes=world.writes)

    assert world.updates() == [(row, {"email_address": "new@example.org"}, False, None)]
    assert world.rows()[row]["sync_status"] == "live"
    assert report.counts["email_changes_queued"] == 1


def test_an_email_differing_only_in_case_or_already_held_by_another_row_is_not_queued(
    world: World,
) -> None:
    ada = world.contact("Ada", "Ada@Example.org")
    world.row("ada@example.org", "subscribed", ada)
    bob = world.contact("Bob", "bob@example.org", "bob@old.example")
    world.row("bob@old.example", "subscribed", bob)
    world.row("bob@example.org", "unsubscribed", bob)

    stages.create_new_contacts_from_mailchimp(world.conn, world.sc, writes=world.writes)

    assert world.updates() == []


def test_a_todo_row_with_a_changed_email_stays_todo_to_be_reconciled(world: World) -> None:
    ada = world.contact("Ada", "new@example.org")
    row = world.row("old@example.org", "subscribed", ada, sync_status="todo")

    stages.create_new_contacts_from_mailchimp(world.conn, world.sc, writes=world.writes)

    assert world.rows()[row]["sync_status"] == "todo"
    assert len(world.updates()) == 1


def test_new_contacts_are_created_a_page_at_a_time_for_every_row(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stages, "NEW_CONTACTS_PAGE", 2)
    rows = [world.row(f"n{n}@example.org", "subscribed") for n in range(5)]

    report = stages.create_new_contacts_from_mailchimp(world.conn, world.sc, writes=world.writes)

    contacts = {world.rows()[r]["civicrm_contact_id"] for r in rows}
    assert None not in contacts and len(contacts) == 5
    assert report.counts["created"] == 5


def test_creating_contacts_twice_changes_nothing_more(world: World) -> None:
    world.row("grace@example.org", "subscribed")
    ada = world.contact("Ada", "new@example.org")
    world.row("old@example.org", "subscribed", ada)

    run_twice(
        world,
        lambda: stages.create_new_contacts_from_mailchimp(
            world.conn, world.sc, writes=world.writes
        ),
    )


# --- readyToCleanUpDuplicates ------------------------------------------------------------


def test_crm_only_row_is_removed_when_the_contact_has_a_mailchimp_row(world: World) -> None:
    ada = world.contact("Ada", "ada@example.org")
    crm_only = world.row(contact_id=ada)
    at_mailchimp = world.row("ada@example.org", "unsubscribed", ada)
    bob = world.contact("Bob", "bob@example.org")
    alone = world.row(contact_id=bob)

    report = stages.clean_up_duplicates(world.conn, world.sc)

    assert set(world.rows()) == {at_mailchimp, alone}
    assert crm_only not in world.rows()
    assert report.counts["deleted"] == 1
    run_twice(world, lambda: stages.clean_up_duplicates(world.conn, world.sc))


# --- readyToAddCiviOnly ------------------------------------------------------------------


def test_added_contact_without_row_gets_a_todo_row(world: World) -> None:
    ada = world.contact("Ada", "ada@example.org")
    world.history(ada, ADDED, T0)
    has_row = world.contact("Bob", "bob@example.org")
    world.history(has_row, ADDED, T0)
    world.row("bob@example.org", "subscribed", has_row)
    removed = world.contact("Cy", "cy@example.org")
    world.history(removed, REMOVED, T0)
    deleted = world.contact("Di", "di@example.org", deleted=True)
    world.history(deleted, ADDED, T0)

    report = stages.add_civi_only(world.conn, world.sc)

    new = [r for r in world.rows().values() if r["civicrm_contact_id"] == ada]
    assert [(r["mailchimp_member_id"], r["mailchimp_data"], r["sync_status"]) for r in new] == [
        (None, None, "todo")
    ]
    assert report.counts["added"] == 1
    run_twice(world, lambda: stages.add_civi_only(world.conn, world.sc))


# --- readyToCheckForGroupChanges ---------------------------------------------------------


def test_incremental_group_changes_mark_only_rows_changed_since(world: World) -> None:
    recent = world.contact("Recent", "r@example.org")
    world.history(recent, ADDED, T0 + timedelta(days=2))
    old = world.contact("Old", "o@example.org")
    world.history(old, ADDED, T0 - timedelta(days=2))
    interest = world.contact("Interest", "i@example.org")
    world.history(interest, ADDED, T0 + timedelta(days=1), group=world.interest_groups[0])
    rows = {c: world.row(f"{c}@example.org", "subscribed", c) for c in (recent, old, interest)}

    report = stages.check_for_group_changes(world.conn, world.sc, since=T0)

    statuses = {c: world.rows()[r]["sync_status"] for c, r in rows.items()}
    assert statuses == {recent: "todo", old: "ok", interest: "todo"}
    assert report.counts["marked_todo"] == 2


def test_a_change_the_sync_wrote_itself_is_not_news_to_the_next_run(world: World) -> None:
    ada = world.contact("Ada", "a@example.org")
    row = world.row(
        "a@example.org", "subscribed", ada, at=T0 + timedelta(days=1), sync_status="todo"
    )
    stages.check_for_group_changes(world.conn, world.sc, since=None)
    chunk.reconcile_chunk(world.conn, world.sc, [row], T0 + timedelta(days=2), writes=world.writes)
    assert world.rows()[row]["sync_status"] == "ok"  # added to the group by the sync itself

    report = stages.check_for_group_changes(world.conn, world.sc, since=T0)

    assert report.counts["marked_todo"] == 0
    world.history(ada, GroupStatus.REMOVED, T0 + timedelta(days=3))
    stages.check_for_group_changes(world.conn, world.sc, since=T0)
    assert world.rows()[row]["sync_status"] == "todo"  # a change made in the CRM is news


def test_a_full_group_check_marks_every_row_with_a_contact(world: World) -> None:
    ada = world.contact("Ada", "a@example.org")
    with_contact = world.row("a@example.org", "subscribed", ada)
    without = world.row("x@example.org", "unsubscribed")

    stages.check_for_group_changes(world.conn, world.sc, since=None)

    assert world.rows()[with_contact]["sync_status"] == "todo"
    assert world.rows()[without]["sync_status"] == "ok"


def test_a_decided_row_holds_its_contacts_newest_history_per_group(world: World) -> None:
    ada = world.contact("Ada", "a@example.org")
    world.history(ada, ADDED, T0)
    world.history(ada, REMOVED, T0 + timedelta(hours=1))
    world.history(ada, ADDED, T0 + timedelta(hours=2), group=world.interest_groups[0])
    row = world.row("a@example.org", "unsubscribed", ada, sync_status="todo")

    chunk.reconcile_chunk(world.conn, world.sc, [row], T0 + timedelta(days=1), writes=world.writes)

    assert world.rows()[row]["civicrm_groups"] == {
        str(world.group): {"status": "Removed", "date": "2026-01-01T13:00:00.000000+00:00"},
        str(world.interest_groups[0]): {
            "status": "Added",
            "date": "2026-01-01T14:00:00.000000+00:00",
        },
    }


def test_a_decided_row_holds_the_change_its_chunk_made(world: World) -> None:
    ada = world.contact("Ada", "a@example.org")
    row = world.row("a@example.org", "subscribed", ada, at=T0, sync_status="todo")
    duplicate = world.row(contact_id=ada)
    decided_at = T0 + timedelta(days=1, microseconds=123)

    chunk.reconcile_chunk(world.conn, world.sc, [row], decided_at, writes=world.writes)

    # Dated to the second, as CiviCRM's history keeps its dates.
    added = {str(world.group): {"status": "Added", "date": "2026-01-02T12:00:00.000000+00:00"}}
    assert world.rows()[row]["civicrm_groups"] == added
    assert world.rows()[duplicate]["civicrm_groups"] == added  # the contact's other row too


def test_the_snapshot_a_chunk_writes_is_the_one_the_group_check_compares(world: World) -> None:
    ada = world.contact("Ada", "a@example.org")
    odd = datetime(2026, 3, 4, 5, 6, 7, 890_123, tzinfo=timezone(timedelta(hours=-5)))
    world.history(ada, ADDED, odd)
    world.history(ada, REMOVED, odd, group=world.interest_groups[0])
    row = world.row("a@example.org", "subscribed", ada, at=T0, sync_status="todo")
    world.conn.execute(sa.text("SET TIME ZONE 'Asia/Kathmandu'"))
    chunk.reconcile_chunk(world.conn, world.sc, [row], odd + timedelta(days=1), writes=world.writes)
    cache_sql.set_sync_statuses(world.conn, [cache_sql.RowStatus(row, SyncStatus.OK)])

    report = stages.check_for_group_changes(world.conn, world.sc, since=odd - timedelta(days=1))

    assert report.counts["marked_todo"] == 0


# --- readyToCheckForDataUpdates ----------------------------------------------------------


@pytest.fixture
def data_world(db: sa.Connection) -> World:
    return World(db, data_sync=True)


def test_plugin_data_is_stored_and_changed_rows_become_todo(data_world: World) -> None:
    w = data_world
    ada = w.contact("Ada", "a@example.org", source="fair")
    subscribed = w.row("a@example.org", "subscribed", ada)
    bob = w.contact("Bob", "b@example.org")
    unsubscribed = w.row("b@example.org", "unsubscribed", bob)

    report = stages.check_for_data_updates(w.conn, w.sc, [ContactNamesPlugin()])

    rows = w.rows()
    assert rows[subscribed]["civicrm_data"] == {
        "mailchimp_updates": {"merge_fields": {"FNAME": "Ada", "LNAME": "Tester"}},
        "tag_updates": [{"name": "source: fair", "status": "active"}],
    }
    assert rows[subscribed]["sync_status"] == "todo"
    assert (rows[unsubscribed]["civicrm_data"], rows[unsubscribed]["sync_status"]) == (None, "ok")
    assert report.counts == {"computed": 1, "changed": 1}


def test_a_row_without_a_contact_gets_no_plugin_data(data_world: World) -> None:
    row = data_world.row("x@example.org", "subscribed", sync_status="todo")

    report = stages.check_for_data_updates(data_world.conn, data_world.sc, [ContactNamesPlugin()])

    assert data_world.rows()[row]["civicrm_data"] is None
    assert report.counts == {"computed": 1, "changed": 0}


def test_unchanged_plugin_data_leaves_the_row_alone(data_world: World) -> None:
    w = data_world
    ada = w.contact("Ada", "a@example.org", source=None)
    stored = {
        "mailchimp_updates": {"merge_fields": {"FNAME": "Ada", "LNAME": "Tester"}},
        "tag_updates": [],
    }
    row = w.row("a@example.org", "subscribed", ada, civicrm_data=stored)

    report = stages.check_for_data_updates(w.conn, w.sc, [ContactNamesPlugin()])

    assert w.rows()[row]["sync_status"] == "ok"
    assert report.counts["changed"] == 0
    w.conn.execute(
        sa.text("UPDATE civicrm_contact SET first_name = 'Augusta' WHERE id = :id"), {"id": ada}
    )
    stages.check_for_data_updates(w.conn, w.sc, [ContactNamesPlugin()])
    assert w.rows()[row]["sync_status"] == "todo"
    run_twice(w, lambda: stages.check_for_data_updates(w.conn, w.sc, [ContactNamesPlugin()]))


def test_data_updates_do_nothing_without_a_data_sync(world: World) -> None:
    ada = world.contact("Ada", "a@example.org")
    row = world.row("a@example.org", "subscribed", ada)

    stages.check_for_data_updates(world.conn, world.sc, [ContactNamesPlugin()])

    assert world.rows()[row]["civicrm_data"] is None
    assert world.sc.list_id == LIST_ID
