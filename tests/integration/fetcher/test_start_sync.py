"""Starting a run survives its own worker: a redelivered ``StartSync`` carries on its run.

The fetcher commits the run's start, then counts the members at Mailchimp and plans the
pages, then sends a message per page. A worker killed (or a Mailchimp call failing) between
those steps has the broker deliver the same ``StartSync`` again; it must take up the run it
started, not find it "already running" and leave it stuck until it goes stale.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import requests
import sqlalchemy as sa

from common.db import config, crm, runs
from common.mailchimp import MailchimpClient, MailchimpTransientError
from common.messages import FetchPage, StartSync
from services.fetcher import handlers
from sim.mailchimp import RunningSimulator, Simulator, run_in_thread

pytestmark = pytest.mark.integration

MEMBERS = 2500  # three pages


@pytest.fixture
def deps(clean_tables: sa.Engine) -> Iterator[tuple[handlers.Deps, RunningSimulator, str]]:
    with run_in_thread(Simulator()) as running:
        account = running.simulator.create_account("Test Org")
        audience = running.simulator.create_list(account.api_key, "Newsletter")
        running.simulator.seed_members(audience.id, MEMBERS)
        with clean_tables.begin() as conn:
            group = crm.create_group(conn, "newsletter", "Newsletter")
            config.add_connection(
                conn, config.add_account(conn, "Test Org", account.api_key), audience.id, group, {}
            )
        client = MailchimpClient(account.api_key, base_url=running.api_url, retries=0)
        yield (
            handlers.Deps(clean_tables, lambda _: client, lambda: datetime.now(UTC)),
            running,
            audience.id,
        )
        client.close()


def _log(engine: sa.Engine, list_id: str) -> list[str]:
    with engine.connect() as conn:
        return [line["message"] for line in runs.read_log(conn, list_id)]


def test_a_start_whose_member_count_failed_is_taken_up_by_its_retry(
    deps: tuple[handlers.Deps, RunningSimulator, str],
) -> None:
    handler_deps, running, list_id = deps
    fault = {"kind": "status", "status": 503, "method": "GET", "path_prefix": "/lists/"}
    requests.post(running.base_url + "/_sim/faults", json=fault, timeout=5).raise_for_status()
    trigger = StartSync(list_id=list_id, max_time=0)

    with pytest.raises(MailchimpTransientError):
        handlers.start_sync(handler_deps, trigger)  # the run is started, its pages not planned
    again = handlers.start_sync(handler_deps, trigger)  # dramatiq's retry: the same message

    assert sorted(m.offset for m in again if isinstance(m, FetchPage)) == [0, 1000, 2000]
    assert not any("trigger ignored" in line for line in _log(handler_deps.engine, list_id))


def test_a_start_killed_before_sending_its_pages_sends_them_when_redelivered(
    deps: tuple[handlers.Deps, RunningSimulator, str],
) -> None:
    handler_deps, _, list_id = deps
    trigger = StartSync(list_id=list_id, max_time=0)

    first = handlers.start_sync(handler_deps, trigger)  # ... and the worker dies unsent
    again = handlers.start_sync(handler_deps, trigger)

    assert again == first and len(again) == 3


def test_another_trigger_while_the_run_goes_is_still_ignored(
    deps: tuple[handlers.Deps, RunningSimulator, str],
) -> None:
    handler_deps, _, list_id = deps
    handlers.start_sync(handler_deps, StartSync(list_id=list_id, max_time=0))

    assert handlers.start_sync(handler_deps, StartSync(list_id=list_id, max_time=0)) == []
    assert (
        _log(handler_deps.engine, list_id)[-1] == "already running (readyToFetch); trigger ignored"
    )


@pytest.mark.parametrize(
    ("change", "refusal"),
    [
        ({"api_key": "f" * 32 + "-us1"}, "401 API Key Invalid"),  # a wrong (or revoked) key
        ({"mailchimp_list_id": "0000000000"}, "404 Resource Not Found"),  # no such audience
    ],
)
def test_a_run_mailchimp_refuses_at_its_start_is_parked_at_once_saying_why(
    deps: tuple[handlers.Deps, RunningSimulator, str], change: dict[str, str], refusal: str
) -> None:
    handler_deps, running, list_id = deps
    engine = handler_deps.engine
    with engine.begin() as conn:
        if "api_key" in change:
            conn.execute(sa.text("UPDATE mailchimpsync_account SET api_key = :api_key"), change)
        else:
            conn.execute(
                sa.text(
                    "UPDATE mailchimpsync_connection SET mailchimp_list_id = :mailchimp_list_id"
                ),
                change,
            )
            list_id = change["mailchimp_list_id"]
    client = MailchimpClient(
        change.get("api_key", handler_deps.mailchimp("").api_key), base_url=running.api_url
    )
    refused_deps = handlers.Deps(engine, lambda _: client, handler_deps.clock)

    assert handlers.start_sync(refused_deps, StartSync(list_id=list_id, max_time=0)) == []

    with engine.connect() as conn:
        state = runs.read(conn, list_id)
    assert state is not None and state.parked_reason is not None
    assert state.parked_reason.startswith(f"Mailchimp refused to count the members: {refusal}")
    assert _log(engine, list_id)[-1].startswith("parked before readyToFetch: Mailchimp refused")
    client.close()
