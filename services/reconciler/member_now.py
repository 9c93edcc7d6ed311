"""Sync one member now: what an audience webhook event asks of the reconciler.

The member is fetched from Mailchimp outside any transaction; then, in one transaction that
claims the stored event (so a redelivered message acts once): the event's own rules
(``upemail`` moves the row to the new address and gives the contact that address;
``unsubscribe``/``cleaned`` cancel the row's unsubmitted updates; ``cleaned`` puts the CRM
address on hold; ``profile`` takes the names), then the member is merged like a fetched page
and its row goes through the same stages as a run, limited to that row: fix/match/create
its contact, drop its contact's CRM-only duplicate, refresh the group snapshot, the data
plugins, and the decision. Updates it queues go out with the submitter straight away.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from common.audience_events import AudienceEvent, AudienceEventType
from common.crm.writes import EMBEDDED, CrmWrites
from common.db import cache, config, crm, inbox, updates
from common.db.config import SyncConnection
from common.mailchimp import MailchimpClient, MailchimpError
from common.member_data import MEMBER_FIELDS, FetchedMember, subscriber_hash
from common.messages import Message, SubmitUpdates, SyncMember
from common.vocabulary import SyncStatus
from services.reconciler import chunk, stages
from services.reconciler.plugins import DataPlugin

log = logging.getLogger(__name__)

CANCELLED_BY_EVENT = {
    AudienceEventType.UNSUBSCRIBE: "cancelled: the member unsubscribed at Mailchimp",
    AudienceEventType.CLEANED: "cancelled: Mailchimp cleaned the address",
}
NOT_FOUND = 404


@dataclass(frozen=True)
class Deps:
    engine: sa.Engine
    mailchimp: Callable[[str], MailchimpClient]
    clock: Callable[[], datetime]
    plugins: Sequence[DataPlugin] = ()
    crm: CrmWrites = EMBEDDED


@dataclass(frozen=True)
class Outcome:
    """What acting on an event did: a line for the inbox and whether updates were queued."""

    line: str
    updates_queued: int = 0


def sync_member(deps: Deps, message: SyncMember) -> list[Message]:
    """Act on a stored audience event once; submit the updates it queued."""
    with deps.engine.connect() as conn:  # a peek: the claim that counts comes after the fetch
        stored = inbox.peek(conn, message.event_id)
        connection = config.connection_for(conn, stored.list_id) if stored else None
    if stored is None:
        return []  # acted on already
    event = AudienceEvent.from_json(stored.data)
    member = None
    if connection is not None:
        member = fetch_member(deps.mailchimp(connection.api_key), stored.list_id, event.email)
    with deps.engine.begin() as conn:
        if inbox.claim(conn, message.event_id) is None:
            return []
        now = deps.clock()
        if connection is None:
            outcome = Outcome("ignored: the audience is no longer synced")
        else:
            writes = deps.crm.for_run(f"mcsync:event:{message.event_id}")
            outcome = apply_event(conn, connection, event, member, deps.plugins, now, writes)
        inbox.finish(conn, message.event_id, outcome.line, now)
    log.info("event %s (%s %s): %s", message.event_id, event.type, stored.list_id, outcome.line)
    if outcome.updates_queued:
        return [SubmitUpdates(list_id=stored.list_id, run_id="")]
    return []


def fetch_member(client: MailchimpClient, list_id: str, email: str) -> FetchedMember | None:
    """The member as Mailchimp has it now; None when Mailchimp has no such member."""
    try:
        found = client.get(
            f"/lists/{list_id}/members/{subscriber_hash(email)}",
            {"fields": ",".join(MEMBER_FIELDS)},
        )
    except MailchimpError as error:
        if error.status == NOT_FOUND:
            return None
        raise
    return FetchedMember.from_api(found)


def apply_event(
    conn: sa.Connection,
    sc: SyncConnection,
    event: AudienceEvent,
    member: FetchedMember | None,
    plugins: Sequence[DataPlugin],
    now: datetime,
    writes: CrmWrites = EMBEDDED,
) -> Outcome:
    """The event's rules, then the member's row through the stages and the decision; the
    CRM's facts of the member's contacts are brought up to date first."""
    _freshen(conn, sc, event, writes)
    if event.type is AudienceEventType.UPEMAIL:
        _move_to_new_address(conn, sc, event, member, writes)
    if member is not None:
        cache.merge_fetched(conn, sc.list_id, sc.subscription_group_id, [member])
    row = cache.row_of_member(conn, sc.list_id, member.member_id if member else None, event.email)
    if row is None:
        return Outcome("nothing to do: the member is neither at Mailchimp nor in the cache")
    if event.type in (AudienceEventType.UNSUBSCRIBE, AudienceEventType.CLEANED):
        _cancel_unsubmitted(conn, row.id, event.type)
    if event.type is AudienceEventType.CLEANED:
        writes.put_emails_on_hold(conn, [event.email], now)
    if member is None:
        return Outcome("the member is not at Mailchimp: left to the next sync")
    return _sync_row(conn, sc, event, row.id, plugins, now, writes)


def _freshen(
    conn: sa.Connection, sc: SyncConnection, event: AudienceEvent, writes: CrmWrites
) -> None:
    emails = [e for e in (event.email, event.old_email) if e]
    rows = (cache.row_of_member(conn, sc.list_id, subscriber_hash(e), e) for e in emails)
    contacts = [r.contact_id for r in rows if r is not None and r.contact_id is not None]
    writes.freshen(conn, emails, contacts, sc.group_ids)


def _sync_row(
    conn: sa.Connection,
    sc: SyncConnection,
    event: AudienceEvent,
    cache_id: int,
    plugins: Sequence[DataPlugin],
    now: datetime,
    writes: CrmWrites,
) -> Outcome:
    rows = [cache_id]
    # Decided whatever the merge found: a fetch may have stored this member first, and the
    # event's own rules (an address on hold, a new address) are news to the decision anyway.
    cache.set_sync_statuses(conn, [cache.RowStatus(cache_id, SyncStatus.TODO)])
    stages.fix_contact_ids(conn, sc, rows)
    stages.create_new_contacts_from_mailchimp(conn, sc, rows, writes)
    row = cache.member_row(conn, cache_id)
    if row is not None and row.contact_id is not None:
        stages.clean_up_duplicates(conn, sc, [row.contact_id])
        if event.type is AudienceEventType.PROFILE:
            writes.set_contact_names(conn, row.contact_id, event.first_name, event.last_name)
    if sc.data_sync:
        stages.check_for_data_updates(conn, sc, plugins, rows)
    report = chunk.reconcile_chunk(conn, sc, rows, now, writes)
    decided = ", ".join(f"{k} {v}" for k, v in report.counts.items() if v) or "nothing to do"
    return Outcome(f"row {cache_id}: {decided}", report.counts.get("updates_queued", 0))


def _move_to_new_address(
    conn: sa.Connection,
    sc: SyncConnection,
    event: AudienceEvent,
    member: FetchedMember | None,
    writes: CrmWrites,
) -> None:
    """``upemail``: the contact gets the new address (bulk-mail) if it lacks it, and the
    old address's row becomes the new member's (merged into it if the new one has a row)."""
    old = cache.row_of_member(conn, sc.list_id, subscriber_hash(event.old_email), event.old_email)
    if old is None:
        return
    if old.contact_id is not None:
        writes.add_emails(conn, [crm.EmailToAdd(old.contact_id, event.email, is_bulkmail=True)])
    new_id = member.member_id if member is not None else subscriber_hash(event.email)
    existing = cache.row_of_member(conn, sc.list_id, new_id, event.email)
    if existing is None or existing.id == old.id:
        cache.move_row_to_member(conn, old.id, new_id, event.email)
        return
    if existing.contact_id is None and old.contact_id is not None:
        cache.set_contact_ids(conn, {existing.id: old.contact_id})
    cache.delete_rows(conn, [old.id])


def _cancel_unsubmitted(conn: sa.Connection, cache_id: int, kind: AudienceEventType) -> None:
    open_updates = updates.load_open_updates(conn, [cache_id]).get(cache_id, [])
    ids = [u.update_id for u in open_updates]
    updates.cancel_updates(conn, ids, CANCELLED_BY_EVENT[kind])
