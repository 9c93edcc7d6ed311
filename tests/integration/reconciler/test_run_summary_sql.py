"""The numbers ``--wait`` ends a run with: what changed on each side, and whether they agree."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from reconciler_support import T0, World

from common.db import crm, stats
from common.db import updates as updates_sql
from common.vocabulary import NEW_CONTACT_SOURCE, GroupStatus

pytestmark = pytest.mark.integration

ADDED, REMOVED = GroupStatus.ADDED, GroupStatus.REMOVED
SINCE = T0
H = timedelta(hours=1)


def _sync_change(w: World, contact: int, group: int, status: GroupStatus, hours: int) -> None:
    crm.set_memberships(w.conn, [crm.MembershipChange(contact, group, status, SINCE + hours * H)])


def _completed_update(w: World, cache_id: int, error: str | None, completed: bool = True) -> None:
    (update_id,) = updates_sql.insert_updates(
        w.conn, [updates_sql.NewUpdate(cache_id, {"status": "subscribed"})]
    )
    w.conn.execute(
        sa.text(
            "UPDATE civicrm_mailchimpsync_update SET completed = :done, error_response = :error "
            "WHERE id = :id"
        ),
        {"done": completed, "error": error, "id": update_id},
    )


def test_changes_count_the_runs_own_writes_on_each_side(world: World) -> None:
    w = world
    interest = w.interest_groups[0]
    other_group = crm.create_group(w.conn, "unmapped", "Not in this connection")
    w.contact("made", "made@example.org", source=NEW_CONTACT_SOURCE)
    w.contact("typed in", "typed@example.org")
    someone = w.contact("someone", "someone@example.org")
    _sync_change(w, someone, w.group, ADDED, hours=1)
    _sync_change(w, someone, interest, REMOVED, hours=2)
    _sync_change(w, someone, other_group, ADDED, hours=1)  # not this connection's group
    _sync_change(w, someone, interest, ADDED, hours=-1)  # before the run
    w.history(someone, REMOVED, SINCE + 3 * H)  # made by a person, not by the sync
    row = w.row("someone@example.org", "subscribed", someone)
    _completed_update(w, row, None)
    _completed_update(w, row, "Member Exists: already a list member")
    _completed_update(w, row, "cancelled: folded into a newer update")
    _completed_update(w, row, None, completed=False)

    changes = stats.changes_since(w.conn, w.sc, SINCE)

    assert changes == stats.Changes(
        contacts_created=1,
        crm_added=1,
        crm_removed=1,
        mailchimp_queued=4,
        mailchimp_done=1,
        mailchimp_failed=1,
    )


def test_agreement_counts_rows_apart_and_why_rows_cannot_sync(world: World) -> None:
    w = world

    def person(name: str, in_group: bool) -> int:
        contact = w.contact(name, f"{name}@example.org")
        if in_group:
            w.history(contact, ADDED, T0)
        return contact

    w.row("both@example.org", "subscribed", person("both", in_group=True))
    w.row("neither@example.org", "unsubscribed", person("neither", in_group=False))
    w.row("mc-only@example.org", "subscribed", person("mc-only", in_group=False))
    w.row("crm-only@example.org", "unsubscribed", person("crm-only", in_group=True))
    w.row(contact_id=person("not-at-mailchimp", in_group=True))
    w.row("pending@example.org", "pending", None)
    w.row("deleted@example.org", "subscribed", w.contact("deleted", deleted=True))

    def failed(name: str, reason: str | None) -> None:
        row = w.row(f"{name}@example.org", "cleaned", person(name, True), sync_status="fail")
        w.conn.execute(
            sa.text("UPDATE civicrm_mailchimpsync_cache SET fail_reason = :r WHERE id = :id"),
            {"r": reason, "id": row},
        )

    failed("cleaned1", "cleaned at Mailchimp")
    failed("cleaned2", "cleaned at Mailchimp")
    failed("refused", "Invalid Resource")
    failed("old", None)

    agreement = stats.agreement(w.conn, w.sc, reasons=2)

    # mc-only, crm-only, not-at-mailchimp, pending (no contact) and deleted; failed rows are
    # counted as cannot sync instead.
    assert agreement.disagreements == 5
    assert agreement.cannot_sync == 4
    assert agreement.fail_reasons == [("cleaned at Mailchimp", 2), ("Invalid Resource", 1)]


def test_an_audience_in_agreement_has_nothing_apart_and_no_reasons(world: World) -> None:
    agreement = stats.agreement(world.conn, world.sc)

    assert agreement == stats.Agreement(disagreements=0, cannot_sync=0, fail_reasons=[])
