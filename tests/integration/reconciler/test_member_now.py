"""Sync one member now (an audience webhook event) on a real Postgres.

Mailchimp's side is given as the member it would return; the end-to-end test with the
simulator firing real webhooks lives in tests/integration/pipeline.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from reconciler_support import LIST_ID, T0, World

from common.audience_events import AudienceEvent, AudienceEventType
from common.db import cache as cache_sql
from common.db import inbox
from common.db import updates as updates_sql
from common.mailchimp import MailchimpError
from common.member_data import FetchedMember, subscriber_hash
from common.messages import SubmitUpdates, SyncMember
from common.vocabulary import GroupStatus, MailchimpStatus
from services.reconciler import member_now

pytestmark = pytest.mark.integration

ADDED, REMOVED = GroupStatus.ADDED, GroupStatus.REMOVED
NOW = T0 + timedelta(days=10)
H = timedelta(hours=1)


def member(email: str, status: str, at: Any, first: str = "", last: str = "") -> FetchedMember:
    return FetchedMember(
        member_id=subscriber_hash(email),
        email=email,
        status=MailchimpStatus(status),
        last_changed=at,
        first_name=first,
        last_name=last,
    )


def event(kind: AudienceEventType, email: str, **fields: Any) -> AudienceEvent:
    return AudienceEvent(type=kind, list_id=LIST_ID, email=email, **fields)


def apply(w: World, ev: AudienceEvent, found: FetchedMember | None) -> member_now.Outcome:
    return member_now.apply_event(w.conn, w.sc, ev, found, (), NOW)


def membership(w: World, contact_id: int) -> str | None:
    sql = "SELECT status FROM civicrm_group_contact WHERE contact_id = :c AND group_id = :g"
    return w.conn.execute(sa.text(sql), {"c": contact_id, "g": w.group}).scalar()


def sync_history(w: World) -> list[tuple[Any, ...]]:
    sql = (
        "SELECT contact_id, group_id, status FROM civicrm_subscription_history "
        "WHERE method = 'MCsync' ORDER BY id"
    )
    return [tuple(r) for r in w.conn.execute(sa.text(sql))]


def row_of(w: World, email: str) -> dict[str, Any]:
    rows = [r for r in w.rows().values() if (r["mailchimp_email"] or "").lower() == email]
    assert len(rows) == 1, rows
    return rows[0]


def emails_of(w: World, contact_id: int) -> dict[str, tuple[bool, int]]:
    sql = "SELECT email, is_bulkmail, on_hold FROM civicrm_email WHERE contact_id = :c"
    return {e: (bulk, hold) for e, bulk, hold in w.conn.execute(sa.text(sql), {"c": contact_id})}


def test_a_subscribe_from_a_stranger_creates_the_contact_and_adds_it(world: World) -> None:
    w = world
    found = member("new@example.org", "subscribed", T0, "Nia", "New")

    outcome = apply(w, event(AudienceEventType.SUBSCRIBE, "new@example.org"), found)

    row = row_of(w, "new@example.org")
    assert row["mailchimp_member_id"] == subscriber_hash("new@example.org")
    assert row["sync_status"] == "ok"
    assert row["civicrm_contact_id"] is not None
    assert membership(w, row["civicrm_contact_id"]) == "Added"
    assert sync_history(w) == [(row["civicrm_contact_id"], w.group, "Added")]
    assert outcome.updates_queued == 0
    assert "added_to_group 1" in outcome.line


def test_a_subscribe_matches_an_existing_contact_by_email(world: World) -> None:
    w = world
    jo = w.contact("Jo", "jo@example.org")
    w.history(jo, REMOVED, T0 - H)

    apply(
        w,
        event(AudienceEventType.SUBSCRIBE, "jo@example.org"),
        member("jo@example.org", "subscribed", T0),
    )

    assert row_of(w, "jo@example.org")["civicrm_contact_id"] == jo
    assert membership(w, jo) == "Added"


def test_a_member_a_fetch_already_stored_is_still_decided(world: World) -> None:
    w = world
    jo = w.contact("Jo", "jo@example.org")
    w.history(jo, REMOVED, T0 - H)
    found = member("jo@example.org", "subscribed", T0)
    cache_sql.merge_fetched(w.conn, LIST_ID, w.group, [found])  # the incremental fetch came first
    w.conn.execute(
        sa.text(
            "UPDATE civicrm_mailchimpsync_cache SET sync_status = 'ok', civicrm_contact_id = :c"
        ),
        {"c": jo},
    )

    apply(w, event(AudienceEventType.SUBSCRIBE, "jo@example.org"), found)

    assert membership(w, jo) == "Added"


def test_an_unsubscribe_removes_from_the_group_and_cancels_unsubmitted_updates(
    world: World,
) -> None:
    w = world
    al = w.contact("Al", "al@example.org")
    w.history(al, ADDED, T0)
    cache_id = w.row(
        "al@example.org", "subscribed", al, member_id=subscriber_hash("al@example.org"), at=T0
    )
    updates_sql.insert_updates(
        w.conn, [updates_sql.NewUpdate(cache_id, {"interests": {"x": True}})]
    )

    apply(
        w,
        event(AudienceEventType.UNSUBSCRIBE, "al@example.org", action="unsub", reason="manual"),
        member("al@example.org", "unsubscribed", T0 + H),
    )

    assert membership(w, al) == "Removed"
    assert w.updates() == [
        (
            cache_id,
            {"interests": {"x": True}},
            True,
            "cancelled: the member unsubscribed at Mailchimp",
        )
    ]
    assert row_of(w, "al@example.org")["sync_status"] == "ok"


def test_cleaned_puts_the_address_on_hold_and_removes_from_the_group(world: World) -> None:
    w = world
    cy = w.contact("Cy", "cy@example.org")
    w.history(cy, ADDED, T0)
    w.row("cy@example.org", "subscribed", cy, member_id=subscriber_hash("cy@example.org"), at=T0)

    apply(
        w,
        event(AudienceEventType.CLEANED, "cy@example.org", reason="hard"),
        member("cy@example.org", "cleaned", T0 + H),
    )

    assert emails_of(w, cy)["cy@example.org"][1] == 1
    assert membership(w, cy) == "Removed"
    assert row_of(w, "cy@example.org")["mailchimp_status"] == "cleaned"


def test_profile_takes_the_names_from_the_merges(world: World) -> None:
    w = world
    di = w.contact("Di", "di@example.org")
    w.history(di, ADDED, T0)
    w.row("di@example.org", "subscribed", di, member_id=subscriber_hash("di@example.org"), at=T0)

    apply(
        w,
        event(AudienceEventType.PROFILE, "di@example.org", first_name="Diana", last_name="Prince"),
        member("di@example.org", "subscribed", T0, "Diana", "Prince"),
    )

    names = w.conn.execute(
        sa.text("SELECT first_name, last_name FROM civicrm_contact WHERE id = :c"), {"c": di}
    ).one()
    assert tuple(names) == ("Diana", "Prince")
    assert membership(w, di) == "Added"
    assert sync_history(w) == []


@pytest.mark.parametrize(("first", "last"), [("", "Prince"), ("Diana", "  "), ("", "")])
def test_profile_with_an_empty_name_leaves_that_crm_name_as_it_is(
    world: World, first: str, last: str
) -> None:
    w = world
    di = w.contact("Di", "di@example.org")  # last name "Tester"
    w.row("di@example.org", "subscribed", di, member_id=subscriber_hash("di@example.org"), at=T0)

    apply(
        w,
        event(AudienceEventType.PROFILE, "di@example.org", first_name=first, last_name=last),
        member("di@example.org", "subscribed", T0, first, last),
    )

    names = w.conn.execute(
        sa.text("SELECT first_name, last_name FROM civicrm_contact WHERE id = :c"), {"c": di}
    ).one()
    assert tuple(names) == (first.strip() or "Di", last.strip() or "Tester")


def test_upemail_moves_the_row_and_gives_the_contact_the_new_address(world: World) -> None:
    w = world
    ed = w.contact("Ed", "ed@example.org")
    w.history(ed, ADDED, T0)
    old_row = w.row(
        "ed@example.org", "subscribed", ed, member_id=subscriber_hash("ed@example.org"), at=T0
    )

    apply(
        w,
        event(AudienceEventType.UPEMAIL, "ed.new@example.org", old_email="ed@example.org"),
        member("ed.new@example.org", "subscribed", T0 + H),
    )

    rows = w.rows()
    assert list(rows) == [old_row]
    assert rows[old_row]["mailchimp_email"] == "ed.new@example.org"
    assert rows[old_row]["mailchimp_member_id"] == subscriber_hash("ed.new@example.org")
    assert rows[old_row]["civicrm_contact_id"] == ed
    assert emails_of(w, ed) == {"ed@example.org": (False, 0), "ed.new@example.org": (True, 0)}
    assert membership(w, ed) == "Added"


def test_a_member_unknown_on_both_sides_changes_nothing(world: World) -> None:
    w = world
    before = w.snapshot()

    outcome = apply(w, event(AudienceEventType.SUBSCRIBE, "ghost@example.org"), None)

    assert w.snapshot() == before
    assert "nothing to do" in outcome.line


class FakeMailchimp:
    """Answers GET member with a fixed member (None: 404), counting the calls."""

    def __init__(self, found: dict[str, Any] | None) -> None:
        self.found = found
        self.calls = 0

    def get(self, path: str, params: Any = None) -> dict[str, Any]:
        self.calls += 1
        if self.found is None:
            raise MailchimpError(404, "Resource Not Found")
        return self.found


def test_the_handler_acts_once_and_submits_what_it_queued(committing_db: sa.Connection) -> None:
    w = World(committing_db)
    fi = w.contact("Fi", "fi@example.org")
    w.history(fi, REMOVED, T0 + H)  # the CRM's change is newer than Mailchimp's
    ev = event(AudienceEventType.SUBSCRIBE, "fi@example.org")
    event_id = inbox.record(w.conn, LIST_ID, ev.type.value, ev.to_json())
    w.conn.commit()
    api_member = {
        "id": subscriber_hash("fi@example.org"),
        "email_address": "fi@example.org",
        "status": "subscribed",
        "last_changed": T0.isoformat(),
    }
    fake = FakeMailchimp(api_member)
    deps = member_now.Deps(w.conn.engine, lambda _key: fake, lambda: NOW)  # type: ignore[arg-type,return-value]

    sent = member_now.sync_member(deps, SyncMember(event_id=event_id))
    again = member_now.sync_member(deps, SyncMember(event_id=event_id))

    assert sent == [SubmitUpdates(list_id=LIST_ID, run_id="")]
    assert again == []
    assert fake.calls == 1
    w.conn.rollback()
    assert [u[1] for u in w.updates()] == [{"status": "unsubscribed"}]
    processed = w.conn.execute(
        sa.text("SELECT processed_at, outcome FROM mailchimpsync_webhook_event")
    ).one()
    assert processed.processed_at == NOW
    assert "queued 1" in processed.outcome


def test_an_event_locked_by_the_relay_is_waited_for_not_dropped(
    committing_db: sa.Connection,
) -> None:
    w = World(committing_db)
    ev = event(AudienceEventType.SUBSCRIBE, "gil@example.org")
    event_id = inbox.record(w.conn, LIST_ID, ev.type.value, ev.to_json())
    w.conn.commit()
    api_member = {
        "id": subscriber_hash("gil@example.org"),
        "email_address": "gil@example.org",
        "status": "subscribed",
        "last_changed": T0.isoformat(),
    }
    deps = member_now.Deps(
        w.conn.engine,
        lambda _key: FakeMailchimp(api_member),  # type: ignore[arg-type,return-value]
        lambda: NOW,
    )
    locked = w.conn.engine.connect()
    locked.execute(
        sa.text("SELECT 1 FROM mailchimpsync_webhook_event WHERE id = :id FOR UPDATE"),
        {"id": event_id},
    )  # the relay marking the row published, say
    worker = threading.Thread(
        target=member_now.sync_member, args=(deps, SyncMember(event_id=event_id))
    )
    worker.start()
    worker.join(timeout=1)
    assert worker.is_alive()  # waiting for the lock, not skipping the event

    locked.commit()
    locked.close()
    worker.join(timeout=10)

    assert not worker.is_alive()
    outcome = w.conn.execute(
        sa.text("SELECT outcome FROM mailchimpsync_webhook_event WHERE id = :id"),
        {"id": event_id},
    ).scalar_one()
    assert outcome is not None and "added_to_group 1" in outcome
