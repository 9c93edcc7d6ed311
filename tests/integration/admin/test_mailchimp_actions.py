"""abortsync, fetchaccountinfo and updatewebhook against a real Postgres and the simulator."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from pydantic import BaseModel

from common.db import config, runs
from common.db.runs import RunParams
from common.db.schema import account, batch, cache, connection, update, webhook_secret
from common.limits import LocalConnectionLimiter
from common.mailchimp import MailchimpClient
from common.messages import FetchPage, StartSync
from common.settings import Settings
from common.vocabulary import Stage
from common.webhook_urls import AUDIENCE_WEBHOOK_PATH, BATCH_WEBHOOK_PATH, webhook_url
from services.admin.context import (
    ActionError,
    AdminContext,
    Conflict,
    NotFound,
    ParamError,
    UpstreamError,
)
from services.admin.mailchimp_abort import abort_sync
from services.admin.mailchimp_actions import ACTIONS
from services.fetcher.handlers import Deps, start_sync
from services.submitter.handlers import claim_batch, post_claimed
from sim.mailchimp import RunningSimulator, Simulator, run_in_thread

pytestmark = pytest.mark.integration

BASE_URL = "https://crm.example.org/hooks"
GROUP = 41
OTHER_GROUP = 42
EVENTS = {
    "subscribe": True,
    "unsubscribe": True,
    "profile": True,
    "cleaned": True,
    "upemail": True,
    "campaign": False,
}
SOURCES = {"user": True, "admin": True, "api": False}


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[RunningSimulator]:
    with run_in_thread(Simulator()) as running:
        yield running


@dataclass
class World:
    """A simulated account with two audiences, configured here (one connected to GROUP)."""

    running: RunningSimulator
    engine: sa.Engine
    api_key: str
    list_id: str
    other_list_id: str
    account_id: int
    checked_urls: list[str] = field(default_factory=list)
    max_connections: int = 10
    webhook_base_url: str = BASE_URL
    clients: dict[str, MailchimpClient] = field(default_factory=dict)

    def ctx(self) -> AdminContext:
        settings = Settings(
            mailchimp_api_url=self.running.api_url,
            webhook_base_url=self.webhook_base_url,
            mailchimp_max_connections=self.max_connections,
        )
        return AdminContext(settings, self.engine, self.client, _no_send, _utcnow)

    def client(self, api_key: str) -> MailchimpClient:
        if api_key not in self.clients:
            self.clients[api_key] = MailchimpClient(
                api_key,
                base_url=self.running.api_url,
                retries=0,
                max_connections=self.max_connections,
                limiter=LocalConnectionLimiter(limit=self.max_connections),
            )
        return self.clients[api_key]

    def run(self, name: str, **params: Any) -> dict[str, Any]:
        """The action as the CLI and HTTP API run it: parameters validated by its model."""
        action = next(a for a in ACTIONS if a.name == name)
        parsed: BaseModel = action.params(**params)
        return action.run(self.ctx(), parsed)

    def control(self, method: str, path: str, **kwargs: Any) -> Any:
        reply = requests.request(
            method, self.running.base_url + "/_sim" + path, timeout=10, **kwargs
        )
        reply.raise_for_status()
        return reply.json() if reply.content else None

    def counts(self) -> dict[str, int]:
        return dict(self.control("GET", "/requests")["counts"])

    def forget_requests(self) -> None:
        self.control("DELETE", "/requests")

    def our_url(self, path: str) -> str:
        with self.engine.connect() as conn:
            secret = (
                conn.execute(sa.select(webhook_secret.c.secret).order_by(webhook_secret.c.id))
                .scalars()
                .first()
            )
        assert secret is not None
        return webhook_url(BASE_URL, path, secret)


def _no_send(*_: Any) -> None:
    raise AssertionError("these actions send no messages")


def _utcnow() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def world(server: RunningSimulator, clean_tables: sa.Engine) -> Iterator[World]:
    simulator = server.simulator
    simulator.reset()
    checked: list[str] = []
    original_checker = simulator.url_checker
    simulator.url_checker = lambda url: checked.append(url) is None and url.startswith(BASE_URL)
    created = simulator.create_account("Test Org")
    topics = [{"title": "Topics", "interests": ["Events", "News"]}]
    first = simulator.create_list(created.api_key, "Newsletter", interest_categories=topics)
    second = simulator.create_list(created.api_key, "Members")
    with clean_tables.begin() as conn:
        account_id = config.add_account(conn, "Test Org", created.api_key)
        config.add_connection(conn, account_id, first.id, GROUP)
    made = World(server, clean_tables, created.api_key, first.id, second.id, account_id, checked)
    yield made
    for client in made.clients.values():
        client.close()
    simulator.url_checker = original_checker


# --- database helpers --------------------------------------------------------------------------


def _add_rows(engine: sa.Engine, list_id: str, emails: list[str]) -> list[int]:
    rows = [{"mailchimp_list_id": list_id, "sync_status": "live"} for _ in emails]
    with engine.begin() as conn:
        return list(
            conn.scalars(sa.insert(cache).returning(cache.c.id, sort_by_parameter_order=True), rows)
        )


def _queue(engine: sa.Engine, list_id: str, emails: list[str]) -> list[int]:
    """New members to subscribe: a live cache row and an unsubmitted update each."""
    cache_ids = _add_rows(engine, list_id, emails)
    items = [
        {"mailchimpsync_cache_id": c, "data": {"email_address": e, "status": "subscribed"}}
        for c, e in zip(cache_ids, emails, strict=True)
    ]
    with engine.begin() as conn:
        conn.execute(sa.insert(update), items)
    return cache_ids


def _table(engine: sa.Engine, table: sa.Table) -> list[sa.Row[Any]]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(table).order_by(table.c.id)))


def _start_run_at_submit(engine: sa.Engine, list_id: str) -> str:
    now = _utcnow()
    with engine.begin() as conn:
        state = runs.lock(conn, list_id)
        state = runs.start(conn, state, RunParams(since="ever"), False, now)
        state = runs.advance(conn, state, Stage.READY_TO_SUBMIT_UPDATES, now)
    assert state.run_id is not None
    return state.run_id


def _run_state(engine: sa.Engine, list_id: str) -> runs.RunState:
    with engine.connect() as conn:
        state = runs.read(conn, list_id)
    assert state is not None
    return state


def _log(engine: sa.Engine, list_id: str) -> list[dict[str, str]]:
    with engine.connect() as conn:
        return runs.read_log(conn, list_id)


def _until(condition: Callable[[], bool], what: str, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting until {what}")
        time.sleep(0.02)


def _mailchimp_batch_ids(world: World) -> list[str]:
    listed = world.client(world.api_key).get("/batches", {"count": 1000})["batches"]
    return [b["id"] for b in listed]


# --- abortsync ---------------------------------------------------------------------------------


def test_abortsync_deletes_the_batch_in_flight_and_aborts_its_updates_and_the_unsubmitted_ones(
    world: World,
) -> None:
    world.running.simulator.set_switches(batch_stuck=True)
    sent_rows = _queue(world.engine, world.list_id, ["a@example.org", "b@example.org"])
    claim = claim_batch(world.engine, world.list_id, _utcnow())
    mailchimp_batch_id = post_claimed(world.engine, world.client(world.api_key), claim)
    waiting_rows = _queue(world.engine, world.list_id, ["c@example.org", "d@example.org"])
    (untouched,) = _add_rows(world.engine, world.list_id, ["e@example.org"])
    _start_run_at_submit(world.engine, world.list_id)
    world.forget_requests()

    report = world.run("abortsync", group_id=GROUP)

    assert report == {
        "group_id": GROUP,
        "list_id": world.list_id,
        "batches_deleted_at_mailchimp": 1,
        "batches_already_gone": 0,
        "mailchimp_batch_ids": [mailchimp_batch_id],
        "batches_aborted": 1,
        "updates_aborted": 4,
        "rows_failed": 4,
        "run_released": True,
        "batches_still_posting": 0,
        "batches_posted_meanwhile": 0,
    }
    assert world.counts() == {"DELETE /batches/{batch_id}": 1}
    assert _mailchimp_batch_ids(world) == []
    assert [
        (b.mailchimp_batch_id, b.status, b.response_processed) for b in _table(world.engine, batch)
    ] == [(mailchimp_batch_id, "aborted", 2)]
    assert [(u.completed, u.error_response) for u in _table(world.engine, update)] == [
        (True, "aborted")
    ] * 4
    statuses = {r.id: (r.sync_status, r.fail_reason) for r in _table(world.engine, cache)}
    assert statuses == {
        **dict.fromkeys(sent_rows + waiting_rows, ("fail", "aborted")),
        untouched: ("live", None),
    }
    state = _run_state(world.engine, world.list_id)
    assert (state.run_id, state.stage) == (None, Stage.READY_TO_FETCH)
    assert "sync aborted (abortsync)" in _log(world.engine, world.list_id)[-1]["message"]


def test_abortsync_called_again_changes_nothing_and_the_next_run_starts_clean(
    world: World,
) -> None:
    world.running.simulator.set_switches(batch_stuck=True)
    _queue(world.engine, world.list_id, ["a@example.org"])
    post_claimed(
        world.engine,
        world.client(world.api_key),
        claim_batch(world.engine, world.list_id, _utcnow()),
    )
    _queue(world.engine, world.list_id, ["b@example.org"])
    old_run = _start_run_at_submit(world.engine, world.list_id)
    world.run("abortsync", group_id=GROUP)
    before = (
        _table(world.engine, batch),
        _table(world.engine, update),
        _table(world.engine, cache),
    )
    world.forget_requests()

    again = world.run("abortsync", group_id=GROUP)

    assert again == {
        "group_id": GROUP,
        "list_id": world.list_id,
        "batches_deleted_at_mailchimp": 0,
        "batches_already_gone": 0,
        "mailchimp_batch_ids": [],
        "batches_aborted": 0,
        "updates_aborted": 0,
        "rows_failed": 0,
        "run_released": False,
        "batches_still_posting": 0,
        "batches_posted_meanwhile": 0,
    }
    assert world.counts() == {}
    after = (_table(world.engine, batch), _table(world.engine, update), _table(world.engine, cache))
    assert after == before
    members = [{"email": "m@example.org", "status": "subscribed"}]
    world.control("POST", f"/lists/{world.list_id}/members/import", json=members)
    deps = Deps(world.engine, world.client, _utcnow)
    sent = start_sync(deps, StartSync(list_id=world.list_id))
    state = _run_state(world.engine, world.list_id)
    assert state.active and state.run_id not in (None, old_run)
    assert state.stage is Stage.READY_TO_FETCH
    assert [type(m) for m in sent] == [FetchPage]


def test_abortsync_waits_for_a_batch_being_posted_then_deletes_it_at_mailchimp(
    world: World,
) -> None:
    world.running.simulator.set_switches(batch_stuck=True)
    _queue(world.engine, world.list_id, ["a@example.org", "b@example.org"])
    _start_run_at_submit(world.engine, world.list_id)
    claim = claim_batch(world.engine, world.list_id, _utcnow())  # a submitter about to POST
    result: dict[str, Any] = {}
    aborting = threading.Thread(
        target=lambda: result.update(report=abort_sync(world.ctx(), GROUP, posting_wait=20))
    )
    aborting.start()
    _until(
        lambda: any(
            "still being posted" in line["message"] for line in _log(world.engine, world.list_id)
        ),
        "the abort has seen the batch being posted",
    )
    assert (claim.batch_row_id, None) in [
        (b.id, b.status) for b in _table(world.engine, batch)
    ]  # left to the submitter

    mailchimp_batch_id = post_claimed(world.engine, world.client(world.api_key), claim)
    aborting.join(30)

    report = result["report"].to_json()
    assert report["mailchimp_batch_ids"] == [mailchimp_batch_id]
    assert (report["batches_aborted"], report["updates_aborted"], report["rows_failed"]) == (
        1,
        2,
        2,
    )
    assert report["batches_still_posting"] == 0
    assert _mailchimp_batch_ids(world) == []
    assert [(b.mailchimp_batch_id, b.status) for b in _table(world.engine, batch)] == [
        (mailchimp_batch_id, "aborted")
    ]
    assert {(u.completed, u.error_response) for u in _table(world.engine, update)} == {
        (True, "aborted")
    }


def test_a_batch_still_posting_after_the_wait_is_left_to_the_submitter_and_aborted_next_call(
    world: World,
) -> None:
    world.running.simulator.set_switches(batch_stuck=True)
    _queue(world.engine, world.list_id, ["a@example.org"])
    claim = claim_batch(world.engine, world.list_id, _utcnow())

    first = abort_sync(world.ctx(), GROUP, posting_wait=0).to_json()

    assert (first["batches_still_posting"], first["updates_aborted"]) == (1, 0)
    (row,) = _table(world.engine, update)
    assert (row.completed, row.mailchimpsync_batch_id) == (False, claim.batch_row_id)
    mailchimp_batch_id = post_claimed(world.engine, world.client(world.api_key), claim)
    assert [b.mailchimp_batch_id for b in _table(world.engine, batch)] == [mailchimp_batch_id]

    second = abort_sync(world.ctx(), GROUP, posting_wait=0).to_json()

    assert second["mailchimp_batch_ids"] == [mailchimp_batch_id]
    assert (second["batches_aborted"], second["updates_aborted"], second["rows_failed"]) == (
        1,
        1,
        1,
    )
    assert _mailchimp_batch_ids(world) == []


def test_abortsync_does_not_wait_for_a_batch_left_posting_long_ago_by_a_dead_submitter(
    world: World,
) -> None:
    _queue(world.engine, world.list_id, ["a@example.org"])
    claim_batch(world.engine, world.list_id, _utcnow() - timedelta(hours=1))
    started = time.monotonic()

    report = abort_sync(world.ctx(), GROUP, posting_wait=30).to_json()

    assert time.monotonic() - started < 15
    assert (report["batches_still_posting"], report["updates_aborted"]) == (1, 0)
    assert [(u.completed, u.error_response) for u in _table(world.engine, update)] == [
        (False, None)
    ]


def test_abortsync_takes_a_batch_mailchimp_no_longer_has_as_already_gone(world: World) -> None:
    world.running.simulator.set_switches(batch_stuck=True)
    _queue(world.engine, world.list_id, ["a@example.org"])
    batch_id = post_claimed(
        world.engine,
        world.client(world.api_key),
        claim_batch(world.engine, world.list_id, _utcnow()),
    )
    world.client(world.api_key).delete(f"/batches/{batch_id}")

    report = world.run("abortsync", group_id=GROUP)

    assert (report["batches_deleted_at_mailchimp"], report["batches_already_gone"]) == (0, 1)
    assert (report["batches_aborted"], report["updates_aborted"]) == (1, 1)


def test_when_mailchimp_fails_abortsync_changes_nothing_and_a_retry_completes_it(
    world: World,
) -> None:
    world.running.simulator.set_switches(batch_stuck=True)
    _queue(world.engine, world.list_id, ["a@example.org"])
    post_claimed(
        world.engine,
        world.client(world.api_key),
        claim_batch(world.engine, world.list_id, _utcnow()),
    )
    _queue(world.engine, world.list_id, ["b@example.org"])
    world.control("POST", "/faults", json={"kind": "status", "status": 503, "method": "DELETE"})
    before = (
        _table(world.engine, batch),
        _table(world.engine, update),
        _table(world.engine, cache),
    )

    with pytest.raises(UpstreamError, match="abortsync"):
        world.run("abortsync", group_id=GROUP)

    after = (_table(world.engine, batch), _table(world.engine, update), _table(world.engine, cache))
    assert after == before
    report = world.run("abortsync", group_id=GROUP)
    assert (report["batches_deleted_at_mailchimp"], report["updates_aborted"]) == (1, 2)


def test_abortsync_of_a_group_without_a_sync_connection_is_not_found(world: World) -> None:
    with pytest.raises(NotFound) as raised:
        world.run("abortsync", group_id=999)
    assert raised.value.param == "group_id"


# --- fetchaccountinfo --------------------------------------------------------------------------


def _register_webhooks(world: World) -> dict[str, str]:
    """Ours (with the account's secret) and someone else's, on the account and its audiences."""
    with world.engine.begin() as conn:
        config.add_webhook_secret(conn, world.account_id, "our-secret")
    client = world.client(world.api_key)
    ours_batch = webhook_url(BASE_URL, BATCH_WEBHOOK_PATH, "our-secret")
    ours_audience = webhook_url(BASE_URL, AUDIENCE_WEBHOOK_PATH, "our-secret")
    foreign = BASE_URL + "/someone-else"
    return {
        "batch": client.post("/batch-webhooks", {"url": ours_batch})["id"],
        "foreign_batch": client.post("/batch-webhooks", {"url": foreign})["id"],
        "audience": client.post(f"/lists/{world.list_id}/webhooks", {"url": ours_audience})["id"],
        "foreign_audience": client.post(f"/lists/{world.other_list_id}/webhooks", {"url": foreign})[
            "id"
        ],
    }


def test_fetchaccountinfo_lists_the_account_audiences_interests_and_webhooks_ours_flagged(
    world: World,
) -> None:
    ids = _register_webhooks(world)
    topics = world.running.simulator.audience(world.list_id).categories[0]

    info = world.run("fetchaccountinfo", api_key=world.api_key)

    assert info["account"]["account_name"] == "Test Org"
    assert (info["configured"], info["account_name"]) == (True, "Test Org")
    assert info["webhook_base_url"] == BASE_URL
    assert info["batch_webhooks"] == [
        {
            "id": ids["batch"],
            "url": webhook_url(BASE_URL, BATCH_WEBHOOK_PATH, "our-secret"),
            "enabled": True,
            "ours": True,
        },
        {
            "id": ids["foreign_batch"],
            "url": BASE_URL + "/someone-else",
            "enabled": True,
            "ours": False,
        },
    ]
    assert info["our_batch_webhook_id"] == ids["batch"]
    first, second = info["audiences"]
    assert (first["id"], first["name"], first["connected_group_id"]) == (
        world.list_id,
        "Newsletter",
        GROUP,
    )
    assert first["interest_categories"] == [
        {
            "id": topics.id,
            "title": "Topics",
            "type": "checkboxes",
            "interests": [{"id": i.id, "name": i.name} for i in topics.interests],
        }
    ]
    assert [i["name"] for i in first["interest_categories"][0]["interests"]] == ["Events", "News"]
    assert [(h["id"], h["ours"]) for h in first["webhooks"]] == [(ids["audience"], True)]
    assert first["our_webhook_id"] == ids["audience"]
    assert (second["id"], second["name"], second["connected_group_id"]) == (
        world.other_list_id,
        "Members",
        None,
    )
    assert second["interest_categories"] == []
    assert [(h["id"], h["ours"]) for h in second["webhooks"]] == [(ids["foreign_audience"], False)]
    assert second["our_webhook_id"] is None
    assert info["connected_audiences_missing"] == []


def test_fetchaccountinfo_runs_requests_concurrently_but_never_over_the_connection_limit(
    world: World,
) -> None:
    simulator = world.running.simulator
    for n in range(4):
        simulator.create_list(
            world.api_key,
            f"List {n}",
            interest_categories=[{"title": f"T{n}{m}", "interests": ["x"]} for m in range(2)],
        )
    simulator.set_switches(concurrency_limit=2)
    world.control("POST", "/faults", json={"kind": "latency", "seconds": 0.05})
    world.max_connections = 2
    world.forget_requests()

    info = world.run("fetchaccountinfo", api_key=world.api_key)

    seen = world.control("GET", "/requests")
    assert len(info["audiences"]) == 6
    assert seen["peak_in_flight"] == 2
    assert {r["status"] for r in seen["recent"]} == {200}
    assert seen["counts"] == {
        "GET /": 1,
        "GET /lists": 1,
        "GET /batch-webhooks": 1,
        "GET /lists/{list_id}/webhooks": 6,
        "GET /lists/{list_id}/interest-categories": 6,
        "GET /lists/{list_id}/interest-categories/{category_id}/interests": 9,
    }


def test_fetchaccountinfo_for_a_key_not_configured_here_flags_nothing_as_ours(
    world: World,
) -> None:
    other = world.running.simulator.create_account("Elsewhere")
    world.running.simulator.create_list(other.api_key, "Theirs")

    info = world.run("fetchaccountinfo", api_key=other.api_key)

    assert (info["configured"], info["account_name"], info["our_batch_webhook_id"]) == (
        False,
        None,
        None,
    )
    assert info["connected_audiences_missing"] == []
    assert [(a["name"], a["connected_group_id"]) for a in info["audiences"]] == [("Theirs", None)]


def test_fetchaccountinfo_names_connected_audiences_mailchimp_does_not_list(
    world: World,
) -> None:
    with world.engine.begin() as conn:
        config.add_connection(conn, world.account_id, "0000000000", OTHER_GROUP)

    info = world.run("fetchaccountinfo", api_key=world.api_key)

    assert info["connected_audiences_missing"] == ["0000000000"]
    assert [a["id"] for a in info["audiences"]] == [world.list_id, world.other_list_id]


def test_fetchaccountinfo_with_a_key_mailchimp_refuses_is_a_param_error_after_one_request(
    world: World,
) -> None:
    world.forget_requests()
    with pytest.raises(ParamError, match="API Key Invalid") as raised:
        world.run("fetchaccountinfo", api_key="0" * 32 + "-us1")
    assert raised.value.param == "api_key"
    assert world.counts() == {"GET unauthenticated": 1}


@pytest.mark.parametrize("api_key", ["", "nothex-us1", "0123456789abcdef0123456789abcdef"])
def test_fetchaccountinfo_refuses_a_malformed_key_before_asking_mailchimp(
    world: World, api_key: str
) -> None:
    world.forget_requests()
    with pytest.raises((ParamError, ValueError)):
        world.run("fetchaccountinfo", api_key=api_key)
    assert world.counts() == {}


# --- updatewebhook -----------------------------------------------------------------------------


def _stored_ids(engine: sa.Engine) -> tuple[str | None, dict[str, str | None]]:
    with engine.connect() as conn:
        batch_id = conn.execute(sa.select(account.c.batch_webhook_id)).scalar_one()
        audience_ids = dict(
            conn.execute(sa.select(connection.c.mailchimp_list_id, connection.c.webhook_id)).all()
        )
    return batch_id, audience_ids


def test_add_batch_webhook_creates_a_secret_registers_our_url_once_and_stores_its_id(
    world: World,
) -> None:
    first = world.run("updatewebhook", api_key=world.api_key, process="add_batch_webhook")
    again = world.run("updatewebhook", api_key=world.api_key, process="add_batch_webhook")

    url = world.our_url(BATCH_WEBHOOK_PATH)
    assert url.startswith(BASE_URL + BATCH_WEBHOOK_PATH + "?secret=")
    listed = world.client(world.api_key).get("/batch-webhooks")["webhooks"]
    assert [(h["url"], h["enabled"]) for h in listed] == [(url, True)]
    hook_id = listed[0]["id"]
    assert first == {
        "process": "add_batch_webhook",
        "created": True,
        "updated": False,
        "webhook": {"id": hook_id, "url": url, "enabled": True},
    }
    assert again == {**first, "created": False}
    assert world.counts()["POST /batch-webhooks"] == 1
    assert world.checked_urls == [url]
    assert _stored_ids(world.engine)[0] == hook_id
    assert len(_table(world.engine, webhook_secret)) == 1


def test_add_batch_webhook_moves_our_stored_webhook_to_a_new_base_url_without_a_duplicate(
    world: World,
) -> None:
    world.running.simulator.set_switches(validate_webhook_urls=False)
    world.webhook_base_url = "https://old.example.org"
    old = world.run("updatewebhook", api_key=world.api_key, process="add_batch_webhook")
    world.webhook_base_url = BASE_URL

    moved = world.run("updatewebhook", api_key=world.api_key, process="add_batch_webhook")

    url = world.our_url(BATCH_WEBHOOK_PATH)
    listed = world.client(world.api_key).get("/batch-webhooks")["webhooks"]
    assert [(h["id"], h["url"]) for h in listed] == [(old["webhook"]["id"], url)]
    assert (moved["created"], moved["updated"], moved["webhook"]["url"]) == (False, True, url)
    assert _stored_ids(world.engine)[0] == old["webhook"]["id"]


def test_two_adds_at_once_register_one_batch_webhook(world: World) -> None:
    world.control("POST", "/faults", json={"kind": "latency", "seconds": 0.2})
    results: list[dict[str, Any]] = []
    adding = [
        threading.Thread(
            target=lambda: results.append(
                world.run("updatewebhook", api_key=world.api_key, process="add_batch_webhook")
            )
        )
        for _ in range(2)
    ]
    for thread in adding:
        thread.start()
    for thread in adding:
        thread.join(30)

    assert sorted(r["created"] for r in results) == [False, True]
    assert len(world.client(world.api_key).get("/batch-webhooks")["webhooks"]) == 1
    assert len(_table(world.engine, webhook_secret)) == 1


def test_delete_batch_webhook_deletes_it_and_clears_the_stored_id(world: World) -> None:
    added = world.run("updatewebhook", api_key=world.api_key, process="add_batch_webhook")
    hook_id = added["webhook"]["id"]

    deleted = world.run(
        "updatewebhook", api_key=world.api_key, process="delete_batch_webhook", id=hook_id
    )

    assert deleted == {"process": "delete_batch_webhook", "deleted": hook_id, "was_ours": True}
    assert world.client(world.api_key).get("/batch-webhooks")["webhooks"] == []
    assert _stored_ids(world.engine)[0] is None
    with pytest.raises(NotFound) as raised:
        world.run(
            "updatewebhook", api_key=world.api_key, process="delete_batch_webhook", id=hook_id
        )
    assert raised.value.param == "id"


def test_add_webhook_registers_one_webhook_per_connected_audience_for_member_events_not_api(
    world: World,
) -> None:
    with world.engine.begin() as conn:
        config.add_connection(conn, world.account_id, world.other_list_id, OTHER_GROUP)

    added = world.run("updatewebhook", api_key=world.api_key, process="add_webhook")
    again = world.run("updatewebhook", api_key=world.api_key, process="add_webhook")

    url = world.our_url(AUDIENCE_WEBHOOK_PATH)
    client = world.client(world.api_key)
    stored = _stored_ids(world.engine)[1]
    for list_id, group_id in ((world.list_id, GROUP), (world.other_list_id, OTHER_GROUP)):
        (hook,) = client.get(f"/lists/{list_id}/webhooks")["webhooks"]
        assert (hook["url"], hook["events"], hook["sources"]) == (url, EVENTS, SOURCES)
        assert stored[list_id] == hook["id"]
        summary = {"id": hook["id"], "url": url, "events": EVENTS, "sources": SOURCES}
        expected = {"list_id": list_id, "group_id": group_id, "webhook": summary}
        assert {**expected, "created": True, "updated": False} in added["webhooks"]
        assert {**expected, "created": False, "updated": False} in again["webhooks"]
    assert world.counts()["POST /lists/{list_id}/webhooks"] == 2


def test_add_webhook_puts_right_our_webhook_registered_with_api_events(world: World) -> None:
    with world.engine.begin() as conn:
        config.add_webhook_secret(conn, world.account_id, "our-secret")
    url = webhook_url(BASE_URL, AUDIENCE_WEBHOOK_PATH, "our-secret")
    client = world.client(world.api_key)
    old = client.post(f"/lists/{world.list_id}/webhooks", {"url": url})  # every source, event

    added = world.run("updatewebhook", api_key=world.api_key, process="add_webhook")

    (hook,) = client.get(f"/lists/{world.list_id}/webhooks")["webhooks"]
    assert (hook["id"], hook["events"], hook["sources"]) == (old["id"], EVENTS, SOURCES)
    assert [(w["created"], w["updated"]) for w in added["webhooks"]] == [(False, True)]


def test_delete_webhook_deletes_it_from_its_audience_and_clears_the_stored_id(
    world: World,
) -> None:
    added = world.run("updatewebhook", api_key=world.api_key, process="add_webhook")
    hook_id = added["webhooks"][0]["webhook"]["id"]
    foreign = world.client(world.api_key).post(
        f"/lists/{world.other_list_id}/webhooks", {"url": BASE_URL + "/theirs"}
    )["id"]

    deleted = world.run(
        "updatewebhook", api_key=world.api_key, process="delete_webhook", id=hook_id
    )
    theirs = world.run("updatewebhook", api_key=world.api_key, process="delete_webhook", id=foreign)

    assert deleted == {
        "process": "delete_webhook",
        "deleted": hook_id,
        "list_id": world.list_id,
        "was_ours": True,
    }
    assert theirs == {
        **deleted,
        "deleted": foreign,
        "list_id": world.other_list_id,
        "was_ours": False,
    }
    client = world.client(world.api_key)
    assert client.get(f"/lists/{world.list_id}/webhooks")["webhooks"] == []
    assert client.get(f"/lists/{world.other_list_id}/webhooks")["webhooks"] == []
    assert _stored_ids(world.engine)[1] == {world.list_id: None}


def test_deleting_an_unknown_webhook_id_is_not_found(world: World) -> None:
    for process in ("delete_webhook", "delete_batch_webhook"):
        with pytest.raises(NotFound) as raised:
            world.run("updatewebhook", api_key=world.api_key, process=process, id="0123456789")
        assert raised.value.param == "id"


def test_adding_a_webhook_without_a_webhook_base_url_is_a_conflict_naming_the_variable(
    world: World,
) -> None:
    world.webhook_base_url = ""
    for process in ("add_webhook", "add_batch_webhook"):
        with pytest.raises(Conflict, match="MCSYNC_WEBHOOK_BASE_URL"):
            world.run("updatewebhook", api_key=world.api_key, process=process)
    assert world.counts() == {}


def test_updatewebhook_for_an_account_not_configured_is_not_found_on_api_key(
    world: World,
) -> None:
    other = world.running.simulator.create_account("Elsewhere")
    with pytest.raises(NotFound) as raised:
        world.run("updatewebhook", api_key=other.api_key, process="add_batch_webhook")
    assert raised.value.param == "api_key"


def test_a_webhook_url_mailchimp_cannot_reach_is_an_upstream_error_with_its_title(
    world: World,
) -> None:
    world.running.simulator.url_checker = lambda url: False
    with pytest.raises(UpstreamError, match="Invalid Resource"):
        world.run("updatewebhook", api_key=world.api_key, process="add_batch_webhook")
    assert _stored_ids(world.engine)[0] is None


def test_every_error_is_an_action_error_with_an_http_status(world: World) -> None:
    with pytest.raises(ActionError) as raised:
        world.run("updatewebhook", api_key=world.api_key, process="delete_webhook")
    assert (raised.value.status, raised.value.param) == (400, "id")
