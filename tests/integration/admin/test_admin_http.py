"""The admin API over HTTP: the token, 400s naming the parameter, OpenAPI, and fuzzing."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
import sqlalchemy as sa
from admin_support import (
    API_KEY,
    LIST_A,
    LIST_B,
    TOKEN,
    Sent,
    TestClient,
    add_row,
    config_text,
    connection_json,
    make_contact,
    make_context,
    make_groups,
    snapshot,
)
from dramatiq.brokers.stub import StubBroker
from fastapi import FastAPI
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from common.limits import LocalConnectionLimiter
from common.mailchimp import MailchimpClient
from common.messages import StartSync
from common.runtime import Runtime
from common.settings import Settings
from common.webhook_urls import AUDIENCE_WEBHOOK_PATH, BATCH_WEBHOOK_PATH
from mcsync.serve import build_app
from services.admin import crm_actions, registry
from services.admin.app import MAX_BODY_BYTES, action_path, create_app, create_router
from services.admin.context import Action, AdminContext
from sim.mailchimp import RunningSimulator, Simulator, run_in_thread

pytestmark = pytest.mark.integration

AUTH = {"authorization": f"Bearer {TOKEN}"}
CRM_PATHS = [action_path(a.name) for a in crm_actions.ACTIONS]
ALL_PATHS = [action_path(name) for name in registry.ACTIONS]
FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture
def sent() -> Sent:
    return Sent()


@pytest.fixture
def groups(clean_tables: sa.Engine) -> dict[str, int]:
    return make_groups(clean_tables, "news", "offers")


@pytest.fixture
def client(clean_tables: sa.Engine, sent: Sent, groups: dict[str, int]) -> Iterator[TestClient]:
    with TestClient(create_app(make_context(clean_tables, sent))) as test_client:
        reply = test_client.post(
            action_path("updateconfig"),
            json={
                "config": config_text(("Org", API_KEY, [connection_json(LIST_A, groups["news"])]))
            },
            headers=AUTH,
        )
        assert reply.status_code == 200, reply.text
        yield test_client


# --- the token --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ALL_PATHS)
@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer ", f"Basic {TOKEN}", f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}"],
)
def test_every_action_refuses_a_request_without_the_right_token(
    client: TestClient, sent: Sent, path: str, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"authorization": authorization}
    reply = client.post(path, json={"contact_id": 1}, headers=headers)
    assert reply.status_code == 401
    assert reply.headers["www-authenticate"] == "Bearer"
    assert reply.json()["error"].startswith("unauthorized")
    assert sent.messages == []


def test_a_token_that_is_not_ascii_is_refused_not_a_crash(client: TestClient) -> None:
    reply = client.post(
        action_path("getstatus"), json={}, headers={"authorization": b"Bearer \xe9\xff"}
    )
    assert reply.status_code == 401


@pytest.mark.parametrize("path", ALL_PATHS)
def test_without_a_configured_token_the_admin_api_refuses_everything(
    clean_tables: sa.Engine, path: str
) -> None:
    with TestClient(create_app(make_context(clean_tables, token=""))) as open_client:
        for headers in ({}, {"authorization": "Bearer "}, {"authorization": "Bearer x"}):
            reply = open_client.post(path, json={}, headers=headers)
            assert reply.status_code == 503
            assert "MCSYNC_ADMIN_TOKEN" in reply.json()["error"]


# --- answers ----------------------------------------------------------------------------------


def test_getstatus_answers_json_with_the_token(client: TestClient) -> None:
    reply = client.post(action_path("getstatus"), json={}, headers=AUTH)
    assert reply.status_code == 200
    assert [c["mailchimp_list_id"] for c in reply.json()["connections"]] == [LIST_A]


def test_an_action_whose_parameters_are_all_optional_takes_an_empty_body(
    client: TestClient,
) -> None:
    assert client.post(action_path("getstatus"), headers=AUTH).status_code == 200


def test_fetchandreconcile_over_http_enqueues_and_answers_what_it_enqueued(
    client: TestClient, sent: Sent, groups: dict[str, int]
) -> None:
    reply = client.post(
        action_path("fetchandreconcile"), json={"id": groups["news"], "max_time": 0}, headers=AUTH
    )
    assert reply.status_code == 200
    assert reply.json()["enqueued"] == [{"mailchimp_list_id": LIST_A, "group_id": groups["news"]}]
    assert sent.messages == [StartSync(list_id=LIST_A, max_time=0)]


def test_includeinsync_over_http_answers_affected(
    client: TestClient, clean_tables: sa.Engine
) -> None:
    contact = make_contact(clean_tables, "Ann", "ann@example.org")
    add_row(clean_tables, LIST_A, "ann@example.org", "subscribed", contact)
    reply = client.post(action_path("includeinsync"), json={"contact_id": [contact]}, headers=AUTH)
    assert (reply.status_code, reply.json()) == (200, {"affected": 1})


def test_cache_get_over_http(client: TestClient, clean_tables: sa.Engine) -> None:
    add_row(clean_tables, LIST_A, "ann@example.org", "subscribed", None)
    reply = client.post(
        "/api/MailchimpsyncCache/get", json={"mailchimp_status": "subscribed"}, headers=AUTH
    )
    assert reply.status_code == 200
    assert reply.json()["count"] == 1
    assert reply.json()["values"][0]["mailchimp_email"] == "ann@example.org"


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        (action_path("includeinsync"), {}, "contact_id"),
        (action_path("includeinsync"), {"contact_id": "ann"}, "contact_id"),
        (action_path("includeinsync"), {"contact_id": 1, "colour": "red"}, "colour"),
        (action_path("fetchandreconcile"), {"stop_on": "readyToNap"}, "stop_on"),
        (action_path("fetchandreconcile"), {"max_time": -5}, "max_time"),
        (action_path("fetchandreconcile"), {"since": "yesterday"}, "since"),
        (action_path("getstatus"), {"batches": "lots"}, "batches"),
        (action_path("updateconfig"), {}, "config"),
        (action_path("updateconfig"), {"config": "{"}, "config"),
        (action_path("updateconfig"), {"config": {"accounts": []}}, "config"),
        ("/api/MailchimpsyncCache/get", {"limit": 100000}, "limit"),
        (action_path("getstatus"), [], "body"),
        (action_path("getstatus"), "batches", "body"),
    ],
)
def test_a_bad_or_missing_parameter_is_a_400_naming_it(
    client: TestClient, sent: Sent, path: str, body: Any, param: str
) -> None:
    reply = client.post(path, json=body, headers=AUTH)
    assert reply.status_code == 400
    assert reply.json()["param"] == param
    assert param in reply.json()["error"] or param == "body"
    assert sent.messages == []


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b"{not json", "application/json"),
        (b"\xff\xfe\x00", "application/json"),
        (b"contact_id=1", "application/x-www-form-urlencoded"),
        (b"[" * 100_000, "application/json"),
        (b"", "application/json"),
    ],
)
def test_a_body_that_is_not_a_json_object_is_a_400(
    client: TestClient, content: bytes, content_type: str
) -> None:
    reply = client.post(
        action_path("includeinsync"),
        content=content,
        headers={**AUTH, "content-type": content_type},
    )
    assert reply.status_code == 400
    assert reply.json()["param"] in {"body", "contact_id"}


def test_a_group_without_a_connection_is_a_404_naming_group_id(client: TestClient) -> None:
    reply = client.post(action_path("fetchandreconcile"), json={"group_id": 999}, headers=AUTH)
    assert (reply.status_code, reply.json()["param"]) == (404, "group_id")


def test_a_huge_body_is_refused_with_413(client: TestClient) -> None:
    body = json.dumps({"config": "x" * (MAX_BODY_BYTES + 1)})
    reply = client.post(
        action_path("updateconfig"),
        content=body,
        headers={**AUTH, "content-type": "application/json"},
    )
    assert reply.status_code == 413


def test_the_openapi_description_lists_every_action_with_its_parameters(
    client: TestClient,
) -> None:
    spec = client.get("/openapi.json").json()
    assert set(ALL_PATHS) <= set(spec["paths"])
    for name, action in registry.ACTIONS.items():
        operation = spec["paths"][action_path(name)]["post"]
        assert operation["security"] == [{"HTTPBearer": []}]
        assert "422" not in operation["responses"]
        schema_name = operation["requestBody"]["content"]["application/json"]["schema"]
        assert schema_name  # a body described by the action's parameter model
        fields = spec["components"]["schemas"][action.params.__name__]["properties"]
        assert set(action.params.model_fields) == set(fields)
    assert client.get("/docs").status_code == 200


# --- mcsync serve: one app ----------------------------------------------------------------


def test_the_served_app_has_the_webhooks_and_the_documented_admin_api(
    clean_tables: sa.Engine,
) -> None:
    runtime = Runtime(
        Settings(admin_token=TOKEN), clean_tables, StubBroker(), LocalConnectionLimiter(10)
    )
    with TestClient(build_app(runtime)) as served:
        assert set(ALL_PATHS) <= set(served.get("/openapi.json").json()["paths"])
        assert served.get("/healthz").status_code == 200
        for webhook in (BATCH_WEBHOOK_PATH, AUDIENCE_WEBHOOK_PATH):
            assert served.get(webhook).status_code == 401  # served; no secret given
        assert served.post(action_path("getstatus"), json={}).status_code == 401
        assert served.post(action_path("getstatus"), json={}, headers=AUTH).status_code == 200
        assert served.get("/", follow_redirects=False).headers["location"] == "/signin"


def test_the_api_docs_load_their_assets_from_the_app_not_a_cdn(clean_tables: sa.Engine) -> None:
    runtime = Runtime(Settings(), clean_tables, StubBroker(), LocalConnectionLimiter(10))
    with TestClient(build_app(runtime)) as served:
        page = served.get("/docs").text
        assets = re.findall(r"""(?:src|href)=['"]([^'"]+)['"]""", page)
        assert assets and all(url.startswith("/") for url in assets), assets
        assert all(served.get(url).status_code == 200 for url in assets)


# --- fuzzing ----------------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


def _params_like(action_name: str) -> st.SearchStrategy[dict[str, Any]]:
    """Objects whose keys are mostly the action's own parameters, with random values."""
    action = registry.ACTIONS[action_name]
    keys = st.sampled_from([*action.params.model_fields, "id", "x"]) | st.text(max_size=6)
    return st.dictionaries(keys, json_values, max_size=4)


@FUZZ
@given(
    path=st.sampled_from(CRM_PATHS),
    content=st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()),
)
def test_random_bodies_never_get_a_5xx(client: TestClient, path: str, content: bytes) -> None:
    reply = client.post(path, content=content, headers={**AUTH, "content-type": "application/json"})
    assert reply.status_code in {200, 400, 404, 409}, reply.text
    assert isinstance(reply.json(), dict)


@FUZZ
@given(data=st.data())
def test_random_parameters_never_get_a_5xx(client: TestClient, data: st.DataObject) -> None:
    action = data.draw(st.sampled_from([a.name for a in crm_actions.ACTIONS]))
    body = data.draw(_params_like(action))
    reply = client.post(action_path(action), json=body, headers=AUTH)
    assert reply.status_code in {200, 400, 404, 409}, reply.text
    if reply.status_code == 400:
        assert reply.json()["param"] is not None


def _configs(groups: dict[str, int]) -> st.SearchStrategy[str]:
    """Configs near the valid shape: right and wrong keys, ids, groups and overrides."""
    interest = st.fixed_dictionaries(
        {
            "interest_id": st.sampled_from(["i1", "i2", "", "bad id", "x" * 40]),
            "group_id": st.sampled_from([*groups.values(), 0, 4242, 2**40]),
        },
        optional={"trust_override": st.sampled_from(["", "Mailchimp", "CiviCRM", "Both"])},
    )
    connection = st.fixed_dictionaries(
        {
            "mailchimp_list_id": st.sampled_from([LIST_A, LIST_B, LIST_A, LIST_B, "", "y" * 40]),
            "subscription_group_id": st.sampled_from([*groups.values(), *groups.values(), 4242]),
        },
        optional={
            "interests": st.lists(interest, max_size=2),
            "data_sync": st.sampled_from([True, False, "yes", None]),
            "colour": st.just("red"),
        },
    )
    account = st.fixed_dictionaries(
        {
            "name": st.sampled_from(["Org", "Org 2", "Org 3", "", "\x00", "N" * 300]),
            "api_key": st.sampled_from([API_KEY, "f" * 32 + "-us9", "nope"]),
        },
        optional={"connections": st.lists(connection, max_size=3)},
    )
    shaped = st.fixed_dictionaries({"accounts": st.lists(account, max_size=2)})
    # Mostly near-valid configs, so that both answers happen often.
    return st.one_of(shaped, shaped, shaped, json_values).map(json.dumps) | st.text(max_size=30)


@FUZZ
@given(data=st.data())
def test_updateconfig_either_applies_the_whole_config_or_changes_nothing(
    client: TestClient, clean_tables: sa.Engine, groups: dict[str, int], data: st.DataObject
) -> None:
    text = data.draw(_configs(groups))
    before = snapshot(clean_tables)
    reply = client.post(action_path("updateconfig"), json={"config": text}, headers=AUTH)
    event(f"answered {reply.status_code}")  # --hypothesis-show-statistics: both kinds happen
    assert reply.status_code in {200, 400}, reply.text
    if reply.status_code == 400:
        assert reply.json()["param"] == "config"
        assert snapshot(clean_tables) == before
    else:
        stored = reply.json()["config"]
        assert stored == json.loads(json.dumps(stored))
        again = client.post(
            action_path("updateconfig"), json={"config": json.dumps(stored)}, headers=AUTH
        )
        assert again.json()["config"] == stored


def test_a_broker_that_cannot_be_reached_is_a_503_not_a_crash(
    clean_tables: sa.Engine, client: TestClient
) -> None:
    def broken(*messages: object) -> None:
        raise ConnectionError("broker down")

    ctx = replace(make_context(clean_tables), send=broken)
    with TestClient(create_app(ctx)) as broken_client:
        reply = broken_client.post(action_path("fetchandreconcile"), json={}, headers=AUTH)
    assert reply.status_code == 503
    assert "broker down" in reply.json()["error"]


class _Value(BaseModel):
    value: int


def _cast(ctx: AdminContext, params: _Value) -> dict[str, Any]:
    with ctx.engine.connect() as conn:
        conn.execute(sa.text("SELECT CAST(:v AS integer)"), {"v": params.value})
    return {}


def test_a_value_the_database_refuses_is_a_400_whatever_the_action(
    clean_tables: sa.Engine,
) -> None:
    actions = {"cast": Action("cast", _Value, _cast, "cast to integer")}
    app = FastAPI()
    app.include_router(create_router(make_context(clean_tables), actions))
    with TestClient(app) as test_client:
        reply = test_client.post(action_path("cast"), json={"value": 2**40}, headers=AUTH)
    assert reply.status_code == 400


@FUZZ
@given(data=st.data())
def test_random_parameters_to_any_action_never_get_an_internal_error(
    clean_tables: sa.Engine, simulator: RunningSimulator, data: st.DataObject
) -> None:
    def mailchimp(api_key: str) -> MailchimpClient:
        return MailchimpClient(api_key, base_url=simulator.api_url, retries=0)

    action = data.draw(st.sampled_from(list(registry.ACTIONS)))
    body = data.draw(_params_like(action))
    with TestClient(create_app(make_context(clean_tables, mailchimp=mailchimp))) as any_client:
        reply = any_client.post(action_path(action), json=body, headers=AUTH)
    assert reply.status_code != 500, reply.text
    assert set(reply.json()) >= ({"error", "param"} if reply.status_code >= 400 else set())


@pytest.fixture(scope="module")
def simulator() -> Iterator[RunningSimulator]:
    with run_in_thread(Simulator()) as running:
        yield running
