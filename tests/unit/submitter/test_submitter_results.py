"""Reading batch result archives and classifying each operation's result."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.member_data import FetchedMember, merge_mailchimp_data
from common.vocabulary import MailchimpStatus, SyncStatus
from services.submitter.operations import operation_id
from services.submitter.results import (
    CacheRowChange,
    CacheRowState,
    Failed,
    MemberResult,
    OperationResult,
    ResultArchiveError,
    RetryAsPending,
    Succeeded,
    classify,
    follow_success,
    read_result_archive,
    row_sync_status,
    update_id_of,
)

JANE_ID = "0cba00ca3da1b283a57287bcceb17e35"
JANE = {
    "id": JANE_ID,
    "email_address": "jane.doe@example.com",
    "status": "subscribed",
    "last_changed": "2021-11-23T22:52:05+00:00",
    "merge_fields": {"FNAME": "Jane"},
}
JANE_RESULT = MemberResult(
    member_id=JANE_ID,
    email="jane.doe@example.com",
    status=MailchimpStatus.SUBSCRIBED,
    last_changed=datetime(2021, 11, 23, 22, 52, 5, tzinfo=UTC),
    fetched=FetchedMember.from_api(JANE),
)
JANE_DATA = {
    "status": "subscribed",
    "status@": "2021-11-23T22:52:05+00:00",
    "first_name": "Jane",
    "first_name@": "2021-11-23T22:52:05+00:00",
    "last_name": "",
    "last_name@": "2021-11-23T22:52:05+00:00",
}
COMPLIANCE = {
    "title": "Member In Compliance State",
    "status": 400,
    "detail": "xyz@gmail.com is in a compliance state due to unsubscribe, bounce, or compliance"
    " review and cannot be subscribed.",
    "instance": "",
}


def element(operation_id: str | None, status_code: int, response: Any) -> dict[str, Any]:
    text = response if isinstance(response, str) else json.dumps(response)
    return {"status_code": status_code, "operation_id": operation_id, "response": text}


def archive(files: list[tuple[str, bytes]], *, directory_first: bool = True) -> bytes:
    """A gzip tar as Mailchimp makes it: the directory ``./`` first, then the files."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        if directory_first:
            entry = tarfile.TarInfo("./")
            entry.type = tarfile.DIRTYPE
            entry.mode = 0o755
            tar.addfile(entry)
        for name, content in files:
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return raw.getvalue()


def json_file(*elements: dict[str, Any]) -> bytes:
    return json.dumps(list(elements)).encode()


def result(
    status_code: int, response: Any, operation_id: str = "mailchimpsync_1"
) -> OperationResult:
    text = response if isinstance(response, str) else json.dumps(response)
    return OperationResult(operation_id=operation_id, status_code=status_code, response=text)


# --- reading archives ----------------------------------------------------------------------


def test_archive_with_several_files_and_an_empty_one_yields_every_result() -> None:
    data = archive(
        [
            ("./a1b2.json", json_file(element("mailchimpsync_1", 200, JANE))),
            ("./empty.json", b""),
            (
                "./c3d4.json",
                json_file(
                    element("mailchimpsync_3", 400, COMPLIANCE),
                    element("mailchimpsync_2", 204, ""),
                ),
            ),
        ]
    )
    results = list(read_result_archive(data))
    assert results == [
        OperationResult("mailchimpsync_1", 200, json.dumps(JANE)),
        OperationResult("mailchimpsync_3", 400, json.dumps(COMPLIANCE)),
        OperationResult("mailchimpsync_2", 204, ""),
    ]


def test_response_stays_the_json_string_mailchimp_sent() -> None:
    data = archive([("./x.json", json_file(element("mailchimpsync_1", 200, JANE)))])
    (only,) = read_result_archive(data)
    assert isinstance(only.response, str)
    assert json.loads(only.response) == JANE


def test_results_of_operations_submitted_without_an_id_keep_a_none_id() -> None:
    data = archive([("./x.json", json_file(element(None, 200, "{}")))])
    assert [r.operation_id for r in read_result_archive(data)] == [None]


def test_a_whitespace_only_file_is_skipped_like_an_empty_one() -> None:
    data = archive([("./x.json", b"\n"), ("./y.json", json_file(element("a", 204, "")))])
    assert [r.operation_id for r in read_result_archive(data)] == ["a"]


def test_an_empty_array_file_yields_nothing() -> None:
    assert list(read_result_archive(archive([("./x.json", b"[]")]))) == []


def test_an_inlined_response_object_is_read_as_its_json_text() -> None:
    raw = json.dumps([{"status_code": 200, "operation_id": "a", "response": {"id": "x"}}])
    (only,) = read_result_archive(archive([("./x.json", raw.encode())]))
    assert json.loads(only.response) == {"id": "x"}


def test_a_file_like_object_is_read_as_well_as_bytes() -> None:
    data = archive([("./x.json", json_file(element("a", 204, "")))])
    assert len(list(read_result_archive(io.BytesIO(data)))) == 1


def test_a_big_archive_streams_every_result() -> None:
    files = [
        (
            f"./{n}.json",
            json_file(*(element(f"mailchimpsync_{n * 1000 + i}", 204, "") for i in range(1000))),
        )
        for n in range(5)
    ]
    ids = [update_id_of(r.operation_id) for r in read_result_archive(archive(files))]
    assert sorted(i for i in ids if i is not None) == list(range(5000))


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty download"),
        pytest.param(b"<?xml version='1.0'?><Error>AccessDenied</Error>", id="S3 error page"),
        pytest.param(gzip.compress(b"not a tar at all" * 100), id="gzip but not tar"),
        pytest.param(
            archive([("./x.json", json_file(element("a", 200, JANE)))])[:60], id="truncated"
        ),
    ],
)
def test_an_unreadable_archive_raises_result_archive_error(data: bytes) -> None:
    with pytest.raises(ResultArchiveError):
        list(read_result_archive(data))


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"{not json", id="not json"),
        pytest.param(b'{"data": []}', id="object instead of array"),
        pytest.param(b'["x"]', id="element not an object"),
        pytest.param(b'[{"operation_id": "a", "response": ""}]', id="no status code"),
        pytest.param(b'[{"status_code": "200", "operation_id": "a"}]', id="status code a string"),
        pytest.param(b'[{"status_code": 200, "operation_id": 7}]', id="operation id a number"),
        pytest.param(b"\xff\xfe[]", id="not utf-8"),
    ],
)
def test_a_malformed_result_file_raises_result_archive_error(content: bytes) -> None:
    with pytest.raises(ResultArchiveError):
        list(read_result_archive(archive([("./x.json", content)])))


# --- operation ids ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operation_id", "expected"),
    [
        ("mailchimpsync_1017", 1017),
        ("mailchimpsync_0", 0),
        ("mailchimpsync_", None),
        ("mailchimpsync_12a", None),
        ("mailchimpsync_-3", None),
        ("mailchimpsync_007", None),
        ("mailchimpsync_١٢", None),
        ("upd_1017", None),
        ("xmailchimpsync_1", None),
        ("add-xyz@gmail.com", None),
        (None, None),
    ],
)
def test_update_id_of_reads_only_our_operation_ids(
    operation_id: str | None, expected: int | None
) -> None:
    assert update_id_of(operation_id) == expected


@given(st.integers(min_value=0, max_value=2**63))
def test_update_id_of_inverts_operation_id(update_id: int) -> None:
    assert update_id_of(operation_id(update_id)) == update_id


# --- classification ------------------------------------------------------------------------


def test_a_200_member_response_succeeds_with_the_member_as_mailchimp_has_it() -> None:
    assert classify(result(200, JANE), {"status": "subscribed"}) == Succeeded(member=JANE_RESULT)


@pytest.mark.parametrize("response", ["", "{}", "null", "   "])
def test_a_204_tags_response_succeeds_without_a_member(response: str) -> None:
    assert classify(result(204, response), {"tags": []}) == Succeeded(member=None)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({**JANE, "status": "weird"}, id="unknown status"),
        pytest.param({k: v for k, v in JANE.items() if k != "id"}, id="no id"),
        pytest.param("<html>ok</html>", id="non-json 2xx"),
        pytest.param([1, 2], id="array"),
    ],
)
def test_a_2xx_without_a_readable_member_still_succeeds(body: Any) -> None:
    assert classify(result(200, body), {"status": "subscribed"}) == Succeeded(member=None)


@pytest.mark.parametrize("stamp", ["", "yesterday", "2021-11-23T22:52:05"])
def test_a_missing_bad_or_naive_last_changed_is_none(stamp: str) -> None:
    outcome = classify(result(200, {**JANE, "last_changed": stamp}), {})
    assert isinstance(outcome, Succeeded) and outcome.member is not None
    assert outcome.member.last_changed is None


def test_compliance_refusal_of_a_subscribe_retries_as_pending() -> None:
    data = {"email_address": "xyz@gmail.com", "status": "subscribed", "merge_fields": {"A": 1}}
    outcome = classify(result(400, COMPLIANCE), data)
    assert outcome == RetryAsPending(
        error=f"400 Member In Compliance State: {COMPLIANCE['detail']}",
        new_data={"email_address": "xyz@gmail.com", "status": "pending", "merge_fields": {"A": 1}},
    )
    assert data["status"] == "subscribed"


def test_compliance_retry_also_makes_status_if_new_pending_when_present() -> None:
    data = {"status": "subscribed", "status_if_new": "subscribed"}
    outcome = classify(result(400, COMPLIANCE), data)
    assert isinstance(outcome, RetryAsPending)
    assert outcome.new_data == {"status": "pending", "status_if_new": "pending"}


def test_compliance_refusal_without_a_type_key_is_still_recognised() -> None:
    body = {k: v for k, v in COMPLIANCE.items() if k != "type"}
    assert isinstance(classify(result(400, body), {"status": "subscribed"}), RetryAsPending)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({"status": "pending"}, id="already pending: no loop"),
        pytest.param({"status": "unsubscribed"}, id="not a subscribe"),
        pytest.param({"merge_fields": {"A": 1}}, id="no status"),
        pytest.param({"status_if_new": "subscribed"}, id="only status_if_new"),
    ],
)
def test_compliance_refusal_of_anything_but_a_subscribe_fails(data: dict[str, Any]) -> None:
    assert classify(result(400, COMPLIANCE), data) == Failed(
        error=f"400 Member In Compliance State: {COMPLIANCE['detail']}"
    )


def test_compliance_title_on_another_status_code_fails() -> None:
    outcome = classify(result(403, {**COMPLIANCE, "status": 403}), {"status": "subscribed"})
    assert isinstance(outcome, Failed)


def test_a_misleading_type_does_not_make_a_compliance_refusal() -> None:
    body = {
        "type": "ComplianceRelated",
        "title": "Member Exists",
        "detail": "x is already a member",
    }
    assert classify(result(400, body), {"status": "subscribed"}) == Failed(
        "400 Member Exists: x is already a member"
    )


@pytest.mark.parametrize(
    ("status_code", "response", "error"),
    [
        pytest.param(
            400,
            {
                "title": "Member Exists",
                "status": 400,
                "detail": "a@b.org is already a list member.",
            },
            "400 Member Exists: a@b.org is already a list member.",
            id="member exists",
        ),
        pytest.param(
            400,
            {
                "title": "Forgotten Email Not Subscribed",
                "detail": "a@b.org was permanently deleted",
            },
            "400 Forgotten Email Not Subscribed: a@b.org was permanently deleted",
            id="forgotten",
        ),
        pytest.param(
            400,
            {
                "title": "Invalid Resource",
                "detail": "Your merge fields were invalid.",
                "errors": [{"field": "LTV", "message": "Please enter a number"}],
            },
            "400 Invalid Resource: Your merge fields were invalid. [LTV: Please enter a number]",
            id="invalid resource with field errors",
        ),
        pytest.param(
            404,
            {"title": "Resource Not Found", "detail": "The requested resource could not be found."},
            "404 Resource Not Found: The requested resource could not be found.",
            id="tags on a non-member",
        ),
        pytest.param(
            405,
            {"title": "Method Not Allowed"},
            "405 Method Not Allowed",
            id="title without detail",
        ),
        pytest.param(
            502, "<html>Bad Gateway</html>", "502: <html>Bad Gateway</html>", id="non-json 5xx"
        ),
        pytest.param(500, "", "500: (empty response)", id="empty 5xx"),
        pytest.param(400, {"detail": "no title"}, '400: {"detail": "no title"}', id="no title"),
        pytest.param(429, "[1]", "429: [1]", id="json but not an object"),
    ],
)
def test_any_other_error_fails_with_title_and_detail(
    status_code: int, response: Any, error: str
) -> None:
    assert classify(result(status_code, response), {"status": "subscribed"}) == Failed(error)


def test_a_huge_non_json_error_body_is_cut_short() -> None:
    outcome = classify(result(504, "x" * 100_000), {})
    assert isinstance(outcome, Failed) and len(outcome.error) < 600


@given(st.integers(100, 599), st.text(max_size=50))
def test_every_result_has_exactly_one_outcome(status_code: int, response: str) -> None:
    outcome = classify(result(status_code, response), {"status": "subscribed"})
    assert isinstance(outcome, Succeeded) == (200 <= status_code < 300)
    assert isinstance(outcome, Succeeded | RetryAsPending | Failed)


# --- how the cache row follows ----------------------------------------------------------------


def test_the_row_takes_the_member_as_mailchimp_answered_it_new_or_renamed() -> None:
    # A new member's row had no id or address; a renamed one (PUT with a new email_address)
    # had the old ones: either way it holds what Mailchimp answered, or the next fetch adds
    # a row for the member it does not recognise.
    change = follow_success(CacheRowState(), JANE_RESULT)
    assert change == CacheRowChange(
        mailchimp_member_id=JANE_ID,
        mailchimp_email="jane.doe@example.com",
        mailchimp_status=MailchimpStatus.SUBSCRIBED,
        mailchimp_updated=JANE_RESULT.last_changed,
        mailchimp_data=JANE_DATA,
    )


def test_the_member_is_merged_into_the_rows_data_as_a_fetch_would_merge_it() -> None:
    earlier = {"status": "unsubscribed", "status@": "2020-01-01T00:00:00+00:00"}
    earlier |= {"first_name": "Jane", "first_name@": "2019-05-05T00:00:00+00:00"}
    row = CacheRowState(mailchimp_data=earlier)
    change = follow_success(row, JANE_RESULT)
    assert change.mailchimp_data == {
        **JANE_DATA,
        "first_name@": "2019-05-05T00:00:00+00:00",  # unchanged value, unchanged stamp
    }
    fetched_back = merge_mailchimp_data(change.mailchimp_data, FetchedMember.from_api(JANE))
    assert fetched_back == change.mailchimp_data  # the next fetch finds nothing new


def test_without_last_changed_the_row_keeps_its_update_time() -> None:
    before = datetime(2020, 1, 1, tzinfo=UTC)
    member = MemberResult(JANE_ID, "jane.doe@example.com", MailchimpStatus.PENDING, None)
    change = follow_success(CacheRowState(before), member)
    assert change.mailchimp_updated == before


@pytest.mark.parametrize(
    ("outcome", "other_updates_open", "expected"),
    [
        (Succeeded(None), False, SyncStatus.OK),
        (Succeeded(JANE_RESULT), True, None),
        (RetryAsPending("e", {"status": "pending"}), False, SyncStatus.REDO),
        (RetryAsPending("e", {"status": "pending"}), True, SyncStatus.REDO),
        (Failed("e"), False, SyncStatus.FAIL),
        (Failed("e"), True, SyncStatus.FAIL),
    ],
)
def test_row_sync_status_after_an_outcome(
    outcome: Succeeded | RetryAsPending | Failed,
    other_updates_open: bool,
    expected: SyncStatus | None,
) -> None:
    assert row_sync_status(outcome, other_updates_open) == expected
