"""The CRM gateway on a real Postgres: what each function leaves in CiviCRM's tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from common.db import crm
from common.db.crm import EmailToAdd, MembershipChange, NewContact, NewEmail
from common.vocabulary import SYNC_METHOD, GroupStatus

pytestmark = pytest.mark.integration

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def person(name: str, *emails: NewEmail, deleted: bool = False) -> NewContact:
    return NewContact(name, "Tester", "test", emails, is_deleted=deleted)


def rows(conn: sa.Connection, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in conn.execute(sa.text(sql), params)]


def test_create_group_returns_the_existing_id_for_a_known_name(db: sa.Connection) -> None:
    first = crm.create_group(db, "newsletter", "Newsletter")
    again = crm.create_group(db, "newsletter", "Another title")
    other = crm.create_group(db, "members", "Members")

    assert again == first != other
    assert rows(db, "SELECT name, title FROM civicrm_group ORDER BY id") == [
        ("newsletter", "Newsletter"),
        ("members", "Members"),
    ]


def test_insert_contacts_returns_ids_in_input_order_and_stores_their_emails(
    db: sa.Connection,
) -> None:
    ids = crm.insert_contacts(
        db,
        [
            person("Ada", NewEmail("ada@example.org", is_primary=True)),
            person("Bob"),
            person("Cy", NewEmail("cy@example.org"), NewEmail("cy@work.example", on_hold=1)),
        ],
    )

    assert rows(db, "SELECT id, first_name, source FROM civicrm_contact ORDER BY id") == [
        (ids[0], "Ada", "test"),
        (ids[1], "Bob", "test"),
        (ids[2], "Cy", "test"),
    ]
    assert rows(
        db, "SELECT contact_id, email, is_primary, on_hold FROM civicrm_email ORDER BY email"
    ) == [
        (ids[0], "ada@example.org", True, 0),
        (ids[2], "cy@example.org", False, 0),
        (ids[2], "cy@work.example", False, 1),
    ]


def test_insert_contacts_of_nothing_does_nothing(db: sa.Connection) -> None:
    assert crm.insert_contacts(db, []) == []
    assert crm.contact_count(db) == 0


def test_insert_contacts_of_20000_contacts_issues_a_bounded_number_of_statements(
    db: sa.Connection, statements: list[str]
) -> None:
    contacts = [person(f"P{i}", NewEmail(f"p{i}@example.org")) for i in range(20_000)]

    ids = crm.insert_contacts(db, contacts)

    assert len(statements) <= 3
    assert len(set(ids)) == 20_000
    assert crm.contact_count(db) == 20_000
    assert crm.best_emails(db, [ids[0], ids[-1]]) == {
        ids[0]: "p0@example.org",
        ids[-1]: "p19999@example.org",
    }


def test_set_memberships_writes_one_history_row_per_change(db: sa.Connection) -> None:
    group = crm.create_group(db, "newsletter", "Newsletter")
    ada, bob = crm.insert_contacts(db, [person("Ada"), person("Bob")])
    changes = [
        MembershipChange(ada, group, GroupStatus.ADDED, T0),
        MembershipChange(bob, group, GroupStatus.PENDING, T0, method="Web"),
        MembershipChange(ada, group, GroupStatus.REMOVED, T0 + timedelta(hours=1)),
    ]

    assert crm.set_memberships(db, changes) == 3

    history = "SELECT contact_id, status, date, method FROM civicrm_subscription_history"
    assert sorted(rows(db, history)) == sorted(
        [
            (ada, "Added", T0, SYNC_METHOD),
            (bob, "Pending", T0, "Web"),
            (ada, "Removed", T0 + timedelta(hours=1), SYNC_METHOD),
        ]
    )


def test_set_memberships_keeps_one_membership_per_pair_with_the_latest_status(
    db: sa.Connection,
) -> None:
    group = crm.create_group(db, "newsletter", "Newsletter")
    ada, bob = crm.insert_contacts(db, [person("Ada"), person("Bob")])
    crm.set_memberships(db, [MembershipChange(ada, group, GroupStatus.ADDED, T0)])

    crm.set_memberships(
        db,
        [
            MembershipChange(ada, group, GroupStatus.REMOVED, T0 + timedelta(hours=2)),
            MembershipChange(ada, group, GroupStatus.ADDED, T0 + timedelta(hours=1)),
            MembershipChange(bob, group, GroupStatus.ADDED, T0),
        ],
    )

    members = "SELECT contact_id, status FROM civicrm_group_contact ORDER BY contact_id"
    assert rows(db, members) == [(ada, "Removed"), (bob, "Added")]


def test_membership_change_refuses_a_naive_date() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        MembershipChange(1, 1, GroupStatus.ADDED, datetime(2026, 1, 1))


def test_put_emails_on_hold_matches_case_insensitively_and_keeps_earlier_holds(
    db: sa.Connection,
) -> None:
    crm.insert_contacts(
        db,
        [
            person("Ada", NewEmail("Ada@Example.org")),
            person("Bob", NewEmail("ada@example.ORG"), NewEmail("bob@example.org")),
            person("Cy", NewEmail("cy@example.org", on_hold=2)),
        ],
    )
    db.execute(sa.text("UPDATE civicrm_email SET hold_date = :t WHERE on_hold = 2"), {"t": T0})
    later = T0 + timedelta(days=1)

    held = crm.put_emails_on_hold(db, ["ADA@example.org", "cy@example.org"], later)

    assert held == 2
    assert rows(db, "SELECT email, on_hold, hold_date FROM civicrm_email ORDER BY id") == [
        ("Ada@Example.org", 1, later),
        ("ada@example.ORG", 1, later),
        ("bob@example.org", 0, None),
        ("cy@example.org", 2, T0),
    ]


def test_add_emails_skips_addresses_the_contact_already_has(db: sa.Connection) -> None:
    ada, bob = crm.insert_contacts(db, [person("Ada", NewEmail("ada@example.org")), person("Bob")])

    added = crm.add_emails(
        db,
        [
            EmailToAdd(ada, "ADA@example.org"),
            EmailToAdd(bob, "ada@example.org"),
            EmailToAdd(bob, "bob@example.org"),
            EmailToAdd(bob, "bob@example.org"),
        ],
    )

    assert added == 2
    assert rows(db, "SELECT contact_id, email FROM civicrm_email ORDER BY id") == [
        (ada, "ada@example.org"),
        (bob, "ada@example.org"),
        (bob, "bob@example.org"),
    ]


def test_add_emails_moves_the_bulkmail_flag_to_the_new_address(db: sa.Connection) -> None:
    (ada,) = crm.insert_contacts(
        db, [person("Ada", NewEmail("old@example.org", is_primary=True, is_bulkmail=True))]
    )

    crm.add_emails(db, [EmailToAdd(ada, "new@example.org", is_bulkmail=True)])

    assert rows(db, "SELECT email, is_bulkmail FROM civicrm_email ORDER BY id") == [
        ("old@example.org", False),
        ("new@example.org", True),
    ]
    assert crm.best_emails(db, [ada]) == {ada: "new@example.org"}


def test_soft_delete_contacts_hides_them_from_the_counts(db: sa.Connection) -> None:
    group = crm.create_group(db, "newsletter", "Newsletter")
    ids = crm.insert_contacts(db, [person("Ada"), person("Bob"), person("Cy")])
    crm.set_memberships(db, [MembershipChange(i, group, GroupStatus.ADDED, T0) for i in ids])

    assert crm.soft_delete_contacts(db, ids[:2]) == 2
    assert crm.soft_delete_contacts(db, ids[:1]) == 0

    assert crm.contact_count(db) == 1
    assert crm.membership_counts(db, group)[GroupStatus.ADDED] == 1


def test_membership_counts_lists_every_status_and_counts_undeleted_contacts(
    db: sa.Connection,
) -> None:
    group = crm.create_group(db, "newsletter", "Newsletter")
    other = crm.create_group(db, "members", "Members")
    ada, bob, cy, gone = crm.insert_contacts(
        db, [person("Ada"), person("Bob"), person("Cy"), person("Gone", deleted=True)]
    )
    crm.set_memberships(
        db,
        [
            MembershipChange(ada, group, GroupStatus.ADDED, T0),
            MembershipChange(bob, group, GroupStatus.ADDED, T0),
            MembershipChange(cy, group, GroupStatus.REMOVED, T0),
            MembershipChange(gone, group, GroupStatus.ADDED, T0),
            MembershipChange(cy, other, GroupStatus.ADDED, T0),
        ],
    )

    assert crm.membership_counts(db, group) == {
        GroupStatus.ADDED: 2,
        GroupStatus.REMOVED: 1,
        GroupStatus.PENDING: 0,
    }
    assert crm.contact_count(db) == 3


def test_best_email_prefers_bulkmail_then_primary_and_skips_on_hold(db: sa.Connection) -> None:
    bulk, primary, lowest, held, empty = crm.insert_contacts(
        db,
        [
            person(
                "Bulk",
                NewEmail("b1@x.org", is_primary=True),
                NewEmail("b2@x.org", is_bulkmail=True),
            ),
            person("Primary", NewEmail("p1@x.org"), NewEmail("p2@x.org", is_primary=True)),
            person("Lowest", NewEmail("l1@x.org"), NewEmail("l2@x.org")),
            person("Held", NewEmail("h1@x.org", is_bulkmail=True, on_hold=1), NewEmail("h2@x.org")),
            person("Empty", NewEmail(" ", is_bulkmail=True), NewEmail("h@x.org", on_hold=2)),
        ],
    )

    assert crm.best_emails(db, [bulk, primary, lowest, held, empty]) == {
        bulk: "b2@x.org",
        primary: "p2@x.org",
        lowest: "l1@x.org",
        held: "h2@x.org",
    }
    # A chunk's facts read the same choice, and the held addresses, lower-cased.
    facts = crm.contact_group_facts(db, [bulk, primary, lowest, held, empty], [])
    assert {c: f.best_email for c, f in facts.items()} == {
        bulk: "b2@x.org",
        primary: "p2@x.org",
        lowest: "l1@x.org",
        held: "h2@x.org",
        empty: None,
    }
    assert facts[held].held_emails == {"h1@x.org"} and facts[empty].held_emails == {"h@x.org"}
    assert facts[bulk].held_emails == frozenset()


def test_bulk_writes_and_reads_issue_a_fixed_number_of_statements_whatever_the_size(
    db: sa.Connection, statements: list[str]
) -> None:
    n = 5_000
    group = crm.create_group(db, "newsletter", "Newsletter")
    ids = crm.insert_contacts(db, [person(f"P{i}", NewEmail(f"p{i}@x.org")) for i in range(n)])
    statements.clear()

    crm.set_memberships(db, [MembershipChange(i, group, GroupStatus.ADDED, T0) for i in ids])
    crm.add_emails(db, [EmailToAdd(cid, f"new{i}@x.org", True) for i, cid in enumerate(ids)])
    crm.put_emails_on_hold(db, [f"P{i}@X.org" for i in range(n)], T0)
    best = crm.best_emails(db, ids)
    crm.soft_delete_contacts(db, ids)

    assert len(statements) == 2 + 1 + 1 + 1 + 1
    assert best == {cid: f"new{i}@x.org" for i, cid in enumerate(ids)}
    assert crm.membership_counts(db, group)[GroupStatus.ADDED] == 0


def test_bulk_functions_given_nothing_send_nothing(
    db: sa.Connection, statements: list[str]
) -> None:
    assert crm.set_memberships(db, []) == 0
    assert crm.add_emails(db, []) == 0
    assert crm.put_emails_on_hold(db, [], T0) == 0
    assert crm.soft_delete_contacts(db, []) == 0
    assert crm.best_emails(db, []) == {}
    assert statements == []
