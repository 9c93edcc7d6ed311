"""The pure payload parser: form bodies and fields -> events, or an error naming the field."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.webhooks.parse import (
    MAX_BODY_BYTES,
    MAX_FIELDS,
    BatchCompleted,
    PayloadError,
    UrlCheck,
    decode_form,
    parse_batch_webhook,
)

MAILCHIMP_BODY = urlencode(
    [
        ("type", "batch_operation_completed"),
        ("fired_at", "2017-02-10 21:50:06"),
        ("data[id]", "8b2428d747"),
        ("data[status]", "finished"),
        ("data[total_operations]", "4"),
        ("data[finished_operations]", "4"),
        ("data[errored_operations]", "0"),
        ("data[submitted_at]", "2017-02-10T21:48:21+00:00"),
        ("data[completed_at]", "2017-02-10T21:50:06+00:00"),
        ("data[response_body_url]", "https://mailchimp-api-batch.s3.amazonaws.com/x.tar.gz?a=b"),
    ]
).encode()


def _error(fields: dict[str, str]) -> PayloadError:
    with pytest.raises(PayloadError) as caught:
        parse_batch_webhook(fields)
    return caught.value


def test_mailchimps_documented_batch_body_parses_to_batch_completed() -> None:
    assert parse_batch_webhook(decode_form(MAILCHIMP_BODY)) == BatchCompleted("8b2428d747")


def test_php_style_bracket_keys_are_kept_as_flat_keys() -> None:
    fields = decode_form(b"type=x&data%5Bid%5D=1&data[merges][FNAME]=Jo+Ann")
    assert fields == {"type": "x", "data[id]": "1", "data[merges][FNAME]": "Jo Ann"}


def test_no_fields_is_mailchimp_checking_the_url() -> None:
    assert parse_batch_webhook({}) == UrlCheck()
    assert parse_batch_webhook(decode_form(b"")) == UrlCheck()


def test_uppercase_hex_batch_id_is_accepted_as_given() -> None:
    fields = {"type": "batch_operation_completed", "data[id]": "8B2428D747"}
    assert parse_batch_webhook(fields) == BatchCompleted("8B2428D747")


def test_missing_type_names_the_type_field() -> None:
    error = _error({"data[id]": "8b2428d747"})
    assert error.field == "type"
    assert "missing" in str(error)


def test_another_event_type_names_the_type_field_and_what_was_expected() -> None:
    error = _error({"type": "subscribe", "data[id]": "8b2428d747"})
    assert error.field == "type"
    assert "batch_operation_completed" in str(error)


def test_missing_batch_id_names_data_id() -> None:
    assert _error({"type": "batch_operation_completed"}).field == "data[id]"


def test_blank_batch_id_names_data_id() -> None:
    assert _error({"type": "batch_operation_completed", "data[id]": "  "}).field == "data[id]"


@pytest.mark.parametrize(
    "batch_id",
    ["8b2428d74", "8b2428d7470", "8b2428d74g", "../../etc/x", "\uff18b2428d747", "8b2428d747\n"],
)
def test_a_batch_id_that_is_not_ten_hex_digits_names_data_id(batch_id: str) -> None:
    error = _error({"type": "batch_operation_completed", "data[id]": batch_id})
    assert error.field == "data[id]"
    assert "10 hex digits" in str(error)


def test_a_repeated_key_is_ambiguous_and_named() -> None:
    with pytest.raises(PayloadError) as caught:
        decode_form(b"type=batch_operation_completed&data[id]=8b2428d747&data[id]=0000000000")
    assert caught.value.field == "data[id]"


def test_a_body_over_the_limit_names_the_body() -> None:
    with pytest.raises(PayloadError) as caught:
        decode_form(b"a=" + b"x" * MAX_BODY_BYTES)
    assert caught.value.field == "body"


def test_too_many_fields_names_the_body() -> None:
    body = "&".join(f"f{n}=1" for n in range(MAX_FIELDS + 1)).encode()
    with pytest.raises(PayloadError) as caught:
        decode_form(body)
    assert caught.value.field == "body"


@pytest.mark.parametrize("body", [b"\xff\xfe\x00", b"type=%FF%FE"])
def test_a_body_that_is_not_utf8_names_the_body(body: bytes) -> None:
    with pytest.raises(PayloadError) as caught:
        decode_form(body)
    assert caught.value.field == "body"


@given(st.binary(max_size=2000))
def test_any_bytes_decode_to_fields_or_a_payload_error(body: bytes) -> None:
    try:
        fields = decode_form(body)
    except PayloadError:
        return
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in fields.items())


@given(st.dictionaries(st.text(max_size=20), st.text(max_size=40), max_size=8))
def test_any_fields_parse_to_one_event_or_a_payload_error_naming_a_field(
    fields: dict[str, str],
) -> None:
    try:
        event = parse_batch_webhook(fields)
    except PayloadError as error:
        assert error.field in {"type", "data[id]"}
        return
    assert isinstance(event, UrlCheck | BatchCompleted)
