"""The fetch merge: per-field values and the time each was first seen."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.member_data import (
    FetchedMember,
    changed,
    interest_changed_at,
    interests_and_times,
    merge_mailchimp_data,
    status_changed_at,
)
from common.vocabulary import MailchimpStatus

FIRST = datetime(2021, 11, 23, 22, 52, 5, tzinfo=UTC)
SECOND = FIRST + timedelta(days=3)
FIRST_TEXT = "2021-11-23T22:52:05+00:00"
SECOND_TEXT = "2021-11-26T22:52:05+00:00"


def member(**changes: Any) -> FetchedMember:
    base = FetchedMember(
        member_id="0cc175b9c0f1b6a831c399e269772661",
        email="a@example.org",
        status=MailchimpStatus.SUBSCRIBED,
        last_changed=FIRST,
        first_name="Ann",
        last_name="Lee",
        interests={"i1": True, "i2": False},
    )
    return base._replace(**changes)


NEW_ROW = {
    "status": "subscribed",
    "status@": FIRST_TEXT,
    "first_name": "Ann",
    "first_name@": FIRST_TEXT,
    "last_name": "Lee",
    "last_name@": FIRST_TEXT,
    "interest-i1": True,
    "interest-i1@": FIRST_TEXT,
    "interest-i2": False,
    "interest-i2@": FIRST_TEXT,
}


def test_a_new_row_gets_every_field_timed_at_last_changed() -> None:
    assert merge_mailchimp_data(None, member()) == NEW_ROW


def test_a_name_change_moves_only_the_name_time() -> None:
    merged = merge_mailchimp_data(NEW_ROW, member(first_name="Anne", last_changed=SECOND))
    assert merged == {**NEW_ROW, "first_name": "Anne", "first_name@": SECOND_TEXT}
    assert status_changed_at(merged) == FIRST


def test_a_status_change_moves_the_status_time_to_mailchimps_last_changed() -> None:
    merged = merge_mailchimp_data(
        NEW_ROW, member(status=MailchimpStatus.UNSUBSCRIBED, last_changed=SECOND)
    )
    assert merged == {**NEW_ROW, "status": "unsubscribed", "status@": SECOND_TEXT}
    assert status_changed_at(merged) == SECOND


def test_an_interest_change_moves_only_that_interests_time() -> None:
    merged = merge_mailchimp_data(
        NEW_ROW, member(interests={"i1": False, "i2": False}, last_changed=SECOND)
    )
    assert merged == {**NEW_ROW, "interest-i1": False, "interest-i1@": SECOND_TEXT}
    assert interest_changed_at(merged, "i1") == SECOND
    assert interest_changed_at(merged, "i2") == FIRST


def test_a_new_interest_is_added_and_absent_ones_are_kept() -> None:
    merged = merge_mailchimp_data(NEW_ROW, member(interests={"i3": True}, last_changed=SECOND))
    assert merged == {**NEW_ROW, "interest-i3": True, "interest-i3@": SECOND_TEXT}


def test_a_value_without_a_time_gets_one() -> None:
    previous = {"status": "subscribed", "other": 1}
    merged = merge_mailchimp_data(previous, member(interests={}))
    assert merged["status@"] == FIRST_TEXT
    assert merged["other"] == 1


def test_the_merge_does_not_modify_the_previous_data() -> None:
    previous = dict(NEW_ROW)
    merge_mailchimp_data(previous, member(status=MailchimpStatus.CLEANED, last_changed=SECOND))
    assert previous == NEW_ROW


def test_changed_tells_whether_the_merge_changed_anything() -> None:
    assert changed(None, NEW_ROW)
    assert not changed(NEW_ROW, merge_mailchimp_data(NEW_ROW, member(last_changed=SECOND)))
    assert changed(NEW_ROW, merge_mailchimp_data(NEW_ROW, member(last_name="Li")))


def test_readers_return_none_for_missing_or_unreadable_times() -> None:
    assert status_changed_at({}) is None
    assert status_changed_at({"status@": "yesterday"}) is None
    assert interest_changed_at({"interest-x@": 5}, "x") is None


def test_interests_and_times_read_each_flag_with_its_time_if_readable() -> None:
    data = {
        **NEW_ROW,
        "interest-i3": 1,
        "interest-i3@": "not a time",
        "interest-i4@": SECOND_TEXT,  # a time without its flag is no interest
    }

    flags, times = interests_and_times(data)

    assert flags == {"i1": True, "i2": False, "i3": True}
    assert times == {"i1": FIRST, "i2": FIRST}


API_MEMBER = {
    "id": "0cc175b9c0f1b6a831c399e269772661",
    "email_address": "A@example.org",
    "status": "pending",
    "last_changed": "2021-11-23T22:52:05+00:00",
    "merge_fields": {"FNAME": "Ann", "LNAME": "Lee", "PHONE": ""},
    "interests": {"i1": True},
}


@pytest.mark.parametrize(
    "stamp",
    ["2021-11-23T22:52:05+00:00", "2021-11-23T22:52:05Z", "2021-11-23T23:52:05+01:00"],
    ids=["plus_zero_offset", "zulu", "other_offset"],
)
def test_from_api_parses_timestamps_as_utc(stamp: str) -> None:
    parsed = FetchedMember.from_api({**API_MEMBER, "last_changed": stamp})
    assert parsed.last_changed == FIRST
    assert parsed.last_changed.tzinfo == UTC


def test_from_api_reads_the_member() -> None:
    assert FetchedMember.from_api(API_MEMBER) == FetchedMember(
        member_id="0cc175b9c0f1b6a831c399e269772661",
        email="A@example.org",
        status=MailchimpStatus.PENDING,
        last_changed=FIRST,
        first_name="Ann",
        last_name="Lee",
        interests={"i1": True},
    )


def test_from_api_without_interests_or_merge_fields() -> None:
    bare = {k: v for k, v in API_MEMBER.items() if k not in ("interests", "merge_fields")}
    parsed = FetchedMember.from_api(bare)
    assert (parsed.interests, parsed.first_name, parsed.last_name) == ({}, "", "")


def test_from_api_rejects_an_unknown_status() -> None:
    with pytest.raises(ValueError, match="nonsense"):
        FetchedMember.from_api({**API_MEMBER, "status": "nonsense"})


members = st.builds(
    FetchedMember,
    member_id=st.just("m"),
    email=st.just("a@example.org"),
    status=st.sampled_from(MailchimpStatus),
    # From year 2: 0001-01-01 at +02:00 is before the first instant a UTC datetime can hold.
    last_changed=st.datetimes(
        min_value=datetime(2, 1, 1), timezones=st.sampled_from([UTC, timezone(timedelta(hours=2))])
    ),
    first_name=st.sampled_from(["", "Ann", "Bob"]),
    last_name=st.sampled_from(["", "Lee"]),
    interests=st.dictionaries(st.sampled_from(["i1", "i2"]), st.booleans()),
)


@given(st.lists(members, min_size=1, max_size=4), members)
def test_a_time_moves_only_when_its_value_changes(
    history: list[FetchedMember], last: FetchedMember
) -> None:
    data: dict[str, Any] | None = None
    for fetched in history:
        data = merge_mailchimp_data(data, fetched)
    assert data is not None
    merged = merge_mailchimp_data(data, last)
    for key, value in merged.items():
        if key.endswith("@"):
            continue
        if key in data and data[key] == value:
            assert merged[f"{key}@"] == data[f"{key}@"]
        else:
            assert merged[f"{key}@"] == last.last_changed.astimezone(UTC).isoformat()


@given(members)
def test_merging_the_same_member_twice_changes_nothing(fetched: FetchedMember) -> None:
    once = merge_mailchimp_data(None, fetched)
    assert not changed(once, merge_mailchimp_data(once, fetched))
