"""The CRM-side stages of one audience's sync (seed stages 2-7), one function each.

Each stage runs on the caller's connection inside the caller's transaction, never commits,
and is idempotent: a second run over the same state changes nothing (it may re-mark rows
``todo`` that are ``todo`` already). Each is a handful of set-based statements whatever the
audience's size, except where work must pass through Python (creating contacts through the
CRM gateway, plugins): those page the rows by keyset in chunks, so memory stays flat.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from common.crm.writes import EMBEDDED, CrmWrites
from common.db import cache, crm, updates
from common.db.config import SyncConnection
from common.vocabulary import NEW_CONTACT_SOURCE, Stage
from services.reconciler.plugins import DataPlugin, PluginOutput, PluginRow, civicrm_data

log = logging.getLogger(__name__)

NEW_CONTACTS_PAGE = 5000
PLUGIN_PAGE = 1000


@dataclass(frozen=True)
class StageReport:
    """What a stage did: counts by name (rows cleared, matched, created, ...)."""

    stage: Stage
    counts: Mapping[str, int] = field(default_factory=dict)


def fix_contact_ids(
    conn: sa.Connection, sc: SyncConnection, cache_ids: Sequence[int] | None = None
) -> StageReport:
    """``readyToFixContactIds``: unlink rows of deleted/missing contacts (-> ``todo``),
    delete rows with neither member nor contact, then match contact-less rows by email.
    ``cache_ids`` limits the unlinking and matching to those rows (a webhook's member).

    Idempotent: a second run finds nothing to unlink, delete or match.
    """
    cleared = cache.clear_missing_contacts(conn, sc.list_id, cache_ids)
    deleted = cache.delete_orphan_rows(conn, sc.list_id) if cache_ids is None else 0
    group = sc.subscription_group_id
    phases = cache.match_contacts_by_email(conn, sc.list_id, group, cache_ids)
    counts = {"cleared": cleared, "deleted": deleted}
    counts.update({f"matched_phase_{phase}": phases.get(phase, 0) for phase in range(1, 5)})
    return StageReport(Stage.READY_TO_FIX_CONTACT_IDS, counts)


def create_new_contacts_from_mailchimp(
    conn: sa.Connection,
    sc: SyncConnection,
    cache_ids: Sequence[int] | None = None,
    writes: CrmWrites = EMBEDDED,
) -> StageReport:
    """``readyToCreateNewContactsFromMailchimp``: a new Individual contact (Mailchimp email as
    primary + bulk-mail, Mailchimp names, source ``mailchimpsync``) for each row subscribed or
    pending at Mailchimp that has none; then (whole audience only) queue CRM best-email
    changes to Mailchimp.

    Idempotent: created rows have a contact, and an email change already open is not queued
    again.
    """
    created = 0
    after = 0
    while page := cache.members_without_contact(
        conn, sc.list_id, after, NEW_CONTACTS_PAGE, cache_ids
    ):
        ids = writes.insert_contacts(conn, [_new_contact(member) for member in page])
        cache.set_contact_ids(conn, {m.cache_id: cid for m, cid in zip(page, ids, strict=True)})
        created += len(ids)
        after = page[-1].cache_id
    queued = updates.queue_best_email_changes(conn, sc.list_id) if cache_ids is None else 0
    counts = {"created": created, "email_changes_queued": queued}
    return StageReport(Stage.READY_TO_CREATE_NEW_CONTACTS_FROM_MAILCHIMP, counts)


def _new_contact(member: cache.NewMember) -> crm.NewContact:
    email = crm.NewEmail(member.email, is_primary=True, is_bulkmail=True)
    return crm.NewContact(member.first_name, member.last_name, NEW_CONTACT_SOURCE, (email,))


def clean_up_duplicates(
    conn: sa.Connection, sc: SyncConnection, contact_ids: Sequence[int] | None = None
) -> StageReport:
    """``readyToCleanUpDuplicates``: delete a CRM-only row (no member id) of a contact that
    has a row with a member id in this audience (``contact_ids``: of those contacts only).
    Idempotent: deleted rows are gone."""
    deleted = cache.delete_crm_only_duplicates(conn, sc.list_id, contact_ids)
    return StageReport(Stage.READY_TO_CLEAN_UP_DUPLICATES, {"deleted": deleted})


def add_civi_only(conn: sa.Connection, sc: SyncConnection) -> StageReport:
    """``readyToAddCiviOnly``: a ``todo`` row for each undeleted contact ``Added`` to the
    subscription group without a row here. Idempotent: the second run finds them all."""
    added = cache.add_crm_only_rows(conn, sc.list_id, sc.subscription_group_id)
    return StageReport(Stage.READY_TO_ADD_CIVI_ONLY, {"added": added})


def check_for_group_changes(
    conn: sa.Connection, sc: SyncConnection, since: datetime | None
) -> StageReport:
    """``readyToCheckForGroupChanges``: rows of contacts with history in the audience's
    groups on/after ``since`` that their ``civicrm_groups`` snapshot does not hold yet become
    ``todo`` (every row with a contact when ``since`` is None).

    The snapshot itself is refreshed as each ``todo`` row is decided (``chunk.write``), in
    the transaction that reads the history it holds: writing it here too would rewrite every
    row of a full run once more, only for the chunk to overwrite the rows it changes.

    Idempotent: a second run marks the same rows.
    """
    if since is None:
        marked = cache.mark_all_contacts_todo(conn, sc.list_id)
    else:
        crm.refresh_history_statistics(conn)
        marked = cache.mark_group_changes_todo(conn, sc.list_id, sc.group_ids, since)
    return StageReport(Stage.READY_TO_CHECK_FOR_GROUP_CHANGES, {"marked_todo": marked})


def check_for_data_updates(
    conn: sa.Connection,
    sc: SyncConnection,
    plugins: Sequence[DataPlugin],
    cache_ids: Sequence[int] | None = None,
) -> StageReport:
    """``readyToCheckForDataUpdates`` (data syncs only): compute the plugins' data for rows
    subscribed/pending at Mailchimp or ``todo``, store it in ``civicrm_data``
    (``mailchimp_updates``, ``tag_updates``); rows whose data changed become ``todo``.

    Pages by keyset, ``PLUGIN_PAGE`` rows at a time. Idempotent: unchanged data is not
    written, so a second run marks nothing.
    """
    if not sc.data_sync or not plugins:
        return StageReport(Stage.READY_TO_CHECK_FOR_DATA_UPDATES, {"computed": 0, "changed": 0})
    computed = changed = 0
    after = 0
    while page := cache.load_plugin_rows(conn, sc.list_id, after, PLUGIN_PAGE, cache_ids):
        data = _plugin_data(conn, page, plugins)
        changed += cache.store_plugin_data(conn, data)
        computed += len(page)
        after = page[-1].cache_id
    counts = {"computed": computed, "changed": changed}
    return StageReport(Stage.READY_TO_CHECK_FOR_DATA_UPDATES, counts)


def _plugin_data(
    conn: sa.Connection, page: Sequence[cache.PluginSource], plugins: Sequence[DataPlugin]
) -> dict[int, dict[str, Any] | None]:
    """The new ``civicrm_data`` of each row of the page: other keys kept, ours replaced."""
    rows = [PluginRow(r.cache_id, r.contact_id, r.member_id, r.email, r.status) for r in page]
    outputs: dict[int, list[PluginOutput]] = {}
    for plugin in plugins:
        for cache_id, output in plugin.compute(conn, rows).items():
            outputs.setdefault(cache_id, []).append(output)
    return {r.cache_id: _merged(r.civicrm_data, outputs.get(r.cache_id)) for r in page}


def _merged(
    stored: Mapping[str, Any] | None, outputs: Sequence[PluginOutput] | None
) -> dict[str, Any] | None:
    # A row no plugin speaks for loses our keys; one never given any stays null.
    kept = {k: v for k, v in (stored or {}).items() if k not in civicrm_data([])}
    if outputs:
        return {**kept, **civicrm_data(outputs)}
    return kept or None
