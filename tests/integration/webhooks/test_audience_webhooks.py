"""The audience webhook over a real Postgres: secrets, URL checks, the inbox, SyncMember."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import pytest
import requests
import sqlalchemy as sa
from audience_support import (
    LIST_ID,
    SECRET,
    Recorder,
    Stored,
    inbox_rows,
    synced_audience,
    wait_for_rows,
)
from webhooks_support import FORM, TestClient, serve_in_thread

from common.audience_events import AudienceEvent, AudienceEventType
from common.messages import Message, SyncMember
from services.webhooks.app import AUDIENCE_WEBHOOK_PATH, BATCH_WEBHOOK_PATH, Deps, create_app
from sim.mailchimp import Simulator, run_in_thread

pytestmark = pytest.mark.integration

URL = f"{AUDIENCE_WEBHOOK_PATH}?secret={SECRET}"
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
MERGES = {"data[merges][EMAIL]": "jane.doe@example.com", "data[merges][FNAME]": "Jane"}
MEMBER = {
    "data[id]": "e2ff089583",
    "data[list_id]": LIST_ID,
    "data[email]": "jane.doe@example.com",
    "data[email_type]": "html",
    "data[web_id]": "161912900",
}
EVENT = {"list_id": LIST_ID, "email": "jane.doe@example.com"}

# (the form Mailchimp posts, the event stored for it)
CASES = {
    "subscribe": (
        {"type": "subscribe", "fired_at": "2021-07-28 08:06:59", **MEMBER, **MERGES,
         "data[merges][LNAME]": "Doe"},
        AudienceEvent(AudienceEventType.SUBSCRIBE, **EVENT,
                      fired_at=datetime(2021, 7, 28, 8, 6, 59, tzinfo=UTC),
                      first_name="Jane", last_name="Doe"),
    ),
    "unsubscribe": (
        {"type": "unsubscribe", "fired_at": "2014-10-22 13:10:40", "data[action]": "unsub",
         "data[reason]": "manual", "data[campaign_id]": "cb398d21d2", **MEMBER},
        AudienceEvent(AudienceEventType.UNSUBSCRIBE, **EVENT,
                      fired_at=datetime(2014, 10, 22, 13, 10, 40, tzinfo=UTC),
                      reason="manual", action="unsub"),
    ),
    "profile": (
        {"type": "profile", "fired_at": "2021-07-28 09:00:00", **MEMBER, **MERGES,
         "data[merges][LNAME]": ""},
        AudienceEvent(AudienceEventType.PROFILE, **EVENT,
                      fired_at=datetime(2021, 7, 28, 9, 0, tzinfo=UTC),
                      first_name="Jane", last_name=""),
    ),
    "cleaned": (
        {"type": "cleaned", "fired_at": "2009-03-26 22:01:00", "data[list_id]": LIST_ID,
         "data[campaign_id]": "4fjk2ma9xd", "data[reason]": "hard",
         "data[email]": "jane.doe@example.com"},
        AudienceEvent(AudienceEventType.CLEANED, **EVENT,
                      fired_at=datetime(2009, 3, 26, 22, 1, tzinfo=UTC), reason="hard"),
    ),
    "upemail": (
        {"type": "upemail", "fired_at": "2017-04-23 08:08:31", "data[list_id]": LIST_ID,
         "data[new_id]": "50696b797a", "data[new_email]": "jane.new@example.com",
         "data[old_email]": "jane.doe@example.com"},
        AudienceEvent(AudienceEventType.UPEMAIL, LIST_ID, "jane.new@example.com",
                      fired_at=datetime(2017, 4, 23, 8, 8, 31, tzinfo=UTC),
                      old_email="jane.doe@example.com"),
    ),
}  # fmt: skip
CAMPAIGN = {"type": "campaign", "data[id]": "5aa2102003", "data[list_id]": LIST_ID}


@pytest.fixture
def sent() -> Recorder:
    return Recorder()


@pytest.fixture
def client(clean_tables: sa.Engine, sent: Recorder) -> Iterator[TestClient]:
    synced_audience(clean_tables)
    app = create_app(Deps(engine=clean_tables, send=sent, clock=lambda: NOW))
    with TestClient(app) as test_client:
        yield test_client


def _post(client: TestClient, fields: dict[str, str], url: str = URL) -> tuple[int, object]:
    reply = client.post(url, content=urlencode(fields), headers=FORM)
    return reply.status_code, reply.json()


@pytest.mark.parametrize("kind", sorted(CASES))
def test_each_member_event_is_stored_with_exactly_its_fields_and_sync_member_is_sent(
    client: TestClient, clean_tables: sa.Engine, sent: Recorder, kind: str
) -> None:
    form, expected = CASES[kind]
    assert _post(client, form) == (200, {"ok": True})
    [row] = inbox_rows(clean_tables)
    assert (row.list_id, row.event_type, row.event) == (LIST_ID, kind, expected)
    assert sent.messages == [SyncMember(event_id=row.id)]
    assert row.published_at == NOW


def test_the_same_event_posted_twice_is_stored_twice_for_the_reconciler_to_absorb(
    client: TestClient, clean_tables: sa.Engine, sent: Recorder
) -> None:
    form, _ = CASES["subscribe"]
    _post(client, form)
    _post(client, form)
    assert [r.id for r in inbox_rows(clean_tables)] == sent.sync_members()


def test_a_campaign_event_is_acknowledged_and_not_stored(
    client: TestClient, clean_tables: sa.Engine, sent: Recorder
) -> None:
    assert _post(client, CAMPAIGN) == (200, {"ok": True})
    assert inbox_rows(clean_tables) == []
    assert sent.messages == []


def test_an_event_for_an_audience_we_do_not_sync_is_acknowledged_and_not_stored(
    client: TestClient, clean_tables: sa.Engine, sent: Recorder
) -> None:
    form = {**CASES["subscribe"][0], "data[list_id]": "0000000000"}
    assert _post(client, form) == (200, {"ok": True})
    assert inbox_rows(clean_tables) == []
    assert sent.messages == []


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("query", ["", "?secret=", "?secret=wrong", f"?secret={SECRET}x"])
def test_no_secret_or_a_wrong_one_is_unauthorized_and_stores_nothing(
    client: TestClient, clean_tables: sa.Engine, sent: Recorder, method: str, query: str
) -> None:
    body = urlencode(CASES["subscribe"][0])
    reply = client.request(method, AUDIENCE_WEBHOOK_PATH + query, content=body, headers=FORM)
    assert (reply.status_code, reply.json()) == (401, {"ok": False, "error": "unauthorized"})
    assert inbox_rows(clean_tables) == []
    assert sent.messages == []


def test_a_bad_payload_without_the_secret_is_unauthorized_not_a_400(client: TestClient) -> None:
    assert _post(client, {"type": "subscribe"}, AUDIENCE_WEBHOOK_PATH)[0] == 401


def test_another_accounts_secret_cannot_post_events_for_this_audience(
    client: TestClient, clean_tables: sa.Engine, sent: Recorder
) -> None:
    synced_audience(clean_tables, "b0b0b0b0b0", "secret-of-b", api_key="b" * 32, group_id=2)
    url = f"{AUDIENCE_WEBHOOK_PATH}?secret=secret-of-b"
    assert _post(client, CASES["subscribe"][0], url)[0] == 401
    assert inbox_rows(clean_tables) == []
    form = {**CASES["subscribe"][0], "data[list_id]": "b0b0b0b0b0"}
    assert _post(client, form, url) == (200, {"ok": True})
    assert [row.list_id for row in inbox_rows(clean_tables)] == ["b0b0b0b0b0"]


@pytest.mark.parametrize(
    ("kind", "field"),
    [
        ("subscribe", "data[email]"),
        ("subscribe", "data[list_id]"),
        ("unsubscribe", "data[email]"),
        ("profile", "data[list_id]"),
        ("cleaned", "data[email]"),
        ("upemail", "data[new_email]"),
        ("upemail", "data[old_email]"),
        ("subscribe", "type"),
    ],
)
def test_a_missing_field_is_a_400_naming_it_and_nothing_is_stored(
    client: TestClient, clean_tables: sa.Engine, sent: Recorder, kind: str, field: str
) -> None:
    form = {k: v for k, v in CASES[kind][0].items() if k != field}
    status, body = _post(client, form)
    assert status == 400
    assert isinstance(body, dict)
    assert body["field"] == field
    assert field in body["error"]
    assert inbox_rows(clean_tables) == []
    assert sent.messages == []


def test_a_malformed_fired_at_is_a_400_naming_it(
    client: TestClient, clean_tables: sa.Engine
) -> None:
    form = {**CASES["cleaned"][0], "fired_at": "2009-03-26T22:01:00Z"}
    status, body = _post(client, form)
    assert (status, isinstance(body, dict) and body["field"]) == (400, "fired_at")
    assert inbox_rows(clean_tables) == []


def test_a_get_is_mailchimp_checking_the_url(
    client: TestClient, clean_tables: sa.Engine, sent: Recorder
) -> None:
    reply = client.get(URL, headers={"User-Agent": "MailChimp.com WebHook Validator"})
    assert (reply.status_code, reply.json()) == (200, {"ok": True})
    assert inbox_rows(clean_tables) == []


@pytest.mark.parametrize("body", ["", "&&", "  "])
def test_an_empty_post_is_mailchimp_checking_the_url(
    client: TestClient, clean_tables: sa.Engine, body: str
) -> None:
    assert client.post(URL, content=body, headers=FORM).status_code == 200
    assert client.post(URL).status_code == 200
    assert inbox_rows(clean_tables) == []


def test_a_batch_event_on_the_audience_route_is_a_400_naming_the_type(client: TestClient) -> None:
    status, body = _post(client, {"type": "batch_operation_completed", "data[id]": "8b2428d747"})
    assert (status, isinstance(body, dict) and body["field"]) == (400, "type")


def test_an_audience_event_on_the_batch_route_is_a_400_and_not_stored(
    client: TestClient, clean_tables: sa.Engine
) -> None:
    status, _ = _post(client, CASES["subscribe"][0], f"{BATCH_WEBHOOK_PATH}?secret={SECRET}")
    assert status == 400
    assert inbox_rows(clean_tables) == []


def test_with_the_broker_down_the_event_is_still_acknowledged_and_kept_unpublished(
    clean_tables: sa.Engine,
) -> None:
    synced_audience(clean_tables)
    app = create_app(Deps(engine=clean_tables, send=Recorder(down=True)))
    with TestClient(app) as client:
        assert _post(client, CASES["subscribe"][0]) == (200, {"ok": True})
    [row] = inbox_rows(clean_tables)
    assert (row.event_type, row.published_at) == ("subscribe", None)


def test_the_row_is_never_written_after_sync_member_is_sent(clean_tables: sa.Engine) -> None:
    """A write after the send could hold the row's lock when the reconciler's claim (SKIP
    LOCKED) comes for it, and the event would pass for one being acted on."""
    synced_audience(clean_tables)
    versions: list[str] = []

    def send_and_look(*messages: Message) -> None:
        versions.append(_row_version(clean_tables))

    with TestClient(create_app(Deps(engine=clean_tables, send=send_and_look))) as client:
        assert _post(client, CASES["subscribe"][0])[0] == 200
    assert versions == [_row_version(clean_tables)]


def _row_version(engine: sa.Engine) -> str:
    with engine.connect() as conn:
        return str(conn.execute(sa.text("SELECT xmin FROM mailchimpsync_webhook_event")).one()[0])


# --- fired by the simulator ----------------------------------------------------------------

JANE, JANE_NEW = "jane.doe@example.com", "jane.new@example.com"
# (action at the simulator, by whom, its details, the event stored for it)
SIM_STEPS: list[tuple[str, str, str, dict[str, Any], AudienceEvent]] = [
    ("subscribe", JANE, "user", {"merge_fields": {"FNAME": "Jane", "LNAME": "Doe"}},
     AudienceEvent(AudienceEventType.SUBSCRIBE, LIST_ID, JANE, first_name="Jane",
                   last_name="Doe")),
    ("profile", JANE, "user", {"merge_fields": {"FNAME": "Janet"}},
     AudienceEvent(AudienceEventType.PROFILE, LIST_ID, JANE, first_name="Janet",
                   last_name="Doe")),
    ("upemail", JANE, "admin", {"new_email": JANE_NEW},
     AudienceEvent(AudienceEventType.UPEMAIL, LIST_ID, JANE_NEW, old_email=JANE)),
    ("unsubscribe", JANE_NEW, "admin", {},
     AudienceEvent(AudienceEventType.UNSUBSCRIBE, LIST_ID, JANE_NEW, first_name="Janet",
                   last_name="Doe", reason="manual", action="unsub")),
    ("clean", JANE_NEW, "admin", {},
     AudienceEvent(AudienceEventType.CLEANED, LIST_ID, JANE_NEW, reason="hard")),
]  # fmt: skip


def test_each_event_the_simulator_fires_is_stored_and_sync_member_sent(
    clean_tables: sa.Engine,
) -> None:
    simulator = Simulator()
    account = simulator.create_account("Test Org")
    simulator.create_list(account.api_key, "Newsletter", list_id=LIST_ID)
    synced_audience(clean_tables, api_key=account.api_key)
    sent = Recorder()
    app = create_app(Deps(engine=clean_tables, send=sent))
    with (
        serve_in_thread(app) as served,
        run_in_thread(simulator) as running,
        requests.Session() as session,
    ):
        session.auth = ("anystring", account.api_key)
        _register(session, running.api_url, served.base_url + URL)
        stored: list[Stored] = []
        for action, email, source, details, expected in SIM_STEPS:
            fired = session.post(
                f"{running.base_url}/_sim/lists/{LIST_ID}/members/{email}/actions/{action}",
                json={"source": source, **details},
                timeout=10,
            )
            assert fired.status_code == 200, fired.text
            stored = wait_for_rows(clean_tables, len(stored) + 1)
            assert _without_time(stored[-1].event) == expected
            assert stored[-1].event.fired_at is not None
    assert [row.event_type for row in stored] == [
        "subscribe", "profile", "upemail", "unsubscribe", "cleaned"
    ]  # fmt: skip
    assert sent.sync_members() == [row.id for row in stored]


def _register(session: requests.Session, api_url: str, url: str) -> None:
    """An audience webhook at the simulator; it GETs the URL first, as Mailchimp does."""
    events = dict.fromkeys(["subscribe", "unsubscribe", "profile", "cleaned", "upemail"], True)
    body = {"url": url, "events": events, "sources": {"user": True, "admin": True, "api": False}}
    hook = session.post(f"{api_url}/lists/{LIST_ID}/webhooks", json=body, timeout=10)
    assert hook.status_code == 200, hook.text


def _without_time(event: AudienceEvent) -> AudienceEvent:
    return AudienceEvent.from_json({**event.to_json(), "fired_at": None})


def test_a_slow_broker_never_delays_the_answer(clean_tables: sa.Engine) -> None:
    """Mailchimp gives up after 10 s: SyncMember goes out after the answer, not before."""
    synced_audience(clean_tables)
    release = threading.Event()
    sent = Recorder()

    def slow_send(*messages: Message) -> None:
        release.wait(10)
        sent(*messages)

    with serve_in_thread(create_app(Deps(engine=clean_tables, send=slow_send))) as served:
        started = time.monotonic()
        reply = requests.post(
            served.base_url + URL, data=CASES["subscribe"][0], headers=FORM, timeout=5
        )
        answered_in = time.monotonic() - started
        assert inbox_rows(clean_tables)[0].event_type == "subscribe"
        release.set()
        deadline = time.monotonic() + 5
        while not sent.messages and time.monotonic() < deadline:
            time.sleep(0.01)
    assert reply.status_code == 200
    assert answered_in < 2
    assert sent.messages == [SyncMember(event_id=inbox_rows(clean_tables)[0].id)]


def test_a_hung_broker_never_stops_events_being_taken(clean_tables: sa.Engine) -> None:
    """More sends hang than the threadpool has threads; events are still stored and answered."""
    synced_audience(clean_tables)
    release = threading.Event()
    sent = Recorder()

    def hung_send(*messages: Message) -> None:
        release.wait(30)
        sent(*messages)

    posts = 50  # more than the threadpool's 40 threads
    with serve_in_thread(create_app(Deps(engine=clean_tables, send=hung_send))) as served:
        for n in range(posts):
            form = {**CASES["subscribe"][0], "data[email]": f"p{n}@example.com"}
            reply = requests.post(served.base_url + URL, data=form, headers=FORM, timeout=5)
            assert reply.status_code == 200
        assert len(inbox_rows(clean_tables)) == posts
        release.set()
        deadline = time.monotonic() + 10
        while len(sent.messages) < posts and time.monotonic() < deadline:
            time.sleep(0.02)
    assert sorted(sent.sync_members()) == [row.id for row in inbox_rows(clean_tables)]
