"""A contact's best email changes in the CRM: the sync renames the member at Mailchimp once,
and the audience keeps one row for the person, whether Mailchimp takes the rename or not."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
import requests
import sqlalchemy as sa

from common.db import config, crm
from common.db.schema import cache
from common.settings import Settings
from common.vocabulary import GroupStatus
from mcsync.sync import SyncRequest, fetch_and_reconcile
from sim.mailchimp import RunningSimulator, Simulator, run_in_thread

pytestmark = pytest.mark.integration

LONG_AGO = datetime(2025, 1, 1, tzinfo=UTC)


@dataclass
class Audience:
    simulator: RunningSimulator
    engine: sa.Engine
    settings: Settings
    list_id: str
    group_id: int

    def members(self) -> dict[str, dict[str, object]]:
        url = f"{self.simulator.base_url}/_sim/lists/{self.list_id}/members"
        listed = requests.get(url, timeout=10).json()["members"]
        return {str(m["email_address"]): m for m in listed}

    def rows(self) -> list[sa.Row[tuple[object, ...]]]:
        query = sa.select(cache).where(cache.c.mailchimp_list_id == self.list_id)
        with self.engine.connect() as conn:
            return list(conn.execute(query.order_by(cache.c.id)))

    def person(self, first: str, *emails: str) -> int:
        """A contact in the group since long ago; its last email is its bulk-mail address,
        the one the sync subscribes."""
        mails = tuple(
            crm.NewEmail(e, is_primary=n == 0, is_bulkmail=n == len(emails) - 1)
            for n, e in enumerate(emails)
        )
        with self.engine.begin() as conn:
            (cid,) = crm.insert_contacts(conn, [crm.NewContact(first, "Tester", "test", mails)])
            change = crm.MembershipChange(cid, self.group_id, GroupStatus.ADDED, LONG_AGO, "Admin")
            crm.set_memberships(conn, [change])
        return cid

    def subscribed_at_mailchimp(self, *emails: str) -> None:
        url = f"{self.simulator.base_url}/_sim/lists/{self.list_id}/members/import"
        records = [
            {"email": e, "status": "subscribed", "last_changed": LONG_AGO.isoformat()}
            for e in emails
        ]
        requests.post(url, json=records, timeout=10).raise_for_status()

    def sync(self) -> str:
        out = io.StringIO()
        request = SyncRequest(max_time=0)
        fetch_and_reconcile(self.settings, request, wait=True, out=out, poll=0.2, give_up_after=60)
        return out.getvalue()


@pytest.fixture
def audience(clean_tables: sa.Engine, database_url: str) -> Iterator[Audience]:
    with run_in_thread(Simulator()) as running:
        control = running.base_url + "/_sim"
        key = requests.post(control + "/accounts", json={}, timeout=10).json()["api_key"]
        listed = requests.post(control + "/lists", json={"api_key": key}, timeout=10).json()
        with clean_tables.begin() as conn:
            group = crm.create_group(conn, "newsletter", "Newsletter")
            account = config.add_account(conn, "Example Org", key)
            config.add_connection(conn, account, listed["id"], group, {})
        settings = Settings(database_url=database_url, mailchimp_api_url=running.api_url)
        yield Audience(running, clean_tables, settings, listed["id"], group)


def test_a_renamed_member_keeps_one_row_that_follows_it_to_the_new_address(
    audience: Audience,
) -> None:
    audience.person("Ann", "ann@example.org", "ann.new@example.org")
    audience.subscribed_at_mailchimp("ann@example.org")

    audience.sync()

    (row,) = audience.rows()
    renamed = audience.members()["ann.new@example.org"]
    assert "ann@example.org" not in audience.members()
    assert (row.mailchimp_email, row.mailchimp_member_id) == ("ann.new@example.org", renamed["id"])
    assert (row.mailchimp_status, row.sync_status) == ("subscribed", "ok")

    second = audience.sync()

    assert [r.id for r in audience.rows()] == [row.id]
    assert "Mailchimp: 0 changes made" in second


def test_a_rename_mailchimp_refuses_says_why_and_adds_no_row(audience: Audience) -> None:
    # Bob's address is Ann's best too; at Mailchimp it is Bob's member, so the rename of
    # Ann's member to it is refused.
    bob = audience.person("Bob", "shared@example.org")
    ann = audience.person("Ann", "ann@example.org", "shared@example.org")
    audience.subscribed_at_mailchimp("ann@example.org", "shared@example.org")

    audience.sync()
    audience.sync()

    rows = {r.civicrm_contact_id: r for r in audience.rows()}
    assert sorted(rows) == sorted([ann, bob])
    assert rows[ann].mailchimp_email == "ann@example.org"
    assert rows[ann].sync_status == "fail"
    assert "Member Exists" in (rows[ann].fail_reason or "")
    assert set(audience.members()) == {"ann@example.org", "shared@example.org"}
