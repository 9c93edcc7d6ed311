"""Batch operations built from pending updates, and how they are planned into batches."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.member_data import subscriber_hash
from services.submitter.operations import (
    BatchPlan,
    Operation,
    PendingUpdate,
    PlannedBatch,
    build_operation,
    operation_id,
    plan_batches,
)

LIST = "a36b032126"
JANE_HASH = hashlib.md5(b"jane.doe@example.com").hexdigest()
TAGS = {"tags": [{"name": "VIP", "status": "active"}]}


def update(
    update_id: int,
    data: dict[str, Any],
    *,
    cache_id: int | None = None,
    member_id: str | None = JANE_HASH,
    email: str | None = "jane.doe@example.com",
) -> PendingUpdate:
    return PendingUpdate(
        update_id=update_id,
        cache_id=update_id if cache_id is None else cache_id,
        list_id=LIST,
        member_id=member_id,
        mailchimp_email=email if member_id is not None else None,
        data=data,
    )


def new_member(update_id: int, cache_id: int, email: str = "new@example.org") -> PendingUpdate:
    data = {"email_address": email, "status": "subscribed"}
    return update(update_id, data, cache_id=cache_id, member_id=None)


def all_update_ids(plan: BatchPlan) -> list[int]:
    in_batches = [uid for batch in plan.batches for uid in batch.update_ids]
    rejected = [r.update_id for r in plan.rejected]
    return in_batches + list(plan.deferred_update_ids) + rejected


# --- subscriber hash and operation ids --------------------------------------------------


def test_subscriber_hash_is_md5_of_the_lower_cased_email() -> None:
    assert subscriber_hash("Jane.Doe@Example.COM") == JANE_HASH


def test_subscriber_hash_lower_cases_non_ascii_letters_before_utf8_encoding() -> None:
    expected = hashlib.md5("élodie@exämple.de".encode()).hexdigest()
    assert subscriber_hash("ÉLODIE@EXÄMPLE.DE") == expected


def test_operation_id_names_the_update() -> None:
    assert operation_id(1017) == "mailchimpsync_1017"


# --- operation envelopes ------------------------------------------------------------------


def test_member_update_of_a_row_not_at_mailchimp_is_a_post_to_members() -> None:
    data = {"email_address": "new@example.org", "status": "subscribed", "merge_fields": {}}
    op = build_operation(update(7, data, member_id=None))
    assert op.to_wire() == {
        "method": "POST",
        "path": f"/lists/{LIST}/members",
        "operation_id": "mailchimpsync_7",
        "body": json.dumps(data, separators=(",", ":")),
        "params": {"skip_merge_validation": "true"},
    }


def test_member_update_of_a_known_row_is_a_put_with_mailchimps_email_and_status_if_new() -> None:
    op = build_operation(update(8, {"status": "unsubscribed", "merge_fields": {"FNAME": "J"}}))
    wire = op.to_wire()
    assert (wire["method"], wire["path"]) == ("PUT", f"/lists/{LIST}/members/{JANE_HASH}")
    assert wire["params"] == {"skip_merge_validation": "true"}
    assert json.loads(wire["body"]) == {
        "status": "unsubscribed",
        "status_if_new": "unsubscribed",
        "merge_fields": {"FNAME": "J"},
        "email_address": "jane.doe@example.com",
    }


def test_put_keeps_the_email_the_update_changes_to() -> None:
    op = build_operation(update(9, {"email_address": "jane@new.example.org"}))
    assert json.loads(op.body or "") == {"email_address": "jane@new.example.org"}


def test_put_without_a_status_sends_no_status_if_new() -> None:
    op = build_operation(update(10, {"interests": {"9143cf3bd1": True}}))
    assert "status_if_new" not in json.loads(op.body or "")


def test_put_addresses_the_member_by_the_id_mailchimp_gave_even_if_not_lower_cased() -> None:
    mixed_case_id = hashlib.md5(b"Jane.Doe@example.com").hexdigest()
    op = build_operation(update(11, {"status": "subscribed"}, member_id=mixed_case_id))
    assert op.path == f"/lists/{LIST}/members/{mixed_case_id}"


def test_tags_update_is_a_post_to_the_members_tags_without_params() -> None:
    wire = build_operation(update(12, TAGS)).to_wire()
    assert wire == {
        "method": "POST",
        "path": f"/lists/{LIST}/members/{JANE_HASH}/tags",
        "operation_id": "mailchimpsync_12",
        "body": '{"tags":[{"name":"VIP","status":"active"}]}',
    }


@pytest.mark.parametrize(
    ("data", "member_id"),
    [
        ({"email_address": "a@example.org", "status": "subscribed"}, None),
        ({"status": "unsubscribed"}, JANE_HASH),
        (TAGS, JANE_HASH),
    ],
)
def test_body_is_always_a_json_string_never_an_object(
    data: dict[str, Any], member_id: str | None
) -> None:
    wire = build_operation(update(13, data, member_id=member_id)).to_wire()
    assert isinstance(wire["body"], str)
    assert json.loads(wire["body"]).items() >= data.items()


def test_non_ascii_survives_the_body_encoding() -> None:
    op = build_operation(update(14, {"merge_fields": {"FNAME": "Zoë"}}))
    assert json.loads(op.body or "")["merge_fields"]["FNAME"] == "Zoë"


def test_operation_without_body_or_params_leaves_them_out_of_the_envelope() -> None:
    op = Operation(method="GET", path="/lists", operation_id="x")
    assert op.to_wire() == {"method": "GET", "path": "/lists", "operation_id": "x"}


def test_planned_batch_wire_is_the_batches_request_body() -> None:
    op = build_operation(update(15, TAGS))
    assert PlannedBatch((op,), (15,)).to_wire() == {"operations": [op.to_wire()]}


# --- planning: deferral and ordering -----------------------------------------------------


def test_tags_for_a_member_created_in_this_submission_are_deferred() -> None:
    plan = plan_batches([new_member(1, cache_id=50), update(2, TAGS, cache_id=50, member_id=None)])
    assert [batch.update_ids for batch in plan.batches] == [(1,)]
    assert plan.deferred_update_ids == (2,)


def test_tags_for_a_row_not_at_mailchimp_wait_even_without_a_member_update() -> None:
    plan = plan_batches([update(3, TAGS, member_id=None)])
    assert plan.batches == ()
    assert plan.deferred_update_ids == (3,)


def test_tags_for_a_member_whose_email_changes_in_this_submission_are_deferred() -> None:
    plan = plan_batches(
        [update(1, {"email_address": "other@example.org"}, cache_id=5), update(2, TAGS, cache_id=5)]
    )
    assert [batch.update_ids for batch in plan.batches] == [(1,)]
    assert plan.deferred_update_ids == (2,)


def test_an_email_change_only_in_letter_case_does_not_hold_back_tags() -> None:
    plan = plan_batches(
        [
            update(1, {"email_address": "Jane.Doe@example.com"}, cache_id=5),
            update(2, TAGS, cache_id=5),
        ]
    )
    assert [batch.update_ids for batch in plan.batches] == [(1, 2)]


def test_tags_for_a_known_member_go_with_its_member_update() -> None:
    plan = plan_batches(
        [update(1, {"status": "subscribed"}, cache_id=5), update(2, TAGS, cache_id=5)]
    )
    assert [batch.update_ids for batch in plan.batches] == [(1, 2)]
    assert plan.deferred_update_ids == ()


def test_tags_of_other_rows_are_not_held_back_by_a_new_member() -> None:
    plan = plan_batches([new_member(1, cache_id=50), update(2, TAGS, cache_id=60)])
    assert [batch.update_ids for batch in plan.batches] == [(1, 2)]


def test_every_update_of_a_row_with_an_update_in_flight_is_deferred() -> None:
    plan = plan_batches(
        [new_member(1, cache_id=50), update(2, TAGS, cache_id=60), update(3, TAGS, cache_id=70)],
        busy_cache_ids={50, 60},
    )
    assert [batch.update_ids for batch in plan.batches] == [(3,)]
    assert plan.deferred_update_ids == (1, 2)


def test_an_email_change_is_seen_against_the_member_id_when_mailchimps_email_is_unknown() -> None:
    changing = PendingUpdate(1, 5, LIST, JANE_HASH, None, {"email_address": "x@example.org"})
    same = PendingUpdate(2, 6, LIST, JANE_HASH, None, {"email_address": "JANE.doe@example.com"})
    assert changing.changes_member_address
    assert not same.changes_member_address


def test_a_second_member_update_of_one_row_is_deferred_oldest_goes_first() -> None:
    plan = plan_batches(
        [
            update(9, {"status": "unsubscribed"}, cache_id=5),
            update(4, {"status": "subscribed"}, cache_id=5),
        ]
    )
    assert [batch.update_ids for batch in plan.batches] == [(4,)]
    assert plan.deferred_update_ids == (9,)


def test_a_second_tags_update_of_one_row_is_deferred() -> None:
    plan = plan_batches([update(1, TAGS, cache_id=5), update(2, TAGS, cache_id=5)])
    assert [batch.update_ids for batch in plan.batches] == [(1,)]
    assert plan.deferred_update_ids == (2,)


def test_a_member_update_for_a_new_row_without_email_is_rejected_not_sent() -> None:
    plan = plan_batches([update(1, {"status": "subscribed"}, member_id=None)])
    assert plan.batches == ()
    assert [r.update_id for r in plan.rejected] == [1]
    assert "email_address" in plan.rejected[0].reason


def test_a_member_update_that_is_not_json_encodable_is_rejected() -> None:
    plan = plan_batches([update(1, {"merge_fields": {"LTV": float("nan")}})])
    assert plan.batches == ()
    assert [r.update_id for r in plan.rejected] == [1]


def test_build_operation_refuses_a_tags_update_it_cannot_address() -> None:
    with pytest.raises(ValueError, match="member id"):
        build_operation(update(1, TAGS, member_id=None))


def test_2500_updates_make_three_batches_of_at_most_1000() -> None:
    updates = [update(i, {"status": "subscribed"}) for i in range(1, 2501)]
    plan = plan_batches(updates)
    assert [len(batch.operations) for batch in plan.batches] == [1000, 1000, 500]
    assert plan.batches[0].update_ids[:2] == (1, 2)


def test_operations_and_update_ids_of_a_batch_line_up() -> None:
    plan = plan_batches([update(i, TAGS) for i in (30, 10, 20)])
    batch = plan.batches[0]
    assert batch.update_ids == (10, 20, 30)
    assert [op.operation_id for op in batch.operations] == [operation_id(i) for i in (10, 20, 30)]


def test_max_operations_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_operations"):
        plan_batches([], max_operations=0)


def test_duplicate_update_ids_are_a_programming_error() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        plan_batches([update(1, TAGS), update(1, TAGS)])


def test_no_updates_plan_no_batches() -> None:
    assert plan_batches([]) == BatchPlan(batches=(), deferred_update_ids=())


# --- properties -------------------------------------------------------------------------

MEMBER_DATA: st.SearchStrategy[dict[str, Any]] = st.sampled_from(
    [
        {"status": "subscribed"},
        {"email_address": "x@example.org", "status": "pending"},
        {"email_address": "other@example.org"},
        {"interests": {"abc": True}},
        {"status": "subscribed"},
        TAGS,
        {"tags": []},
    ]
)


@st.composite
def pending_updates(draw: st.DrawFn) -> list[PendingUpdate]:
    ids = draw(st.lists(st.integers(1, 10_000), unique=True, max_size=60))
    result = []
    for uid in ids:
        at_mailchimp = draw(st.booleans())
        result.append(
            update(
                uid,
                draw(MEMBER_DATA),
                cache_id=draw(st.integers(1, 8)),
                member_id=JANE_HASH if at_mailchimp else None,
            )
        )
    return result


@given(pending_updates(), st.integers(1, 7), st.frozensets(st.integers(1, 8), max_size=3))
def test_every_update_is_planned_exactly_once_and_no_batch_exceeds_the_max(
    updates: list[PendingUpdate], max_operations: int, busy: frozenset[int]
) -> None:
    plan = plan_batches(updates, max_operations=max_operations, busy_cache_ids=busy)
    assert sorted(all_update_ids(plan)) == sorted(u.update_id for u in updates)
    assert all(0 < len(batch.operations) <= max_operations for batch in plan.batches)
    assert all(len(b.operations) == len(b.update_ids) for b in plan.batches)
    sent = {uid for batch in plan.batches for uid in batch.update_ids}
    assert not any(u.cache_id in busy for u in updates if u.update_id in sent)


@given(pending_updates(), st.integers(1, 7))
def test_no_tag_is_sent_for_a_member_created_or_readdressed_in_the_same_plan(
    updates: list[PendingUpdate], max_operations: int
) -> None:
    plan = plan_batches(updates, max_operations=max_operations)
    by_id = {u.update_id: u for u in updates}
    sent = [by_id[uid] for batch in plan.batches for uid in batch.update_ids]
    readdressed_rows = {u.cache_id for u in sent if u.changes_member_address}
    sent_tags = [u for u in sent if u.is_tags]
    assert all(u.member_id is not None for u in sent_tags)
    assert not {u.cache_id for u in sent_tags} & readdressed_rows


@given(pending_updates())
def test_each_row_sends_at_most_one_update_of_each_kind(updates: list[PendingUpdate]) -> None:
    plan = plan_batches(updates, max_operations=3)
    by_id = {u.update_id: u for u in updates}
    slots = [
        (by_id[uid].cache_id, by_id[uid].is_tags)
        for batch in plan.batches
        for uid in batch.update_ids
    ]
    assert len(slots) == len(set(slots))
