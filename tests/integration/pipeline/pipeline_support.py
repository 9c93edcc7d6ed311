"""Seeding a mixed audience on both sides, and reading back the final state of both."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import requests
import sqlalchemy as sa
from civicrm_support import CrmSide

from mcsync.demo import SUBSCRIPTION_GROUP, SeededAudience, seed_both_sides
from mcsync.demo_data import DemoPlan, plan_demo
from sim.mailchimp import RunningSimulator, Simulator, run_in_thread


@dataclass(frozen=True)
class World:
    simulator: RunningSimulator
    plan: DemoPlan
    audience: SeededAudience

    def mailchimp_statuses(self) -> dict[str, str]:
        url = f"{self.simulator.base_url}/_sim/lists/{self.audience.list_id}/members"
        members = requests.get(url, timeout=30).json()["members"]
        return {m["email_address"].lower(): m["status"] for m in members}

    def request_counts(self) -> dict[str, int]:
        counts = requests.get(self.simulator.base_url + "/_sim/requests", timeout=10).json()
        return dict(counts["counts"])


@contextmanager
def mixed_world(engine: sa.Engine, size: int = 400, side: CrmSide | None = None) -> Iterator[World]:
    """The demo's mixed audience on the simulator and in the CRM (``side``: embedded)."""
    with run_in_thread(Simulator()) as running:
        plan = plan_demo(size, seed=3)
        if side is None:
            audience = seed_both_sides(engine, running.api_url, plan)
        else:
            audience = seed_both_sides(
                engine, running.api_url, plan, side.writes, side.create_group
            )
        with engine.begin() as conn:
            conn.execute(sa.text("ANALYZE"))
        yield World(running, plan, audience)


CRM_MEMBERSHIP = sa.text(
    """
    SELECT lower(e.email) AS email, gc.status
    FROM civicrm_email e
    JOIN civicrm_contact c ON c.id = e.contact_id AND NOT c.is_deleted
    JOIN civicrm_group g ON g.name = :group
    LEFT JOIN civicrm_group_contact gc ON gc.contact_id = c.id AND gc.group_id = g.id
    """
)


def crm_statuses(engine: sa.Engine) -> dict[str, set[str | None]]:
    """Subscription group status of every undeleted contact, by email address."""
    found: dict[str, set[str | None]] = {}
    with engine.connect() as conn:
        for row in conn.execute(CRM_MEMBERSHIP, {"group": SUBSCRIPTION_GROUP[0]}):
            found.setdefault(row.email, set()).add(row.status)
    return found


# What each case of the demo data must look like once synced: (CRM status, Mailchimp status).
EXPECTED = {
    "subscribed on both sides": ("Added", "subscribed"),
    "subscribed at Mailchimp, not in the CRM group": ("Added", "subscribed"),
    "in the CRM group, not at Mailchimp": ("Added", "subscribed"),
    "unsubscribed at Mailchimp, Added in the CRM (Mailchimp newer)": ("Removed", "unsubscribed"),
    "unsubscribed at Mailchimp, Added in the CRM (CRM newer)": ("Added", "subscribed"),
    "unsubscribed on both sides": ("Removed", "unsubscribed"),
    "deleted contact subscribed at Mailchimp": ("Added", "subscribed"),
    "cleaned at Mailchimp, Added in the CRM": ("Added", "cleaned"),
    "archived at Mailchimp, Added in the CRM": ("Added", "subscribed"),
    "pending at Mailchimp": ("Added", "pending"),
    "on-hold email Added in the CRM": ("Added", None),
}


def mismatches(world: World, engine: sa.Engine) -> list[str]:
    """Every planned person whose final state differs from what their case expects."""
    crm, mailchimp = crm_statuses(engine), world.mailchimp_statuses()
    wrong = []
    for contact in world.plan.contacts:
        expected = EXPECTED.get(contact.case)
        email = contact.emails[0][0]
        if expected is None or contact.is_deleted:
            continue
        got = (crm.get(email, {None}), mailchimp.get(email))
        if expected[0] not in got[0] or expected[1] != got[1]:
            wrong.append(f"{contact.case}: {email} expected {expected}, got {got}")
    for member in world.plan.members:
        created = crm.get(member.email)
        if member.case == "new at Mailchimp (no contact)" and created != {"Added"}:
            wrong.append(f"{member.case}: {member.email} got CRM {created}")
        if member.case in LEFT_WITHOUT_CONTACT and created is not None:
            wrong.append(f"{member.case}: {member.email} should have no contact")
    return wrong


LEFT_WITHOUT_CONTACT = {"transactional at Mailchimp", "unsubscribed at Mailchimp (no contact)"}
