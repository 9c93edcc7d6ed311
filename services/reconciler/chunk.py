"""The reconcile queue (``readyToReconcileQueue``): decide the ``todo`` rows, a chunk at a time.

The run's chunks are planned by ``runs.plan_chunks``; ``reconcile_chunk`` claims the rows of
one by their ids (``FOR UPDATE SKIP LOCKED``: two workers never decide a row at once),
gathers every fact for the whole chunk in three queries, decides each row with the pure
``decide``, then writes each kind of outcome in one bulk statement: CRM membership changes
(history rows with method ``MCsync``), new update rows, folded updates cancelled, and each
row's ``sync_status`` with its ``civicrm_groups`` snapshot and, for a row that cannot sync,
its ``fail_reason``. Decided rows leave ``todo``, so running a chunk again does nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

import sqlalchemy as sa

from common import metrics
from common.crm.writes import EMBEDDED, CrmWrites
from common.db import cache, crm, updates
from common.db.config import SyncConnection
from common.vocabulary import SyncStatus
from services.reconciler.decide import (
    AddToGroup,
    ConnectionRules,
    CrmFacts,
    Fail,
    InterestRule,
    MailchimpFacts,
    OpenUpdate,
    PluginData,
    RemoveFromGroup,
    RowDecision,
    RowFacts,
    decide,
)

log = logging.getLogger(__name__)

NO_CONTACT = "the row has no CRM contact to change"
IN_SYNC = "in_sync"
ADDED = "added_to_group"
REMOVED = "removed_from_group"
QUEUED = "queued"
FAILED = "failed"
UPDATES_QUEUED = "updates_queued"
OUTCOMES = (IN_SYNC, ADDED, REMOVED, QUEUED, FAILED)
NO_PLUGIN_DATA = PluginData()  # immutable: one for every row when the audience syncs no data


@dataclass(frozen=True)
class ChunkReport:
    """What one chunk did: rows claimed, rows per outcome kind (``in_sync``,
    ``added_to_group``, ``removed_from_group``, ``queued``, ``failed``) and writes made
    (``crm_changes``, ``updates_queued``, ``updates_cancelled``)."""

    claimed: int
    counts: Mapping[str, int] = field(default_factory=dict)


class _Gathered(NamedTuple):
    """A claimed row, the facts ``decide`` weighs for it, and its contact's newest history
    per group (for the row's ``civicrm_groups`` snapshot)."""

    row: cache.ClaimedRow
    facts: RowFacts
    newest_history: Mapping[int, crm.HistoryEntry]


def reconcile_chunk(
    conn: sa.Connection,
    sc: SyncConnection,
    cache_ids: Sequence[int],
    now: datetime,
    writes: CrmWrites = EMBEDDED,
) -> ChunkReport:
    """Claim, decide and write those of ``cache_ids`` still ``todo``; CRM changes are dated
    ``now`` (to the second, as CiviCRM keeps dates) and made by ``writes``. Rows locked by
    another transaction are skipped, not waited for."""
    rows = cache.claim_todo_rows(conn, sc.list_id, cache_ids)
    if not rows:
        return ChunkReport(0, {})
    gathered = gather(conn, sc, rows)
    rules = connection_rules(sc)
    decisions = [_checked(g, decide(rules, g.facts)) for g in gathered]
    counts = write(conn, sc, gathered, decisions, now, writes)
    for outcome in OUTCOMES:
        metrics.ROWS_DECIDED.labels(sc.list_id, outcome).inc(counts[outcome])
    metrics.UPDATES_QUEUED.labels(sc.list_id).inc(counts[UPDATES_QUEUED])
    return ChunkReport(len(rows), counts)


def connection_rules(sc: SyncConnection) -> ConnectionRules:
    """The decision table's view of a sync connection."""
    interests = {i.interest_id: InterestRule(i.group_id, i.trust_override) for i in sc.interests}
    return ConnectionRules(sc.subscription_group_id, sc.trust_override, interests)


def gather(
    conn: sa.Connection, sc: SyncConnection, rows: Sequence[cache.ClaimedRow]
) -> list[_Gathered]:
    """Every fact ``decide`` needs for the claimed rows: two queries for the whole chunk."""
    contacts = [r.contact_id for r in rows if r.contact_id is not None]
    crm_facts = crm.contact_group_facts(conn, contacts, sc.group_ids)
    open_updates = updates.load_open_updates(conn, [r.id for r in rows])
    return [
        _Gathered(
            row,
            _row_facts(sc, row, crm_facts, open_updates.get(row.id, [])),
            _newest_history(crm_facts, row.contact_id),
        )
        for row in rows
    ]


def _newest_history(
    contacts: Mapping[int, crm.ContactGroupFacts], contact_id: int | None
) -> Mapping[int, crm.HistoryEntry]:
    contact = contacts.get(contact_id) if contact_id is not None else None
    return contact.newest_history if contact is not None else {}


def _row_facts(
    sc: SyncConnection,
    row: cache.ClaimedRow,
    contacts: Mapping[int, crm.ContactGroupFacts],
    open_updates: Sequence[updates.OpenUpdateRow],
) -> RowFacts:
    mailchimp = MailchimpFacts.from_cache(row.status, row.updated, row.email, row.mailchimp_data)
    contact = contacts.get(row.contact_id) if row.contact_id is not None else None
    return RowFacts(
        cache_id=row.id,
        mailchimp=mailchimp,
        crm=_crm_facts(contact, row.email),
        other_row_subscribed=row.other_row_subscribed,
        open_updates=tuple(OpenUpdate(u.update_id, u.data) for u in open_updates),
        plugin=PluginData.from_civicrm_data(row.civicrm_data) if sc.data_sync else NO_PLUGIN_DATA,
    )


def _crm_facts(contact: crm.ContactGroupFacts | None, email: str | None) -> CrmFacts:
    if contact is None:
        return CrmFacts()
    return CrmFacts(
        memberships=contact.memberships,
        history_at=contact.history_at,
        best_email=contact.best_email,
        email_on_hold=email is not None and email.lower() in contact.held_emails,
    )


def _checked(gathered: _Gathered, decision: RowDecision) -> RowDecision:
    """A CRM change for a row without a contact cannot be made: the row fails instead."""
    if decision.group_changes and gathered.row.contact_id is None:
        return RowDecision(
            decision.cache_id, Fail(NO_CONTACT), SyncStatus.FAIL, fail_reason=NO_CONTACT
        )
    return decision


def write(
    conn: sa.Connection,
    sc: SyncConnection,
    gathered: Sequence[_Gathered],
    decisions: Sequence[RowDecision],
    now: datetime,
    writes: CrmWrites = EMBEDDED,
) -> dict[str, int]:
    """Apply the chunk's decisions: one bulk statement per kind of write. Returns counts.

    Each decided row's ``civicrm_groups`` snapshot is written with its status: the newest
    history per group once the chunk's own changes are in, so they are not news to the next
    incremental run (other rows of a changed contact get the same snapshot)."""
    changes = _membership_changes(gathered, decisions, now.replace(microsecond=0))
    writes.set_memberships(conn, changes)
    snapshots = _snapshots_after(gathered, changes)
    new_updates = _new_updates(decisions)
    updates.insert_updates(conn, new_updates)
    cancelled = updates.cancel_updates(conn, [i for d in decisions for i in d.cancel_update_ids])
    statuses = [_final_status(g, d) for g, d in zip(gathered, decisions, strict=True)]
    rows = [
        cache.DecidedRow(
            g.row.id,
            status,
            snapshots.get(g.row.contact_id) if g.row.contact_id is not None else None,
            d.fail_reason if status == SyncStatus.FAIL else None,
        )
        for g, d, status in zip(gathered, decisions, statuses, strict=True)
    ]
    cache.set_decided(conn, rows)
    shared = {g.row.contact_id for g in gathered if g.row.other_rows}
    changed = {c.contact_id: snapshots[c.contact_id] for c in changes if c.contact_id in shared}
    cache.set_contact_snapshots(conn, sc.list_id, changed, (g.row.id for g in gathered))
    sent = {d.cache_id: d.plugin_sent for d in decisions if d.plugin_sent is not None}
    cache.store_plugin_sent(conn, sent)
    counts = _outcome_counts(decisions, statuses)
    counts.update(
        {
            "crm_changes": len(changes),
            UPDATES_QUEUED: len(new_updates),
            "updates_cancelled": cancelled,
        }
    )
    return counts


def _membership_changes(
    gathered: Sequence[_Gathered], decisions: Sequence[RowDecision], now: datetime
) -> list[crm.MembershipChange]:
    """The CRM group changes of the chunk, dated ``now`` (method ``MCsync``): a change two
    rows of one contact both ask for is made once."""
    contact_of = {g.row.id: g.row.contact_id for g in gathered}
    changes = (
        crm.MembershipChange(contact_id, change.group_id, change.status, now)
        for d in decisions
        if (contact_id := contact_of[d.cache_id]) is not None
        for change in d.group_changes
    )
    return list(dict.fromkeys(changes))


def _snapshots_after(
    gathered: Sequence[_Gathered], changes: Sequence[crm.MembershipChange]
) -> dict[int, cache.Snapshot]:
    """Each contact's snapshot once ``changes`` are written: a change is the newest history
    of its group unless a history row is dated later (later changes in input order win,
    as their history rows get higher ids)."""
    newest = {
        g.row.contact_id: dict(g.newest_history) for g in gathered if g.row.contact_id is not None
    }
    for change in changes:
        groups = newest.setdefault(change.contact_id, {})
        current = groups.get(change.group_id)
        if current is None or current.date <= change.date:
            groups[change.group_id] = crm.HistoryEntry(change.status.value, change.date)
    return {contact: cache.group_snapshot(groups) for contact, groups in newest.items()}


def _new_updates(decisions: Sequence[RowDecision]) -> list[updates.NewUpdate]:
    """Member updates and tags updates as separate rows, the member update first."""
    return [
        updates.NewUpdate(d.cache_id, data)
        for d in decisions
        for data in (d.update, d.tag_update)
        if data is not None
    ]


def _final_status(gathered: _Gathered, decision: RowDecision) -> SyncStatus:
    """``ok`` only when nothing is left open for the row: an older update that was not
    folded in (e.g. a queued email change) still has to reach Mailchimp, so ``live``."""
    if decision.sync_status != SyncStatus.OK:
        return decision.sync_status
    folded = set(decision.cancel_update_ids)
    still_open = any(u.update_id not in folded for u in gathered.facts.open_updates)
    return SyncStatus.LIVE if still_open else SyncStatus.OK


def _outcome_counts(
    decisions: Sequence[RowDecision], statuses: Sequence[SyncStatus]
) -> dict[str, int]:
    counts = dict.fromkeys(OUTCOMES, 0)
    for decision, status in zip(decisions, statuses, strict=True):
        counts[_kind(decision, status)] += 1
    return counts


def _kind(decision: RowDecision, status: SyncStatus) -> str:
    if status == SyncStatus.FAIL:
        return FAILED
    if isinstance(decision.subscription, AddToGroup):
        return ADDED
    if isinstance(decision.subscription, RemoveFromGroup):
        return REMOVED
    return QUEUED if status == SyncStatus.LIVE else IN_SYNC
