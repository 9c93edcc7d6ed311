"""The CRM tables take every value CiviCRM's own schema takes, and the sync reads them.

CiviCRM writes ``Deleted`` to the subscription history when a contact is deleted from a
group (its ``civicrm_group_contact`` row goes); its columns carry no CHECK constraints, and
several are nullable (``civicrm_schema`` ``*.entityType.php``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from reconciler_support import T0, World

from common.db import crm
from common.vocabulary import GroupStatus
from services.reconciler import chunk, stages

pytestmark = pytest.mark.integration

NOW = T0 + timedelta(days=10)
H = timedelta(hours=1)


def deleted_from_group(w: World, contact_id: int, at: Any) -> None:
    """What CiviCRM does when a contact is deleted from a group: the membership row goes and
    the history says ``Deleted``."""
    w.conn.execute(
        sa.text("DELETE FROM civicrm_group_contact WHERE contact_id = :c AND group_id = :g"),
        {"c": contact_id, "g": w.group},
    )
    w.conn.execute(
        sa.text(
            "INSERT INTO civicrm_subscription_history (contact_id, group_id, date, method, status)"
            " VALUES (:c, :g, :at, 'Admin', 'Deleted')"
        ),
        {"c": contact_id, "g": w.group, "at": at},
    )


def decide_all(w: World) -> None:
    stages.check_for_group_changes(w.conn, w.sc, None)
    todo = [r for r, v in w.rows().items() if v["sync_status"] == "todo"]
    chunk.reconcile_chunk(w.conn, w.sc, todo, NOW)


def test_a_contact_deleted_from_the_group_is_not_added_since_the_deletion(world: World) -> None:
    ann = world.contact("Ann", "ann@example.org")
    world.history(ann, GroupStatus.ADDED, T0)
    deleted_from_group(world, ann, T0 + 2 * H)
    row = world.row("ann@example.org", "subscribed", ann, at=T0 + H)  # before the deletion

    decide_all(world)

    assert world.updates() == [(row, {"status": "unsubscribed"}, False, None)]
    deleted_at = (T0 + 2 * H).isoformat(timespec="microseconds")
    assert world.rows()[row]["civicrm_groups"] == {
        str(world.group): {"status": "Deleted", "date": deleted_at}
    }


def test_a_member_subscribed_after_the_deletion_is_added_again(world: World) -> None:
    bea = world.contact("Bea", "bea@example.org")
    world.history(bea, GroupStatus.ADDED, T0)
    deleted_from_group(world, bea, T0 + H)
    world.row("bea@example.org", "subscribed", bea, at=T0 + 2 * H)

    decide_all(world)

    assert crm.membership_counts(world.conn, world.group)[GroupStatus.ADDED] == 1
    assert world.updates() == []


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE civicrm_group_contact SET status = NULL",
        "UPDATE civicrm_group_contact SET status = 'OUT'",  # a smart group's opt-out, once
        "UPDATE civicrm_subscription_history SET status = NULL, method = NULL",
        "INSERT INTO civicrm_subscription_history (contact_id, date, status) "
        "SELECT id, now(), 'Added' FROM civicrm_contact",  # group_id is nullable
        "INSERT INTO civicrm_email (email, is_primary, is_bulkmail, on_hold) "
        "VALUES ('nobody@example.org', false, false, 0)",  # contact_id is nullable
        "INSERT INTO civicrm_email (contact_id, is_primary, is_bulkmail, on_hold) "
        "SELECT id, false, true, 0 FROM civicrm_contact",  # so is the address
        "UPDATE civicrm_email SET on_hold = 2",  # on hold: opt-out
        "UPDATE civicrm_contact SET created_date = NULL, modified_date = NULL",
    ],
)
def test_values_civicrm_accepts_are_stored_and_synced(world: World, statement: str) -> None:
    cy = world.contact("Cy", "cy@example.org")
    world.history(cy, GroupStatus.ADDED, T0)
    world.row("cy@example.org", "subscribed", cy, at=T0 + H, sync_status="todo")
    world.row(contact_id=cy)  # a CRM-only row too, for the duplicate cleanup

    world.conn.execute(sa.text(statement))
    for stage in (
        stages.fix_contact_ids,
        stages.create_new_contacts_from_mailchimp,
        stages.clean_up_duplicates,
        stages.add_civi_only,
    ):
        stage(world.conn, world.sc)
    decide_all(world)

    assert all(r["sync_status"] != "todo" for r in world.rows().values())
    assert crm.membership_counts(world.conn, world.group)[GroupStatus.ADDED] in (0, 1)
