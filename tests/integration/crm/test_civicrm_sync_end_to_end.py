"""A sync with CiviCRM's own database (MariaDB) as the CRM: the stages run on the copy in our
Postgres, and every CRM change lands in CiviCRM's tables as CiviCRM writes it, once."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

import pytest
import requests
import sqlalchemy as sa
from civicrm_support import CiviCrmTables, civicrm_database, crm_user

from common.db import config
from common.settings import Settings
from mcsync.sync import SyncRequest, fetch_and_reconcile
from sim.mailchimp import RunningSimulator, Simulator, run_in_thread

pytestmark = pytest.mark.integration

DATABASE = "mcsync_civicrm_sync_test"
LONG_AGO = "2025-01-01 00:00:00"
RECENTLY = "2026-06-01T00:00:00+00:00"


@dataclass
class World:
    civi: CiviCrmTables
    simulator: RunningSimulator
    settings: Settings
    list_id: str
    group: int

    def import_members(self, *records: dict[str, object]) -> None:
        url = f"{self.simulator.base_url}/_sim/lists/{self.list_id}/members/import"
        requests.post(url, json=list(records), timeout=10).raise_for_status()

    def statuses(self) -> dict[str, str]:
        url = f"{self.simulator.base_url}/_sim/lists/{self.list_id}/members"
        listed = requests.get(url, timeout=10).json()["members"]
        return {str(m["email_address"]): str(m["status"]) for m in listed}

    def sync(self) -> str:
        out = io.StringIO()
        fetch_and_reconcile(
            self.settings, SyncRequest(max_time=0), wait=True, out=out, poll=0.2, give_up_after=90
        )
        return out.getvalue()

    def memberships(self) -> dict[str, str]:
        rows = self.civi.rows(
            "SELECT e.email, gc.status FROM civicrm_group_contact gc "
            "JOIN civicrm_email e ON e.contact_id = gc.contact_id AND e.is_primary = 1 "
            "WHERE gc.group_id = %s",
            self.group,
        )
        return {str(email): str(status) for email, status in rows}

    def history(self) -> list[tuple[object, ...]]:
        """(email, status, method, tracking by the sync?) per history row, oldest first."""
        return self.civi.rows(
            "SELECT e.email, h.status, h.method, coalesce(h.tracking LIKE 'mcsync:%%', 0) "
            "FROM civicrm_subscription_history h "
            "JOIN civicrm_email e ON e.contact_id = h.contact_id AND e.is_primary = 1 "
            "WHERE h.group_id = %s ORDER BY h.id",
            self.group,
        )


@pytest.fixture
def world(clean_tables: sa.Engine, database_url: str) -> Iterator[World]:
    with civicrm_database(DATABASE) as crm_url, run_in_thread(Simulator()) as running:
        civi = CiviCrmTables(DATABASE)
        control = running.base_url + "/_sim"
        key = requests.post(control + "/accounts", json={}, timeout=10).json()["api_key"]
        listed = requests.post(control + "/lists", json={"api_key": key}, timeout=10).json()
        group = civi.group("newsletter")
        with clean_tables.begin() as conn:
            account = config.add_account(conn, "Example Org", key)
            config.add_connection(conn, account, listed["id"], group, {})
        settings = Settings(
            database_url=database_url, crm_url=crm_url, mailchimp_api_url=running.api_url
        )
        yield World(civi, running, settings, listed["id"], group)


def test_a_sync_with_civicrm_brings_both_sides_into_agreement_once(world: World) -> None:
    ann = world.civi.contact("Ann", "Archer", "ann@example.org")
    cat = world.civi.contact("Cat", "Cooper", "cat@example.org")
    world.civi.join(ann, world.group, "Added", LONG_AGO)
    world.civi.join(cat, world.group, "Added", LONG_AGO)
    world.import_members(
        {
            "email": "bob@example.org",
            "status": "subscribed",
            "merge_fields": {"FNAME": "Bob", "LNAME": "Builder"},
            "last_changed": RECENTLY,
        },
        {"email": "cat@example.org", "status": "unsubscribed", "last_changed": RECENTLY},
    )

    world.sync()

    assert world.statuses() == {
        "ann@example.org": "subscribed",
        "bob@example.org": "subscribed",
        "cat@example.org": "unsubscribed",
    }
    assert world.memberships() == {
        "ann@example.org": "Added",
        "bob@example.org": "Added",
        "cat@example.org": "Removed",
    }
    (bob,) = world.civi.rows(
        "SELECT contact_type, first_name, last_name, display_name, sort_name, source, "
        "hash IS NOT NULL, created_date IS NOT NULL, is_deleted FROM civicrm_contact "
        "WHERE id = (SELECT contact_id FROM civicrm_email WHERE email = 'bob@example.org')"
    )
    assert bob == (
        "Individual",
        "Bob",
        "Builder",
        "Bob Builder",
        "Builder, Bob",
        "mailchimpsync",
        1,
        1,
        0,
    )
    assert world.civi.rows(
        "SELECT email, is_primary, is_bulkmail, on_hold FROM civicrm_email "
        "WHERE email = 'bob@example.org'"
    ) == [("bob@example.org", 1, 1, 0)]
    assert world.history() == [
        ("ann@example.org", "Added", "Admin", 0),
        ("cat@example.org", "Added", "Admin", 0),
        ("bob@example.org", "Added", "MCsync", 1),
        ("cat@example.org", "Removed", "MCsync", 1),
    ]

    second = world.sync()

    assert "Mailchimp: 0 changes made" in second
    assert len(world.history()) == 4
    assert world.civi.rows("SELECT COUNT(*) FROM civicrm_contact") == [(3,)]


def test_a_change_made_in_civicrm_between_syncs_reaches_mailchimp(world: World) -> None:
    ann = world.civi.contact("Ann", "Archer", "ann@example.org")
    world.civi.join(ann, world.group, "Added", LONG_AGO)
    world.sync()
    assert world.statuses() == {"ann@example.org": "subscribed"}

    world.civi.join(ann, world.group, "Removed")
    world.sync()

    assert world.statuses() == {"ann@example.org": "unsubscribed"}
    assert world.memberships() == {"ann@example.org": "Removed"}


READ_ONLY = {
    table: "SELECT"
    for table in (
        "civicrm_contact",
        "civicrm_email",
        "civicrm_group",
        "civicrm_group_contact",
        "civicrm_subscription_history",
    )
}


@pytest.mark.parametrize(
    ("case", "said"),
    [
        ("no answer", "does not answer"),
        ("wrong password", "refused the login"),
        ("read-only user", "may not INSERT, UPDATE on civicrm_contact"),
        ("no CiviCRM tables", "no table civicrm_subscription_history"),
    ],
)
def test_a_crm_the_sync_cannot_work_with_parks_the_run_saying_why_and_writes_nothing(
    world: World, clean_tables: sa.Engine, case: str, said: str
) -> None:
    world.import_members({"email": "bob@example.org", "status": "subscribed"})
    with _crm_url_for(case, world) as url:
        world.settings = replace(world.settings, crm_url=url)

        out = world.sync()

    assert "parked" in out and said in out
    with clean_tables.connect() as conn:
        reason = conn.execute(
            sa.text("SELECT parked_reason FROM civicrm_mailchimpsync_status")
        ).scalar_one()
    assert reason.startswith("the CRM cannot be synced: ") and said in reason
    assert "s3cret" not in out + reason
    if case != "no CiviCRM tables":
        assert world.civi.rows("SELECT COUNT(*) FROM civicrm_contact") == [(0,)]
        assert world.statuses() == {"bob@example.org": "subscribed"}


@contextmanager
def _crm_url_for(case: str, world: World) -> Iterator[str]:
    if case == "no answer":
        yield "mysql://civicrm:s3cret@127.0.0.1:1/civicrm"
    elif case == "wrong password":
        with crm_user(DATABASE, "mcsync_crm", "s3cret-right", READ_ONLY) as url:
            yield url.replace("s3cret-right", "s3cret-wrong")
    elif case == "read-only user":
        with crm_user(DATABASE, "mcsync_crm", "s3cret-right", READ_ONLY) as url:
            yield url
    else:
        world.civi.execute("DROP TABLE civicrm_subscription_history")
        yield str(world.settings.crm_url)
