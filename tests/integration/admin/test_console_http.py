"""The console over HTTP: nothing without a session, CSRF on every form, forms that go through
the admin actions (a refusal named at its field, nothing written), and fuzzing."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from urllib.parse import quote, unquote

import pytest
import sqlalchemy as sa
from admin_support import (
    API_KEY,
    LIST_A,
    TOKEN,
    Sent,
    TestClient,
    add_row,
    make_contact,
    make_context,
    make_groups,
    snapshot,
)
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.db import config
from common.mailchimp import MailchimpClient
from common.messages import StartSync
from services.admin.config_shape import config_json
from services.admin.console import app as console
from services.admin.console import config_edit, session
from services.admin.console.core import FLASH_COOKIE
from sim.mailchimp import RunningSimulator, Simulator, run_in_thread

pytestmark = pytest.mark.integration

CONNECTION = f"/config/accounts/0/audiences/{LIST_A}"
PAGES = [
    "/",
    "/cache",
    "/cache?sync_status=fail",
    "/cache/1",
    "/abort/1",
    "/config",
    "/config/accounts/0",
    "/config/accounts/0/remove",
    CONNECTION,
    CONNECTION + "/remove",
]
FORMS = [
    "/sync",
    "/abort/1",
    "/cache/include",
    "/signout",
    "/config",
    "/config/accounts/0/remove",
    CONNECTION,
    CONNECTION + "/remove",
    "/config/accounts/0/webhooks",
]
FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def console_app(
    engine: sa.Engine, sent: Sent, token: str = TOKEN, mailchimp_url: str = ""
) -> FastAPI:
    """The console alone, its Mailchimp the simulator at ``mailchimp_url``."""
    app = FastAPI()
    ctx = make_context(engine, sent, token=token)
    if mailchimp_url:
        ctx = replace(ctx, mailchimp=lambda key: MailchimpClient(key, base_url=mailchimp_url))
    console.mount(app, ctx)
    return app


@pytest.fixture(scope="module")
def simulator() -> Iterator[RunningSimulator]:
    with run_in_thread(Simulator()) as running:
        running.simulator.create_account("Org", api_key=API_KEY)
        yield running


@pytest.fixture
def sent() -> Sent:
    return Sent()


@pytest.fixture
def group(clean_tables: sa.Engine) -> int:
    news = make_groups(clean_tables, "news")["news"]
    with clean_tables.begin() as conn:
        account = config.add_account(conn, "Org", API_KEY)
        config.add_connection(conn, account, LIST_A, news, {})
    return news


@pytest.fixture
def anonymous(
    clean_tables: sa.Engine, sent: Sent, group: int, simulator: RunningSimulator
) -> Iterator[TestClient]:
    app = console_app(clean_tables, sent, mailchimp_url=simulator.api_url)
    with TestClient(app, follow_redirects=False) as client:
        yield client


@pytest.fixture
def signed_in(anonymous: TestClient) -> TestClient:
    reply = anonymous.post("/signin", data={"token": TOKEN, "next": "/"})
    assert reply.status_code == 303
    return anonymous


def csrf_of(client: TestClient) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', client.get("/").text)
    assert found is not None
    return found.group(1)


def fingerprint_of(engine: sa.Engine) -> str:
    """The fingerprint of the stored configuration, as the config screen's forms carry it."""
    with engine.connect() as conn:
        return config_edit.fingerprint(config_json(config.read_config(conn)))


def flash(reply: object) -> str:
    return unquote(reply.cookies.get(FLASH_COOKIE, ""))  # type: ignore[attr-defined]


# --- signing in -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PAGES)
def test_every_page_sends_a_signed_out_visitor_to_sign_in_and_back(
    anonymous: TestClient, path: str
) -> None:
    reply = anonymous.get(path)
    assert reply.status_code == 303
    assert reply.headers["location"].startswith("/signin")
    assert "csrf" not in reply.text


@pytest.mark.parametrize("path", FORMS)
def test_no_form_is_taken_without_a_session(
    anonymous: TestClient, clean_tables: sa.Engine, sent: Sent, path: str
) -> None:
    before = snapshot(clean_tables)
    reply = anonymous.post(path, data={"group_id": "1", "contact_id": "1"})
    assert reply.status_code == 303 and reply.headers["location"].startswith("/signin")
    assert snapshot(clean_tables) == before and sent.messages == []


def test_the_live_status_answers_401_without_a_session(anonymous: TestClient) -> None:
    assert anonymous.get("/status/live").status_code == 401


def test_signing_in_sets_an_http_only_same_site_cookie_and_goes_where_asked(
    anonymous: TestClient,
) -> None:
    reply = anonymous.post("/signin", data={"token": TOKEN, "next": "/cache?sync_status=fail"})
    assert reply.status_code == 303 and reply.headers["location"] == "/cache?sync_status=fail"
    cookie = reply.headers["set-cookie"]
    assert cookie.startswith(f"{session.COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and TOKEN not in cookie
    assert anonymous.get("/").status_code == 200


@pytest.mark.parametrize(
    "elsewhere", ["https://evil.example", "//evil.example", "/\\evil.example", "javascript:x"]
)
def test_signing_in_never_sends_the_browser_to_another_site(
    anonymous: TestClient, elsewhere: str
) -> None:
    reply = anonymous.post("/signin", data={"token": TOKEN, "next": elsewhere})
    assert reply.headers["location"] == "/"


def test_a_wrong_token_is_refused_at_its_field(anonymous: TestClient) -> None:
    reply = anonymous.post("/signin", data={"token": "guess", "next": "/"})
    assert reply.status_code == 401
    assert 'aria-invalid="true"' in reply.text and "That is not the admin token" in reply.text
    assert session.COOKIE not in reply.headers.get("set-cookie", "")


def test_without_an_admin_token_the_console_says_how_to_turn_it_on(
    clean_tables: sa.Engine, sent: Sent
) -> None:
    with TestClient(console_app(clean_tables, sent, token="")) as client:
        reply = client.post("/signin", data={"token": "", "next": "/"})
    assert reply.status_code == 401 and "set MCSYNC_ADMIN_TOKEN" in reply.text


def test_signing_out_ends_the_session(signed_in: TestClient) -> None:
    reply = signed_in.post("/signout", data={"csrf": csrf_of(signed_in)})
    assert reply.status_code == 303
    assert signed_in.get("/").status_code == 303


# --- forms ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", FORMS)
def test_a_form_without_its_csrf_token_is_refused_and_changes_nothing(
    signed_in: TestClient, clean_tables: sa.Engine, sent: Sent, path: str
) -> None:
    before = snapshot(clean_tables)
    for csrf in ("", "forged"):
        reply = signed_in.post(path, data={"csrf": csrf, "group_id": "1", "contact_id": "1"})
        assert reply.status_code == 403
    assert snapshot(clean_tables) == before and sent.messages == []


def test_sync_now_enqueues_the_groups_sync_with_its_options(
    signed_in: TestClient, sent: Sent, group: int
) -> None:
    form = {"csrf": csrf_of(signed_in), "group_id": str(group), "since": "ever", "max_time": "60"}
    reply = signed_in.post("/sync", data=form)
    assert reply.status_code == 303 and flash(reply) == f"Sync started for group {group}."
    [start] = sent.messages
    assert isinstance(start, StartSync) and start.list_id == LIST_A
    assert (start.since, start.max_time) == ("ever", 60)


def test_a_bad_sync_option_is_said_and_nothing_is_enqueued(
    signed_in: TestClient, sent: Sent, group: int
) -> None:
    form = {"csrf": csrf_of(signed_in), "group_id": str(group), "since": "next tuesday"}
    reply = signed_in.post("/sync", data=form)
    assert "The sync was not started: since:" in flash(reply)
    assert sent.messages == []


def test_including_contacts_marks_their_rows_todo(
    signed_in: TestClient, clean_tables: sa.Engine
) -> None:
    ann = make_contact(clean_tables, "Ann", "ann@example.org")
    add_row(clean_tables, LIST_A, "ann@example.org", "subscribed", ann, "fail")
    form = {"csrf": csrf_of(signed_in), "contact_id": str(ann), "back": "/cache/1"}
    reply = signed_in.post("/cache/include", data=form)
    assert reply.headers["location"] == "/cache/1"
    assert flash(reply) == "1 cache row(s) will be synced by the next sync."
    with clean_tables.connect() as conn:
        statuses = conn.execute(sa.text("SELECT sync_status FROM civicrm_mailchimpsync_cache"))
        assert statuses.all() == [("todo",)]


def test_a_refused_search_is_shown_at_its_field(signed_in: TestClient) -> None:
    reply = signed_in.get("/cache?civicrm_contact_id=-3")
    assert reply.status_code == 400
    field = re.search(r'<input id="f-civicrm_contact_id"[^>]*>', reply.text)
    assert field is not None and 'aria-invalid="true"' in field.group(0)
    assert 'id="e-civicrm_contact_id"' in reply.text


def test_a_page_past_what_offsets_can_hold_is_refused_on_the_page(
    signed_in: TestClient,
) -> None:
    reply = signed_in.get("/cache?page=999999999&limit=500")
    assert reply.status_code == 400
    assert '<p class="error">offset:' in reply.text


def test_the_cache_pages_through_its_rows(signed_in: TestClient, clean_tables: sa.Engine) -> None:
    for n in range(30):
        add_row(clean_tables, LIST_A, f"p{n}@example.org", "subscribed", None)
    first = signed_in.get("/cache")
    assert "<strong>30</strong> row(s) match; page 1 of 2" in first.text
    assert first.text.count('href="/cache/') == 25
    second = signed_in.get("/cache?page=2")
    assert second.text.count('href="/cache/') == 5 and 'rel="prev"' in second.text


# --- the Config screen -----------------------------------------------------------------------


def test_the_config_screen_never_shows_an_api_key_in_full(signed_in: TestClient) -> None:
    for path in ("/config", "/config/accounts/0", "/config/accounts/0/remove"):
        page = signed_in.get(path)
        assert page.status_code == 200 and API_KEY not in page.text
        assert API_KEY[-8:] in page.text or path != "/config"  # masked: its last characters


def test_a_refused_connection_is_shown_at_its_field_and_changes_nothing(
    signed_in: TestClient, clean_tables: sa.Engine, simulator: RunningSimulator, group: int
) -> None:
    audience = simulator.simulator.create_list(API_KEY, "News").id
    before = snapshot(clean_tables)
    form = {
        "csrf": csrf_of(signed_in),
        "fingerprint": fingerprint_of(clean_tables),
        "account_name": "Org",
        "subscription_group_id": str(group),  # already the subscription group of LIST_A
    }
    reply = signed_in.post(f"/config/accounts/0/audiences/{audience}", data=form)
    assert reply.status_code == 400
    field = re.search(r'<select id="f-subscription_group_id"[^>]*>', reply.text)
    assert field is not None and 'aria-invalid="true"' in field.group(0)
    assert snapshot(clean_tables) == before


def test_a_save_over_a_change_made_elsewhere_is_refused(
    signed_in: TestClient, clean_tables: sa.Engine
) -> None:
    stale = fingerprint_of(clean_tables)
    with clean_tables.begin() as conn:
        config.add_account(conn, "Other", "fedcba9876543210fedcba9876543210-us2")
    before = snapshot(clean_tables)
    form = {"csrf": csrf_of(signed_in), "fingerprint": stale, "account_name": "Org"}
    reply = signed_in.post("/config/accounts/0/remove", data=form)
    assert "changed elsewhere" in flash(reply)
    assert snapshot(clean_tables) == before


def test_removing_a_connection_after_its_confirmation_forgets_its_rows(
    signed_in: TestClient, clean_tables: sa.Engine
) -> None:
    add_row(clean_tables, LIST_A, "ann@example.org", "subscribed", None)
    page = signed_in.get(CONNECTION + "/remove")
    assert "1 cached member(s)" in page.text
    form = {
        "csrf": csrf_of(signed_in),
        "fingerprint": fingerprint_of(clean_tables),
        "account_name": "Org",
    }
    reply = signed_in.post(CONNECTION + "/remove", data=form)
    assert flash(reply) == f"The audience {LIST_A} was disconnected."
    with clean_tables.connect() as conn:
        assert (
            conn.execute(sa.text("SELECT count(*) FROM civicrm_mailchimpsync_cache")).scalar() == 0
        )


# --- fuzzing ----------------------------------------------------------------------------------

form_values = st.text(max_size=12) | st.integers(-(2**40), 2**40).map(str)
FIELDS = [
    "group_id",
    "since",
    "max_time",
    "contact_id",
    "back",
    "which",
    "next",
    "token",
    "name",
    "api_key",
    "account_name",
    "subscription_group_id",
    "trust_override",
    "data_sync",
    "interest_id",
    "process",
    "id",
    "x",
]


@FUZZ
@given(
    path=st.sampled_from([*FORMS, "/signin"]),
    fields=st.dictionaries(st.sampled_from(FIELDS), form_values, max_size=5),
    current=st.booleans(),
)
def test_random_forms_never_get_a_5xx(
    signed_in: TestClient,
    clean_tables: sa.Engine,
    path: str,
    fields: dict[str, str],
    current: bool,
) -> None:
    made_from = {"fingerprint": fingerprint_of(clean_tables), "account_name": "Org"}
    form = {"csrf": csrf_of(signed_in), **(made_from if current else {}), **fields}
    reply = signed_in.post(path, data=form)
    assert reply.status_code < 500, reply.text
    if path == "/signout":
        signed_in.post("/signin", data={"token": TOKEN})


@FUZZ
@given(
    path=st.sampled_from(["/cache", "/", "/cache/", "/abort/"]),
    query=st.dictionaries(
        st.sampled_from([*console.CACHE_FIELDS, "page", "limit", "x"]), form_values, max_size=4
    ),
    tail=form_values,
)
def test_random_queries_never_get_a_5xx(
    signed_in: TestClient, path: str, query: dict[str, str], tail: str
) -> None:
    target = path + quote(tail, safe="") if path.endswith("/") and path != "/" else path
    reply = signed_in.get(target, params=query)
    assert reply.status_code < 500, reply.text


@FUZZ
@given(body=st.binary(max_size=300), kind=st.sampled_from(["urlencoded", "multipart", "json"]))
def test_random_bodies_never_get_a_5xx(signed_in: TestClient, body: bytes, kind: str) -> None:
    types = {
        "urlencoded": "application/x-www-form-urlencoded",
        "multipart": "multipart/form-data; boundary=xyz",
        "json": "application/json",
    }
    reply = signed_in.post("/sync", content=body, headers={"content-type": types[kind]})
    assert reply.status_code < 500, reply.text
