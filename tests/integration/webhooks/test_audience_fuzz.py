"""Both webhook routes fuzzed: random bodies, keys, values, content types and secrets.

Never a 5xx, never an exception; and the inbox gains a row exactly when the request was a
valid member event, with the right secret, for a synced audience of that secret's account:
then exactly that event, else nothing (no partial writes).
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlencode

import pytest
import sqlalchemy as sa
from audience_support import LIST_ID, SECRET, Recorder, inbox_rows, synced_audience
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from webhooks_support import TestClient

from common.audience_events import AudienceEvent, AudienceEventType
from services.webhooks.app import AUDIENCE_WEBHOOK_PATH, BATCH_WEBHOOK_PATH, Deps, create_app
from services.webhooks.parse import (
    MAX_BODY_BYTES,
    PayloadError,
    decode_form,
    parse_audience_webhook,
)

pytestmark = pytest.mark.integration

OTHER_LIST, OTHER_SECRET = "b0b0b0b0b0", "secret-of-another-account"
AUDIENCE_OF_SECRET = {SECRET: LIST_ID, OTHER_SECRET: OTHER_LIST}
FORM_TYPE = "application/x-www-form-urlencoded"

text = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=40)
huge = st.builds(lambda c, n: c * n, st.sampled_from("xé\x00🙂"), st.integers(200, 400))
values = st.one_of(text, huge, st.sampled_from(["", " ", "\x00", "a@b", "%00"]))
KNOWN_KEYS = [
    "type", "fired_at", "data[id]", "data[list_id]", "data[email]", "data[new_email]",
    "data[old_email]", "data[merges][FNAME]", "data[merges][LNAME]", "data[reason]",
    "data[action]", "data[merges][GROUPINGS][0][groups]",
]  # fmt: skip
keys = st.one_of(
    st.sampled_from(KNOWN_KEYS),
    st.builds(lambda inner: f"data[{inner}]", text),
    st.builds(lambda a, b: f"data[{a}][{b}", text, text),
    text,
)
known_values = {
    "type": st.sampled_from([*AudienceEventType, "batch_operation_completed"]) | text,
    "fired_at": st.sampled_from(["2021-07-28 08:06:59", "2021-02-30 00:00:00"]) | values,
    "data[id]": st.sampled_from(["8b2428d747"]) | values,
    "data[list_id]": st.sampled_from([LIST_ID, OTHER_LIST, "0000000000"]) | values,
    "data[email]": st.sampled_from(["jane@example.com", "Zoë@exämple.org"]) | values,
    "data[new_email]": st.sampled_from(["new@example.com"]) | values,
    "data[old_email]": st.sampled_from(["old@example.com"]) | values,
}


@st.composite
def forms(draw: st.DrawFn) -> bytes:
    """Mostly plausible Mailchimp forms, with random keys, values and repeats mixed in."""
    pairs = [
        (k, draw(known_values.get(k, values))) for k in draw(st.sets(st.sampled_from(KNOWN_KEYS)))
    ]
    pairs += draw(st.lists(st.tuples(keys, values), max_size=4))
    if pairs and draw(st.booleans()):
        pairs.append(draw(st.sampled_from(pairs)))  # a repeated key
    return urlencode(draw(st.permutations(pairs))).encode()


@st.composite
def events(draw: st.DrawFn) -> bytes:
    """A member event most likely valid, some fields replaced or added at random."""
    kind = draw(st.sampled_from(["subscribe", "unsubscribe", "profile", "cleaned", "upemail"]))
    fields = {
        "type": kind,
        "fired_at": "2021-07-28 08:06:59",
        "data[list_id]": draw(st.sampled_from([LIST_ID, OTHER_LIST, "0000000000"])),
        "data[email]": "jane@example.com",
        "data[new_email]": "new@example.com",
        "data[old_email]": "old@example.com",
        "data[merges][FNAME]": draw(text),
    }
    fields |= draw(st.dictionaries(keys, values, max_size=2))
    return urlencode(fields).encode()


bodies = st.one_of(
    events(),
    forms(),
    st.binary(max_size=600),
    st.just(b"a=" + b"x" * MAX_BODY_BYTES),
    st.sampled_from([b"", b"&&", b"type=subscribe&data[list_id]=ec4689c266&data[email]=%FF"]),
)
content_types = st.one_of(
    st.just(FORM_TYPE),
    st.sampled_from([f"{FORM_TYPE}; charset=utf-8", "application/json", None]),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=30),
)
secrets = st.one_of(
    st.just(SECRET), st.just(OTHER_SECRET), st.sampled_from(["", SECRET + "x", None]), text
)


@pytest.fixture
def client(clean_tables: sa.Engine) -> Iterator[TestClient]:
    synced_audience(clean_tables)
    synced_audience(clean_tables, OTHER_LIST, OTHER_SECRET, api_key="b" * 32, group_id=2)
    app = create_app(Deps(engine=clean_tables, send=Recorder()))
    with TestClient(app) as test_client:
        yield test_client


Request = tuple[str, str, str | None, bytes, str | None]
any_request = st.tuples(
    st.sampled_from([AUDIENCE_WEBHOOK_PATH, BATCH_WEBHOOK_PATH]),
    st.sampled_from(["POST", "POST", "GET", "PUT"]),
    secrets,
    bodies,
    content_types,
)
# Half the examples look like Mailchimp's, so that storing is exercised as much as refusing.
plausible_request = st.tuples(
    st.just(AUDIENCE_WEBHOOK_PATH),
    st.just("POST"),
    st.sampled_from([SECRET, OTHER_SECRET]),
    events(),
    st.just(FORM_TYPE),
)


@settings(
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(request=st.one_of(any_request, plausible_request))
def test_random_requests_never_get_a_5xx_and_store_only_valid_events(
    client: TestClient, clean_tables: sa.Engine, request: Request
) -> None:
    path, method, secret, body, content_type = request
    before = len(inbox_rows(clean_tables))
    query = "" if secret is None else "?" + urlencode({"secret": secret})
    headers = {} if content_type is None else {"content-type": content_type}
    reply = client.request(method, path + query, content=body, headers=headers)
    assert reply.status_code < 500
    assert isinstance(reply.json(), dict)
    added = [row.event for row in inbox_rows(clean_tables)[before:]]
    expected = _stored_for(*request)
    assert added == ([] if expected is None else [expected])
    if expected is not None:
        assert reply.status_code == 200
    event(f"{reply.status_code}, stored" if added else f"{reply.status_code}, nothing stored")


def _stored_for(
    path: str, method: str, secret: str | None, body: bytes, content_type: str | None
) -> AudienceEvent | None:
    """The event a request should add to the inbox, by the rules, from the pure parser."""
    if path != AUDIENCE_WEBHOOK_PATH or method != "POST" or secret not in AUDIENCE_OF_SECRET:
        return None
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if body.strip() and media_type not in ("", FORM_TYPE):
        return None
    try:
        event = parse_audience_webhook(decode_form(body))
    except PayloadError:
        return None
    if isinstance(event, AudienceEvent) and event.list_id == AUDIENCE_OF_SECRET[secret]:
        return event
    return None


def test_a_huge_value_in_every_field_is_refused_whole(
    client: TestClient, clean_tables: sa.Engine
) -> None:
    fields = {key: "x" * 300 for key in KNOWN_KEYS} | {"type": "subscribe"}
    reply = client.post(
        f"{AUDIENCE_WEBHOOK_PATH}?secret={SECRET}",
        content=urlencode(fields),
        headers={"content-type": FORM_TYPE},
    )
    assert reply.status_code == 400
    assert inbox_rows(clean_tables) == []


@pytest.mark.parametrize(
    "query",
    [
        "?secret=%FF%FE",
        "?secret=%00",
        "?secret",
        f"?secret={SECRET}%00",
        f"?secret[]={SECRET}",
        f"?SECRET={SECRET}",
        f"?secret={SECRET}&secret=wrong",
    ],
)
@pytest.mark.parametrize("path", [AUDIENCE_WEBHOOK_PATH, BATCH_WEBHOOK_PATH])
def test_a_malformed_query_is_unauthorized_and_stores_nothing(
    client: TestClient, clean_tables: sa.Engine, path: str, query: str
) -> None:
    body = urlencode({"type": "subscribe", "data[list_id]": LIST_ID, "data[email]": "a@b.c"})
    reply = client.post(path + query, content=body, headers={"content-type": FORM_TYPE})
    assert reply.status_code == 401
    assert inbox_rows(clean_tables) == []
