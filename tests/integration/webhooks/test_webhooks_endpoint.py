"""The batch webhook endpoint over a real Postgres: secrets, URL checks, payloads, enqueueing."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from urllib.parse import urlencode

import pytest
import sqlalchemy as sa
from dramatiq.brokers.stub import StubBroker
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from webhooks_support import FORM, SECRET, TestClient, enqueued, store_secret, stub_broker

from common.broker import send
from common.messages import ProcessBatch
from services.webhooks.app import BATCH_WEBHOOK_PATH, Deps, create_app
from services.webhooks.parse import MAX_BODY_BYTES

pytestmark = pytest.mark.integration

URL = f"{BATCH_WEBHOOK_PATH}?secret={SECRET}"
COMPLETED = {"type": "batch_operation_completed", "data[id]": "8b2428d747"}


@pytest.fixture
def broker() -> StubBroker:
    return stub_broker()


@pytest.fixture
def client(clean_tables: sa.Engine, broker: StubBroker) -> Iterator[TestClient]:
    store_secret(clean_tables)
    app = create_app(Deps(engine=clean_tables, send=partial(send, broker)))
    with TestClient(app) as test_client:
        yield test_client


def _post(client: TestClient, body: str | bytes, url: str = URL) -> tuple[int, dict[str, object]]:
    reply = client.post(url, content=body, headers=FORM)
    return reply.status_code, reply.json()


def test_healthz_answers_ok(client: TestClient) -> None:
    reply = client.get("/healthz")
    assert (reply.status_code, reply.json()) == (200, {"ok": True})


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_request_without_a_secret_is_unauthorized(client: TestClient, method: str) -> None:
    reply = client.request(method, BATCH_WEBHOOK_PATH, content=urlencode(COMPLETED), headers=FORM)
    assert reply.status_code == 401
    assert reply.json() == {"ok": False, "error": "unauthorized"}


@pytest.mark.parametrize("secret", ["", "wrong", SECRET[:-1], SECRET + "x", "é🙂", "%00"])
def test_a_wrong_secret_is_unauthorized_and_enqueues_nothing(
    client: TestClient, broker: StubBroker, secret: str
) -> None:
    status, body = _post(client, urlencode(COMPLETED), f"{BATCH_WEBHOOK_PATH}?secret={secret}")
    assert (status, body) == (401, {"ok": False, "error": "unauthorized"})
    assert enqueued(broker) == []


def test_the_secret_of_any_account_is_accepted(client: TestClient, clean_tables: sa.Engine) -> None:
    store_secret(clean_tables, "another-secret", api_key="z" * 32)
    assert client.get(f"{BATCH_WEBHOOK_PATH}?secret=another-secret").status_code == 200


def test_a_get_with_the_right_secret_is_mailchimp_checking_the_url(
    client: TestClient, broker: StubBroker
) -> None:
    reply = client.get(URL)
    assert (reply.status_code, reply.json()) == (200, {"ok": True})
    assert enqueued(broker) == []


@pytest.mark.parametrize("body", ["", "&&", "  "])
def test_an_empty_post_is_mailchimp_checking_the_url(
    client: TestClient, broker: StubBroker, body: str
) -> None:
    assert _post(client, body) == (200, {"ok": True})
    assert enqueued(broker) == []


def test_an_empty_post_without_a_content_type_is_a_url_check(client: TestClient) -> None:
    assert client.post(URL).status_code == 200


def test_a_finished_batch_enqueues_exactly_one_process_batch(
    client: TestClient, broker: StubBroker
) -> None:
    body = urlencode(
        {
            **COMPLETED,
            "fired_at": "2017-02-10 21:50:06",
            "data[status]": "finished",
            "data[response_body_url]": "https://evil.example/steal",
        }
    )
    assert _post(client, body) == (200, {"ok": True})
    assert enqueued(broker) == [ProcessBatch(mailchimp_batch_id="8b2428d747")]


def test_a_batch_we_never_posted_is_still_answered_200_and_left_to_the_submitter(
    client: TestClient, broker: StubBroker
) -> None:
    body = urlencode({**COMPLETED, "data[id]": "0123456789"})
    assert _post(client, body)[0] == 200
    assert enqueued(broker) == [ProcessBatch(mailchimp_batch_id="0123456789")]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"type": "batch_operation_completed"}, "data[id]"),
        ({"type": "batch_operation_completed", "data[id]": ""}, "data[id]"),
        ({"type": "batch_operation_completed", "data[id]": "8b2428d74z"}, "data[id]"),
        ({"type": "batch_operation_completed", "data[id]": "8b2428d7"}, "data[id]"),
        ({"type": "batch_operation_completed", "data[id]": "8b2428d747; DROP"}, "data[id]"),
        ({"type": "subscribe", "data[id]": "8b2428d747"}, "type"),
        ({"data[id]": "8b2428d747"}, "type"),
        ({"fired_at": "2017-02-10 21:50:06"}, "type"),
    ],
)
def test_a_malformed_payload_is_a_400_naming_the_field(
    client: TestClient, broker: StubBroker, fields: dict[str, str], field: str
) -> None:
    status, body = _post(client, urlencode(fields))
    assert status == 400
    assert body["field"] == field
    assert field in str(body["error"])
    assert enqueued(broker) == []


@pytest.mark.parametrize(
    "body",
    [b"\xff\xfe\xfd", b"type=%FF%FE", b"{not a form}", b"\x00\x00\x00", b"data[id=&type"],
)
def test_a_garbage_body_is_a_400_never_a_5xx(client: TestClient, body: bytes) -> None:
    status, answer = _post(client, body)
    assert status == 400
    assert answer["field"] in {"body", "type"}


def test_a_repeated_batch_id_is_a_400_naming_it(client: TestClient) -> None:
    body = "type=batch_operation_completed&data[id]=8b2428d747&data[id]=0123456789"
    assert _post(client, body) == (
        400,
        {"ok": False, "error": "data[id]: given more than once", "field": "data[id]"},
    )


def test_a_json_body_is_a_400_naming_the_content_type(client: TestClient) -> None:
    reply = client.post(URL, json=COMPLETED)
    assert reply.status_code == 400
    assert reply.json()["field"] == "Content-Type"


def test_a_huge_body_is_a_400_naming_the_body(client: TestClient, broker: StubBroker) -> None:
    body = urlencode({**COMPLETED, "padding": "x" * (4 * MAX_BODY_BYTES)})
    status, answer = _post(client, body)
    assert (status, answer["field"]) == (400, "body")
    assert enqueued(broker) == []


def test_a_huge_streamed_body_without_a_length_is_cut_off_with_a_400(client: TestClient) -> None:
    chunks = (b"x" * 8192 for _ in range(4 * MAX_BODY_BYTES // 8192))
    reply = client.post(URL, content=chunks, headers=FORM)
    assert (reply.status_code, reply.json()["field"]) == (400, "body")


def test_another_method_is_refused_with_a_4xx(client: TestClient) -> None:
    assert client.put(URL, content=urlencode(COMPLETED), headers=FORM).status_code == 405


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    fields=st.lists(
        st.tuples(
            st.one_of(st.sampled_from(["type", "data[id]", "data[status]"]), st.text()),
            st.one_of(
                st.sampled_from(["batch_operation_completed", "8b2428d747", ""]),
                st.text(),
            ),
        ),
        max_size=8,
    ),
    method=st.sampled_from(["GET", "POST"]),
)
def test_random_form_fields_never_get_a_5xx(
    client: TestClient, fields: list[tuple[str, str]], method: str
) -> None:
    reply = client.request(method, URL, content=urlencode(fields), headers=FORM)
    assert reply.status_code in {200, 400}
    assert isinstance(reply.json()["ok"], bool)


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(body=st.binary(max_size=3000), content_type=st.sampled_from([FORM, {}, {"x": "y"}]))
def test_random_bytes_never_get_a_5xx(
    client: TestClient, body: bytes, content_type: dict[str, str]
) -> None:
    assert client.post(URL, content=body, headers=content_type).status_code in {200, 400}
