"""The audience webhook parser: Mailchimp's documented payloads -> AudienceEvent, or a 400."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.audience_events import AudienceEvent, AudienceEventType
from services.webhooks.parse import (
    AUDIENCE_EVENTS,
    MAX_EMAIL,
    MAX_TEXT,
    Ignored,
    PayloadError,
    UrlCheck,
    decode_form,
    parse_audience_webhook,
)

# The reference payloads (mailchimp-api.md §6.3), as Mailchimp encodes them.
SUBSCRIBE = [
    ("type", "subscribe"),
    ("fired_at", "2021-07-28 08:06:59"),
    ("data[id]", "e2ff089583"),
    ("data[list_id]", "ec4689c266"),
    ("data[email]", "jane.doe@example.com"),
    ("data[email_type]", "html"),
    ("data[ip_opt]", "115.187.35.152"),
    ("data[ip_signup]", "115.187.35.152"),
    ("data[web_id]", "161912900"),
    ("data[merges][EMAIL]", "jane.doe@example.com"),
    ("data[merges][FNAME]", "Jane"),
    ("data[merges][LNAME]", "Doe"),
    ("data[merges][ADDRESS]", ""),
    ("data[merges][BIRTHDAY]", "03/12"),
    ("data[merges][INTERESTS]", "Events,News"),
    ("data[merges][GROUPINGS][0][id]", "78830"),
    ("data[merges][GROUPINGS][0][unique_id]", "8c7db2a675"),
    ("data[merges][GROUPINGS][0][name]", "Topics"),
    ("data[merges][GROUPINGS][0][groups]", "Events,News"),
]
UNSUBSCRIBE = [
    ("type", "unsubscribe"),
    ("fired_at", "2014-10-22 13:10:40"),
    ("data[action]", "unsub"),
    ("data[reason]", "manual"),
    ("data[id]", "94826aa750"),
    ("data[list_id]", "f1243a3b12"),
    ("data[email]", "jane.doe@example.com"),
    ("data[email_type]", "html"),
    ("data[ip_opt]", "82.225.169.220"),
    ("data[web_id]", "203740265"),
    ("data[campaign_id]", "cb398d21d2"),
    ("data[merges][EMAIL]", "jane.doe@example.com"),
    ("data[merges][FNAME]", "Jane"),
    ("data[merges][LNAME]", "Doe"),
]
PROFILE = [
    ("type", "profile"),
    ("fired_at", "2021-07-28 09:00:00"),
    ("data[id]", "e2ff089583"),
    ("data[list_id]", "ec4689c266"),
    ("data[email]", "jane.doe@example.com"),
    ("data[email_type]", "html"),
    ("data[ip_opt]", "115.187.35.152"),
    ("data[web_id]", "161912900"),
    ("data[merges][EMAIL]", "jane.doe@example.com"),
    ("data[merges][FNAME]", "Janet"),
    ("data[merges][LNAME]", "Doe-Smith"),
]
UPEMAIL = [
    ("type", "upemail"),
    ("fired_at", "2017-04-23 08:08:31"),
    ("data[list_id]", "93ab23d636"),
    ("data[new_id]", "50696b797a"),
    ("data[new_email]", "jane.new@example.com"),
    ("data[old_email]", "jane.doe@example.com"),
]
CLEANED = [
    ("type", "cleaned"),
    ("fired_at", "2009-03-26 22:01:00"),
    ("data[list_id]", "a6b5da1054"),
    ("data[campaign_id]", "4fjk2ma9xd"),
    ("data[reason]", "hard"),
    ("data[email]", "jane.doe@example.com"),
]
CAMPAIGN = [
    ("type", "campaign"),
    ("fired_at", "2009-03-26 21:31:21"),
    ("data[id]", "5aa2102003"),
    ("data[list_id]", "a6b5da1054"),
    ("data[subject]", "Monthly news"),
    ("data[status]", "sent"),
    ("data[reason]", ""),
]


def _parse(form: list[tuple[str, str]]) -> object:
    return parse_audience_webhook(decode_form(urlencode(form).encode()))


def _error(fields: dict[str, str]) -> PayloadError:
    with pytest.raises(PayloadError) as caught:
        parse_audience_webhook(fields)
    return caught.value


def _without(form: list[tuple[str, str]], *keys: str) -> dict[str, str]:
    return {k: v for k, v in form if k not in keys}


def test_subscribe_carries_the_member_and_the_names_from_the_merges() -> None:
    assert _parse(SUBSCRIBE) == AudienceEvent(
        type=AudienceEventType.SUBSCRIBE,
        list_id="ec4689c266",
        email="jane.doe@example.com",
        fired_at=datetime(2021, 7, 28, 8, 6, 59, tzinfo=UTC),
        first_name="Jane",
        last_name="Doe",
    )


def test_unsubscribe_carries_the_action_and_the_reason() -> None:
    assert _parse(UNSUBSCRIBE) == AudienceEvent(
        type=AudienceEventType.UNSUBSCRIBE,
        list_id="f1243a3b12",
        email="jane.doe@example.com",
        fired_at=datetime(2014, 10, 22, 13, 10, 40, tzinfo=UTC),
        first_name="Jane",
        last_name="Doe",
        reason="manual",
        action="unsub",
    )


def test_profile_carries_the_new_names() -> None:
    assert _parse(PROFILE) == AudienceEvent(
        type=AudienceEventType.PROFILE,
        list_id="ec4689c266",
        email="jane.doe@example.com",
        fired_at=datetime(2021, 7, 28, 9, 0, 0, tzinfo=UTC),
        first_name="Janet",
        last_name="Doe-Smith",
    )


def test_upemail_makes_the_new_address_the_email_and_keeps_the_old_one() -> None:
    assert _parse(UPEMAIL) == AudienceEvent(
        type=AudienceEventType.UPEMAIL,
        list_id="93ab23d636",
        email="jane.new@example.com",
        old_email="jane.doe@example.com",
        fired_at=datetime(2017, 4, 23, 8, 8, 31, tzinfo=UTC),
    )


def test_cleaned_carries_the_reason_and_no_names() -> None:
    assert _parse(CLEANED) == AudienceEvent(
        type=AudienceEventType.CLEANED,
        list_id="a6b5da1054",
        email="jane.doe@example.com",
        fired_at=datetime(2009, 3, 26, 22, 1, 0, tzinfo=UTC),
        reason="hard",
    )


def test_campaign_is_acknowledged_and_ignored() -> None:
    assert _parse(CAMPAIGN) == Ignored(AudienceEventType.CAMPAIGN)
    assert parse_audience_webhook({"type": "campaign"}) == Ignored(AudienceEventType.CAMPAIGN)


def test_every_audience_event_type_has_a_parser() -> None:
    assert set(AUDIENCE_EVENTS) == {t.value for t in AudienceEventType}


def test_no_fields_is_mailchimp_checking_the_url() -> None:
    assert parse_audience_webhook({}) == UrlCheck()


@pytest.mark.parametrize("form", [SUBSCRIBE, UNSUBSCRIBE, PROFILE, CLEANED, UPEMAIL])
def test_every_stored_event_survives_the_inbox_json_round_trip(
    form: list[tuple[str, str]],
) -> None:
    event = _parse(form)
    assert isinstance(event, AudienceEvent)
    assert AudienceEvent.from_json(event.to_json()) == event


def test_names_are_none_without_merges_and_blank_when_mailchimp_sends_them_blank() -> None:
    bare = _without(SUBSCRIBE, "data[merges][FNAME]", "data[merges][LNAME]")
    event = parse_audience_webhook(bare)
    assert isinstance(event, AudienceEvent)
    assert (event.first_name, event.last_name) == (None, None)
    blank = parse_audience_webhook({**dict(SUBSCRIBE), "data[merges][FNAME]": ""})
    assert isinstance(blank, AudienceEvent)
    assert (blank.first_name, blank.last_name) == ("", "Doe")


def test_a_missing_fired_at_is_none() -> None:
    event = parse_audience_webhook(_without(CLEANED, "fired_at"))
    assert isinstance(event, AudienceEvent)
    assert event.fired_at is None


@pytest.mark.parametrize(
    ("form", "field"),
    [
        (SUBSCRIBE, "data[email]"),
        (SUBSCRIBE, "data[list_id]"),
        (UNSUBSCRIBE, "data[email]"),
        (UNSUBSCRIBE, "data[list_id]"),
        (PROFILE, "data[email]"),
        (PROFILE, "data[list_id]"),
        (CLEANED, "data[email]"),
        (CLEANED, "data[list_id]"),
        (UPEMAIL, "data[new_email]"),
        (UPEMAIL, "data[old_email]"),
        (UPEMAIL, "data[list_id]"),
        (SUBSCRIBE, "type"),
    ],
)
def test_a_missing_required_field_is_named(form: list[tuple[str, str]], field: str) -> None:
    error = _error(_without(form, field))
    assert error.field == field
    assert "missing" in str(error)
    assert _error({**dict(form), field: "  "}).field == field


@pytest.mark.parametrize(
    "value",
    [
        "2021-07-28T08:06:59",
        "2021-7-28 8:06:59",
        "2021-13-28 08:06:59",
        "yesterday",
        "\uff12021-07-28 08:06:59",
    ],
)
def test_a_malformed_fired_at_is_named(value: str) -> None:
    assert _error({**dict(SUBSCRIBE), "fired_at": value}).field == "fired_at"


@pytest.mark.parametrize(
    "value",
    [
        "jane",
        "jane@@example.com",
        "a@b@c",
        "@example.com",
        "jane@",
        "ja ne@example.com",
        "jane@exa\x00mple.com",
        "x" * MAX_EMAIL + "@example.com",
    ],
)
def test_something_that_cannot_be_an_email_is_named(value: str) -> None:
    assert _error({**dict(SUBSCRIBE), "data[email]": value}).field == "data[email]"
    assert _error({**dict(UPEMAIL), "data[old_email]": value}).field == "data[old_email]"


def test_an_email_is_accepted_loosely_and_trimmed() -> None:
    event = parse_audience_webhook({**dict(SUBSCRIBE), "data[email]": " Zoë+tag@exämple.museum "})
    assert isinstance(event, AudienceEvent)
    assert event.email == "Zoë+tag@exämple.museum"


@pytest.mark.parametrize("value", ["ec4689c26-", "x" * 33, "ec46 89c266", "../../x", "é"])
def test_a_list_id_that_is_not_short_and_alphanumeric_is_named(value: str) -> None:
    assert _error({**dict(SUBSCRIBE), "data[list_id]": value}).field == "data[list_id]"


@pytest.mark.parametrize(
    "field", ["data[merges][FNAME]", "data[merges][LNAME]", "data[reason]", "data[action]"]
)
def test_an_overlong_or_nul_text_value_is_named(field: str) -> None:
    assert _error({**dict(UNSUBSCRIBE), field: "x" * (MAX_TEXT + 1)}).field == field
    assert _error({**dict(UNSUBSCRIBE), field: "a\x00b"}).field == field


def test_an_unknown_type_is_named_with_what_was_expected() -> None:
    error = _error({**dict(SUBSCRIBE), "type": "batch_operation_completed"})
    assert error.field == "type"
    assert "subscribe" in str(error)


@given(st.dictionaries(st.sampled_from([k for k, _ in SUBSCRIBE + UPEMAIL]), st.text()))
def test_any_fields_give_an_event_or_a_payload_error_never_another_exception(
    fields: dict[str, str],
) -> None:
    try:
        event = parse_audience_webhook(fields)
    except PayloadError as error:
        assert error.field
        return
    if isinstance(event, AudienceEvent):
        stored = [event.list_id, event.email, event.old_email, event.reason, event.action]
        assert all("\x00" not in value for value in stored)
        assert AudienceEvent.from_json(event.to_json()) == event
