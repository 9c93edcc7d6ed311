"""Audience events end to end: the simulator fires each webhook at the webhooks service,
which stores it and enqueues SyncMember; the reconciler syncs that member now. Each test
runs with both CRMs: the embedded one, and CiviCRM's own database on MariaDB."""

from __future__ import annotations

import dataclasses
import io
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from civicrm_support import CRMS, crm_side
from webhooks_support import serve_in_thread

from common.db import inbox
from common.member_data import subscriber_hash
from common.settings import Settings
from common.sync_request import SyncRequest
from mcsync import workers
from mcsync.demo import SUBSCRIPTION_GROUP, SeededAudience, seed_both_sides
from mcsync.demo_data import plan_demo
from mcsync.sync import fetch_and_reconcile
from services.admin.context import AdminContext
from services.admin.registry import ACTIONS
from services.webhooks.app import Deps, create_app
from services.webhooks.relay import publish_pending
from sim.mailchimp import RunningSimulator, Simulator, run_in_thread

pytestmark = pytest.mark.integration

BOTH_SUBSCRIBED = "subscribed on both sides"
CIVICRM_DATABASE = "mcsync_audience_events_test"


@dataclass
class Stack:
    engine: sa.Engine
    simulator: RunningSimulator
    audience: SeededAudience
    subscribed: list[str]  # addresses Added in the CRM and subscribed at Mailchimp
    send: Callable[..., None]
    crm_engine: sa.Engine  # the CRM's tables: our Postgres's, or CiviCRM's database

    def act(self, email: str, action: str, **details: Any) -> list[str]:
        url = (
            f"{self.simulator.base_url}/_sim/lists/{self.audience.list_id}"
            f"/members/{email}/actions/{action}"
        )
        answer = requests.post(url, json={"source": "user", **details}, timeout=10)
        answer.raise_for_status()
        return list(answer.json()["events"])

    def wait_for_events(self, count: int, timeout: float = 30) -> list[tuple[str, str]]:
        """(event type, outcome) of every stored event, once ``count`` are all processed."""
        deadline = time.monotonic() + timeout
        while True:
            with self.engine.connect() as conn:
                rows = conn.execute(
                    sa.text(
                        "SELECT event_type, outcome, processed_at "
                        "FROM mailchimpsync_webhook_event ORDER BY id"
                    )
                ).all()
            if len(rows) >= count and all(r.processed_at for r in rows):
                return [(r.event_type, r.outcome) for r in rows]
            assert time.monotonic() < deadline, f"events not processed in time: {rows}"
            time.sleep(0.2)

    def crm(self, email: str) -> tuple[str | None, str | None, str | None, int]:
        """(group status, first name, last name, on hold) of the contact holding ``email``."""
        with self.crm_engine.connect() as conn:
            row = conn.execute(
                sa.text("""
                    SELECT gc.status, c.first_name, c.last_name, e.on_hold
                    FROM civicrm_email e
                    JOIN civicrm_contact c ON c.id = e.contact_id AND NOT c.is_deleted
                    JOIN civicrm_group g ON g.name = :group
                    LEFT JOIN civicrm_group_contact gc
                        ON gc.contact_id = c.id AND gc.group_id = g.id
                    WHERE lower(e.email) = lower(:email)
                """),
                {"email": email, "group": SUBSCRIPTION_GROUP[0]},
            ).one()
        return row.status, row.first_name, row.last_name, row.on_hold


@pytest.fixture(params=CRMS)
def stack(
    request: pytest.FixtureRequest, clean_tables: sa.Engine, database_url: str
) -> Iterator[Stack]:
    with (
        run_in_thread(Simulator()) as simulator,
        crm_side(request.param, clean_tables, CIVICRM_DATABASE) as side,
    ):
        plan = plan_demo(60, seed=5)
        audience = seed_both_sides(
            clean_tables, simulator.api_url, plan, side.writes, side.create_group
        )
        settings = Settings(
            database_url=database_url, crm_url=side.url, mailchimp_api_url=simulator.api_url
        )
        fetch_and_reconcile(
            settings, SyncRequest(max_time=0), wait=True, out=io.StringIO(), give_up_after=60
        )
        subscribed = [
            c.emails[0][0]
            for c in plan.contacts
            if c.case == BOTH_SUBSCRIBED and not c.is_deleted and not c.emails[0][1]
        ]
        running = workers.build(settings, workers.SERVICES, poll_seconds=1.0)
        running.start()
        try:
            app = create_app(Deps(engine=running.runtime.engine, send=running.runtime.send))
            with serve_in_thread(app) as served:
                _register_webhook(running, settings, audience, served.base_url)
                yield Stack(
                    clean_tables, simulator, audience, subscribed, running.runtime.send, side.engine
                )
        finally:
            running.stop()


def _register_webhook(
    running: workers.Workers, settings: Settings, audience: SeededAudience, base_url: str
) -> None:
    """The audience webhook, registered by the ``updatewebhook`` action as an admin would."""
    ctx = AdminContext(
        settings=dataclasses.replace(settings, webhook_base_url=base_url),
        engine=running.runtime.engine,
        mailchimp=running.runtime.mailchimp,
        send=running.runtime.send,
        clock=lambda: datetime.now(UTC),
    )
    action = ACTIONS["updatewebhook"]
    answer = action.run(ctx, action.params(api_key=audience.api_key, process="add_webhook"))
    assert answer["process"] == "add_webhook"


def test_each_audience_event_reaches_the_crm(stack: Stack) -> None:
    quitter, bounced, renamed, mover = stack.subscribed[:4]
    newcomer = "newcomer.e2e@example.org"
    assert all(stack.crm(email)[0] == "Added" for email in (quitter, bounced, renamed, mover))

    assert stack.act(newcomer, "subscribe", merge_fields={"FNAME": "Neve"}) == ["subscribe"]
    assert stack.act(quitter, "unsubscribe") == ["unsubscribe"]
    assert stack.act(bounced, "clean") == ["cleaned"]
    stack.act(renamed, "profile", merge_fields={"FNAME": "Renata", "LNAME": "Renamed"})
    moved_to = "moved." + mover
    assert stack.act(mover, "upemail", new_email=moved_to) == ["upemail"]

    outcomes = stack.wait_for_events(5)

    assert sorted(kind for kind, _ in outcomes) == sorted(
        ["subscribe", "unsubscribe", "cleaned", "profile", "upemail"]
    )
    assert stack.crm(newcomer)[:2] == ("Added", "Neve")
    assert stack.crm(quitter)[0] == "Removed"
    assert stack.crm(bounced)[0] == "Removed"
    assert stack.crm(bounced)[3] == 1  # the address is on hold
    assert stack.crm(renamed)[:3] == ("Added", "Renata", "Renamed")
    assert stack.crm(moved_to)[0] == "Added"  # the contact got the new address
    with stack.engine.connect() as conn:
        moved_row = conn.execute(
            sa.text(
                "SELECT mailchimp_email, sync_status FROM civicrm_mailchimpsync_cache "
                "WHERE mailchimp_member_id = :id"
            ),
            {"id": subscriber_hash(moved_to)},
        ).one()
    assert tuple(moved_row) == (moved_to, "ok")


def test_a_delivery_mailchimp_retries_changes_nothing_more(stack: Stack) -> None:
    quitter = stack.subscribed[0]
    stack.act(quitter, "unsubscribe")
    stack.wait_for_events(1)
    history_before = _history_rows(stack)
    with stack.engine.begin() as conn:
        event = conn.execute(
            sa.text("SELECT mailchimp_list_id, event_type, data FROM mailchimpsync_webhook_event")
        ).one()
        # Mailchimp retries a delivery it thinks failed: the same event arrives again.
        inbox.record(conn, event.mailchimp_list_id, event.event_type, event.data)
    # The relay publishes the stored event the broker never heard of.
    later = datetime.now(UTC) + timedelta(minutes=1)
    assert publish_pending(stack.engine, stack.send, later) == 1
    stack.wait_for_events(2)
    assert _history_rows(stack) == history_before
    assert stack.crm(quitter)[0] == "Removed"


def test_an_unsubscribe_older_than_the_crm_change_resubscribes_at_mailchimp(stack: Stack) -> None:
    comeback = stack.subscribed[1]
    # The CRM re-added the contact after Mailchimp's unsubscribe (the webhook came late):
    # the CRM is more recent, so the sync puts the member back at Mailchimp.
    with stack.crm_engine.begin() as conn:
        conn.execute(
            sa.text("""
                INSERT INTO civicrm_subscription_history
                    (contact_id, group_id, date, method, status)
                SELECT e.contact_id, g.id, :later, 'Admin', 'Added'
                FROM civicrm_email e, civicrm_group g
                WHERE lower(e.email) = lower(:email) AND g.name = :group
            """),
            {
                "email": comeback,
                "group": SUBSCRIPTION_GROUP[0],
                "later": datetime.now(UTC) + timedelta(minutes=10),
            },
        )
    assert stack.act(comeback, "unsubscribe", source="admin") == ["unsubscribe"]

    stack.wait_for_events(1)

    assert stack.crm(comeback)[0] == "Added"
    assert _mailchimp_status(stack, comeback, until="subscribed") == "subscribed"


def _history_rows(stack: Stack) -> int:
    with stack.crm_engine.connect() as conn:
        return int(
            conn.execute(sa.text("SELECT count(*) FROM civicrm_subscription_history")).scalar_one()
        )


def _mailchimp_status(stack: Stack, email: str, until: str, timeout: float = 30) -> str:
    """The member's status at the simulator, once it is ``until`` (or the timeout)."""
    url = f"{stack.simulator.base_url}/_sim/lists/{stack.audience.list_id}/members"
    deadline = time.monotonic() + timeout
    while True:
        members = requests.get(url, timeout=10).json()["members"]
        status = next(m["status"] for m in members if m["email_address"] == email)
        if status == until or time.monotonic() > deadline:
            return str(status)
        time.sleep(0.2)
