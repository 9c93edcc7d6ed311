"""Batch envelope validation, the result archive format and webhook form payloads."""

from __future__ import annotations

import io
import tarfile
from urllib.parse import parse_qsl

import orjson
import pytest

from sim.mailchimp import Simulator, batches, errors, webhooks
from sim.mailchimp.members import MemberEvent
from sim.mailchimp.model import BatchResult


def _archive_entries(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        return archive.getmembers()


def test_archive_starts_with_dot_slash_directory_then_json_arrays() -> None:
    results = [BatchResult(200, f"op{n}", orjson.dumps({"n": n}).decode()) for n in range(5)]
    data = batches.build_archive(results, per_file=2, include_empty=True)
    entries = _archive_entries(data)
    assert entries[0].name in ("./", ".") and entries[0].isdir()
    files = [e for e in entries if e.isfile()]
    assert [f.size == 0 for f in files] == [False, False, False, True]
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        items = [
            item for f in files if f.size for item in orjson.loads(archive.extractfile(f).read())
        ]  # type: ignore[union-attr]
    assert [i["operation_id"] for i in items] == [f"op{n}" for n in range(5)]
    assert all(isinstance(i["response"], str) for i in items)


def test_archive_raw_first_header_is_named_dot_slash() -> None:
    data = batches.build_archive([BatchResult(204, None, "")], per_file=10, include_empty=False)
    import gzip

    raw = gzip.decompress(data)
    assert raw[:3] == b"./\x00"
    assert raw[156:157] == b"5"  # typeflag: directory


@pytest.mark.parametrize(
    "body",
    [
        {"operations": {}},
        {"operations": [{"method": "FETCH", "path": "/lists"}]},
        {"operations": [{"method": "POST", "path": "/lists/x/members", "body": {"a": 1}}]},
        {"operations": [{"method": "GET"}]},
    ],
)
def test_bad_batch_envelopes_are_invalid_resource_with_errors(body: object) -> None:
    with pytest.raises(errors.ApiError) as raised:
        batches.parse_operations(body)
    assert raised.value.title == "Invalid Resource"
    assert raised.value.errors


def test_signed_results_url_expires() -> None:
    secret = b"k"
    sig = batches.sign(secret, "abc", 100)
    assert batches.check_signature(secret, "abc", 100, sig, now=99)
    assert not batches.check_signature(secret, "abc", 100, sig, now=101)
    assert not batches.check_signature(secret, "abd", 100, sig, now=99)


def test_subscribe_payload_has_php_style_keys_and_groupings() -> None:
    sim = Simulator(clock=lambda: 1_627_459_619.0)
    account = sim.create_account()
    audience = sim.create_list(
        account.api_key,
        interest_categories=[
            {
                "title": "Topics",
                "interests": [
                    {"id": "aaaaaaaaaa", "name": "Events"},
                    {"id": "bbbbbbbbbb", "name": "News"},
                ],
            }
        ],
    )
    sim.import_members(
        audience.id,
        [
            {
                "email": "jane@example.org",
                "status": "pending",
                "merge_fields": {"FNAME": "Jane"},
                "interests": {"aaaaaaaaaa": True},
            }
        ],
    )
    member = audience.find_by_email("jane@example.org")
    assert member is not None
    form = dict(
        webhooks.audience_payload(
            MemberEvent("subscribe", "user", audience, member), 1_627_459_619.0
        )
    )
    assert form["type"] == "subscribe"
    assert form["fired_at"] == "2021-07-28 08:06:59"
    assert form["data[email]"] == "jane@example.org"
    assert form["data[merges][FNAME]"] == "Jane"
    assert form["data[merges][INTERESTS]"] == "Events"
    assert form["data[merges][GROUPINGS][0][groups]"] == "Events"
    assert len(form["data[id]"]) == 10
    encoded = webhooks.encode(list(form.items()))
    assert "data%5Bmerges%5D%5BFNAME%5D=Jane" in encoded
    assert dict(parse_qsl(encoded, keep_blank_values=True)) == form
