"""The matching phases of readyToFixContactIds."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.reconciler.match import (
    ContactMatch,
    Match,
    MatchPhase,
    Owner,
    RowToMatch,
    match_contact,
    match_rows,
)

PHASES = {
    "one_undeleted_owner_matches_in_phase_one": (
        [Owner(7), Owner(3, is_deleted=True, added_to_subscription_group=True)],
        ContactMatch(7, MatchPhase.ONLY_OWNER),
    ),
    "same_contact_listed_twice_is_still_one_owner": (
        [Owner(7), Owner(7)],
        ContactMatch(7, MatchPhase.ONLY_OWNER),
    ),
    "lowest_owner_added_to_the_group_matches_in_phase_two": (
        [
            Owner(2, has_history_in_subscription_group=True),
            Owner(9, added_to_subscription_group=True),
            Owner(5, added_to_subscription_group=True),
        ],
        ContactMatch(5, MatchPhase.ADDED_TO_GROUP),
    ),
    "lowest_owner_with_group_history_matches_in_phase_three": (
        [
            Owner(1),
            Owner(8, has_history_in_subscription_group=True),
            Owner(6, has_history_in_subscription_group=True),
        ],
        ContactMatch(6, MatchPhase.HISTORY_IN_GROUP),
    ),
    "lowest_undeleted_owner_matches_in_phase_four": (
        [Owner(4), Owner(9), Owner(2, is_deleted=True)],
        ContactMatch(4, MatchPhase.LOWEST_OWNER),
    ),
    "deleted_owners_added_to_the_group_are_ignored": (
        [Owner(1, is_deleted=True, added_to_subscription_group=True), Owner(5), Owner(3)],
        ContactMatch(3, MatchPhase.LOWEST_OWNER),
    ),
    "only_deleted_owners_match_nobody": ([Owner(1, is_deleted=True)], None),
    "no_owner_matches_nobody": ([], None),
}


@pytest.mark.parametrize(("owners", "expected"), PHASES.values(), ids=PHASES.keys())
def test_match_contact_phases(owners: list[Owner], expected: ContactMatch | None) -> None:
    assert match_contact(owners) == expected


def test_match_rows_compares_emails_lower_cased_and_leaves_out_unmatched_rows() -> None:
    rows = [
        RowToMatch(1, "Ann@Example.org"),
        RowToMatch(2, "bob@example.org"),
        RowToMatch(3, "nobody@example.org"),
        RowToMatch(4, "gone@example.org"),
    ]
    owners = {
        "ann@example.org": [Owner(11)],
        "BOB@example.org": [Owner(21), Owner(22, added_to_subscription_group=True)],
        "gone@example.org": [Owner(31, is_deleted=True)],
    }
    assert match_rows(rows, owners) == [
        Match(1, 11, MatchPhase.ONLY_OWNER),
        Match(2, 22, MatchPhase.ADDED_TO_GROUP),
    ]


def test_owner_lists_under_differently_cased_keys_are_pooled() -> None:
    owners = {"ann@example.org": [Owner(5)], "ANN@example.org": [Owner(4)]}
    assert match_rows([RowToMatch(1, "ann@EXAMPLE.org")], owners) == [
        Match(1, 4, MatchPhase.LOWEST_OWNER)
    ]


owner_lists = st.lists(
    st.builds(Owner, st.integers(1, 20), st.booleans(), st.booleans(), st.booleans())
)


@given(owner_lists)
def test_the_match_is_an_undeleted_owner_or_nobody_when_none_is_left(owners: list[Owner]) -> None:
    found = match_contact(owners)
    undeleted = {o.contact_id for o in owners if not o.is_deleted}
    if found is None:
        assert not undeleted
    else:
        assert found.contact_id in undeleted


@given(owner_lists.flatmap(lambda owners: st.tuples(st.just(owners), st.permutations(owners))))
def test_the_match_does_not_depend_on_owner_order(lists: tuple[list[Owner], list[Owner]]) -> None:
    owners, shuffled = lists
    assert match_contact(shuffled) == match_contact(owners)
