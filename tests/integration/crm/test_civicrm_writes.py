"""CiviCRM's writes (``common.crm.writes.CiviCrm``): each change lands in CiviCRM as CiviCRM
writes it, and in the copy; a call repeated after a worker died between CiviCRM's commit and
Postgres's (here: the Postgres transaction rolled back) makes no change twice."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from civicrm_support import CiviCrmTables, civicrm_database

from common.crm.civicrm import crm_engine
from common.crm.writes import CiviCrm
from common.db import crm
from common.vocabulary import GroupStatus

pytestmark = pytest.mark.integration

DATABASE = "mcsync_civicrm_writes_test"
WHEN = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


@pytest.fixture
def civi() -> Iterator[CiviCrmTables]:
    with civicrm_database(DATABASE):
        yield CiviCrmTables(DATABASE)


@pytest.fixture
def writes(civi: CiviCrmTables) -> Iterator[CiviCrm]:
    engine = crm_engine(f"mysql://root@127.0.0.1:3306/{civi.database}")
    yield CiviCrm(engine, tracking="mcsync:run-1")
    engine.dispose()


def _killed_before_postgres_commits(
    engine: sa.Engine, write: Callable[[sa.Connection], object]
) -> None:
    """Run ``write(conn)`` in a Postgres transaction that never commits."""
    with engine.connect() as conn, conn.begin() as transaction:
        write(conn)
        transaction.rollback()


def _new(first: str | None, last: str | None, email: str) -> crm.NewContact:
    emails = (crm.NewEmail(email, is_primary=True, is_bulkmail=True),)
    return crm.NewContact(first, last, "mailchimpsync", emails)


def test_new_contacts_are_created_as_civicrm_creates_them(
    civi: CiviCrmTables, writes: CiviCrm, clean_tables: sa.Engine
) -> None:
    contacts = [_new("Ann", "Archer", "ann@example.org"), _new(None, None, "x@example.org")]
    with clean_tables.begin() as conn:
        ids = writes.insert_contacts(conn, contacts)

    found = civi.rows(
        "SELECT id, contact_type, first_name, last_name, display_name, sort_name, source, "
        "LENGTH(hash), created_date IS NOT NULL, modified_date IS NOT NULL "
        "FROM civicrm_contact ORDER BY id"
    )
    assert found == [
        (
            ids[0],
            "Individual",
            "Ann",
            "Archer",
            "Ann Archer",
            "Archer, Ann",
            "mailchimpsync",
            32,
            1,
            1,
        ),
        (
            ids[1],
            "Individual",
            None,
            None,
            "x@example.org",
            "x@example.org",
            "mailchimpsync",
            32,
            1,
            1,
        ),
    ]
    with clean_tables.connect() as conn:
        copied = conn.execute(
            sa.text("SELECT id, first_name, source FROM civicrm_contact ORDER BY id")
        ).all()
        emails = conn.execute(sa.text("SELECT contact_id, email FROM civicrm_email")).all()
    assert [tuple(r) for r in copied] == [
        (ids[0], "Ann", "mailchimpsync"),
        (ids[1], None, "mailchimpsync"),
    ]
    assert sorted(tuple(r) for r in emails) == [
        (ids[0], "ann@example.org"),
        (ids[1], "x@example.org"),
    ]


def test_contacts_created_before_a_kill_are_found_not_created_again(
    civi: CiviCrmTables, writes: CiviCrm, clean_tables: sa.Engine
) -> None:
    contacts = [_new("Ann", "Archer", "ann@example.org"), _new("Bob", None, "bob@example.org")]
    _killed_before_postgres_commits(clean_tables, lambda c: writes.insert_contacts(c, contacts[:1]))

    with clean_tables.begin() as conn:
        ids = writes.insert_contacts(conn, contacts)

    assert civi.rows("SELECT COUNT(*) FROM civicrm_contact") == [(2,)]
    assert civi.rows("SELECT COUNT(*) FROM civicrm_email") == [(2,)]
    assert civi.rows("SELECT id FROM civicrm_contact WHERE first_name = 'Ann'") == [(ids[0],)]


def test_a_contact_someone_else_created_with_that_email_is_not_taken(
    civi: CiviCrmTables, writes: CiviCrm, clean_tables: sa.Engine
) -> None:
    theirs = civi.contact("Ann", "Archer", "ann@example.org")  # no source: not the sync's

    with clean_tables.begin() as conn:
        (ours,) = writes.insert_contacts(conn, [_new("Ann", "Archer", "ann@example.org")])

    assert ours != theirs


def test_membership_changes_write_one_tracked_history_row_each_even_when_repeated(
    civi: CiviCrmTables, writes: CiviCrm, clean_tables: sa.Engine
) -> None:
    group = civi.group("newsletter")
    ann = civi.contact("Ann", "Archer", "ann@example.org")
    civi.join(ann, group, "Added", "2025-01-01 00:00:00")
    changes = [crm.MembershipChange(ann, group, GroupStatus.REMOVED, WHEN)]
    writes.refresh(clean_tables, [group])
    _killed_before_postgres_commits(clean_tables, lambda c: writes.set_memberships(c, changes))

    with clean_tables.begin() as conn:
        writes.set_memberships(conn, changes)

    assert civi.rows("SELECT status FROM civicrm_group_contact") == [("Removed",)]
    assert civi.rows(
        "SELECT status, date, method, tracking FROM civicrm_subscription_history ORDER BY id"
    ) == [
        ("Added", datetime(2025, 1, 1), "Admin", None),
        ("Removed", datetime(2026, 3, 4, 5, 6, 7), "MCsync", "mcsync:run-1"),
    ]
    with clean_tables.connect() as conn:
        copied = conn.execute(
            sa.text("SELECT status, date FROM civicrm_subscription_history ORDER BY id")
        ).all()
        member = conn.execute(sa.text("SELECT status FROM civicrm_group_contact")).scalar_one()
    assert [tuple(r) for r in copied] == [
        ("Added", datetime(2025, 1, 1, tzinfo=UTC)),
        ("Removed", WHEN),
    ]
    assert member == "Removed"


def test_a_run_resumed_under_a_new_id_finds_the_change_made_before_the_kill(
    civi: CiviCrmTables, writes: CiviCrm, clean_tables: sa.Engine
) -> None:
    group = civi.group("newsletter")
    ann = civi.contact("Ann", "Archer", "ann@example.org")
    writes.refresh(clean_tables, [group])
    change = crm.MembershipChange(ann, group, GroupStatus.ADDED, WHEN)
    _killed_before_postgres_commits(clean_tables, lambda c: writes.set_memberships(c, [change]))

    with clean_tables.begin() as conn:
        writes.for_run("mcsync:run-2").set_memberships(conn, [change])

    assert civi.rows("SELECT status, tracking FROM civicrm_subscription_history") == [
        ("Added", "mcsync:run-1")
    ]


def test_a_later_runs_changes_back_and_forth_are_each_recorded(
    civi: CiviCrmTables, writes: CiviCrm, clean_tables: sa.Engine
) -> None:
    group = civi.group("newsletter")
    ann = civi.contact("Ann", "Archer", "ann@example.org")
    writes.refresh(clean_tables, [group])
    added = crm.MembershipChange(ann, group, GroupStatus.ADDED, WHEN)
    removed = crm.MembershipChange(ann, group, GroupStatus.REMOVED, WHEN)
    with clean_tables.begin() as conn:
        writes.set_memberships(conn, [added])
    civi.join(ann, group, "Removed")  # an admin removes Ann in CiviCRM
    with clean_tables.begin() as conn:
        writes.for_run("mcsync:run-2").set_memberships(conn, [added, removed, added])

    assert civi.rows("SELECT status, method FROM civicrm_subscription_history ORDER BY id") == [
        ("Added", "MCsync"),
        ("Removed", "Admin"),
        ("Added", "MCsync"),
        ("Removed", "MCsync"),
        ("Added", "MCsync"),
    ]


def test_names_from_mailchimp_set_the_display_and_sort_names(
    civi: CiviCrmTables, writes: CiviCrm, clean_tables: sa.Engine
) -> None:
    ann = civi.contact("Ann", "Archer", "ann@example.org")

    with clean_tables.begin() as conn:
        changed = writes.set_contact_names(conn, ann, "Anna", "  ")

    assert changed == 1
    assert civi.rows(
        "SELECT first_name, last_name, display_name, sort_name FROM civicrm_contact"
    ) == [("Anna", "Archer", "Anna Archer", "Archer, Anna")]


def test_addresses_go_on_hold_once_and_new_bulk_addresses_take_the_flag(
    civi: CiviCrmTables, writes: CiviCrm, clean_tables: sa.Engine
) -> None:
    ann = civi.contact("Ann", "Archer", "ann@example.org")
    writes.refresh(clean_tables, [])

    with clean_tables.begin() as conn:
        held = writes.put_emails_on_hold(conn, ["ANN@example.org"], WHEN)
        again = writes.put_emails_on_hold(conn, ["ann@example.org"], datetime.now(UTC))
        added = writes.add_emails(conn, [crm.EmailToAdd(ann, "ann.new@example.org", True)])
        added_again = writes.add_emails(conn, [crm.EmailToAdd(ann, "Ann.New@example.org", True)])

    assert (held, again, added, added_again) == (1, 0, 1, 0)
    assert civi.rows(
        "SELECT email, is_bulkmail, on_hold, hold_date FROM civicrm_email ORDER BY id"
    ) == [
        ("ann@example.org", 0, 1, datetime(2026, 3, 4, 5, 6, 7)),
        ("ann.new@example.org", 1, 0, None),
    ]
    with clean_tables.connect() as conn:
        copied = conn.execute(
            sa.text("SELECT email, is_bulkmail, on_hold FROM civicrm_email ORDER BY id")
        ).all()
    assert [tuple(r) for r in copied] == [
        ("ann@example.org", False, 1),
        ("ann.new@example.org", True, 0),
    ]


def test_a_thousand_changes_take_a_bounded_number_of_civicrm_statements(
    civi: CiviCrmTables, writes: CiviCrm, clean_tables: sa.Engine
) -> None:
    group = civi.group("newsletter")
    people = [_new(f"P{n}", "Tester", f"p{n}@example.org") for n in range(1000)]
    sent: list[str] = []
    sa.event.listen(writes.engine, "before_cursor_execute", lambda *a: sent.append(a[2]))
    writes.refresh(clean_tables, [group])
    sent.clear()

    with clean_tables.begin() as conn:
        ids = writes.insert_contacts(conn, people)
        created = len(sent)
        changes = [crm.MembershipChange(i, group, GroupStatus.ADDED, WHEN) for i in ids]
        writes.set_memberships(conn, changes)

    assert civi.rows("SELECT COUNT(*) FROM civicrm_subscription_history") == [(1000,)]
    assert created <= 8 and len(sent) - created <= 8, sent
