"""``abortsync``: the emergency stop of one sync connection (seed: API reference).

What it does, for the audience of the connection's subscription group:

1. asks Mailchimp to delete (``DELETE /batches/{id}``) each of our batches whose results
   are not applied yet (404: already gone, fine). No transaction is open meanwhile; if
   Mailchimp fails, nothing in our database has changed and a retry starts over (batches
   deleted by the first try now answer 404).
2. in one transaction: completes with the error ``aborted`` every open update of those
   batches and every unsubmitted update of the audience, records ``fail`` on their cache
   rows, marks those batch rows ``aborted`` (``response_processed`` 2), and releases the
   audience's run (its status row back to ``readyToFetch`` with no run, its fetch pages
   forgotten), so the next ``fetchandreconcile`` starts a clean run.

Calling it again is harmless: there is nothing left to delete or abort. A retry after an
interrupted call completes the abort.

A submitter posting at that very moment
=======================================
The submitter claims updates in a transaction holding the audience's claim lock and creates
a batch row in the *posting* state (no Mailchimp id yet), POSTs the batch with no
transaction open, then records Mailchimp's id by compare-and-set on that *posting* state
(``services/submitter/handlers.py``). The abort takes the same claim lock, so a claim is
either wholly before it (its batch row exists, *posting* or posted) or wholly after it (it
finds no unsubmitted update left to claim).

A *posting* row is never aborted here. Its POST may be on the wire: had we marked the row
``aborted`` (or completed its updates), the submitter's compare-and-set would fail and a
batch created at Mailchimp would be recorded nowhere: never deleted, its results never
applied. Instead the row is left to the submitter, which records the Mailchimp id within
seconds (or, if it died, its resolver adopts or releases the row after the posting grace,
``MCSYNC_POSTING_GRACE_SECONDS``).
The abort waits (up to ``POSTING_WAIT``) for young *posting* rows to leave that state, then
runs again: a batch now posted is deleted at Mailchimp and aborted; a released row's updates
are unsubmitted again, and aborted. Waiting rather than refusing keeps the common case, a
POST that takes a second, to one call. A row still *posting* after the wait is reported
(``batches_still_posting``) with its updates left open: call ``abortsync`` again once it is
resolved (the submitter's poller resolves an old one after the posting grace; if it releases
the row, its updates are unsubmitted again and the next call aborts them).

Likewise a batch that becomes posted between step 1 and step 2 is not aborted by that pass
(it was not deleted at Mailchimp); the next pass deletes it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from common.db import batches, config, runs, updates
from common.db.config import SyncConnection
from common.db.runs import RunState
from common.mailchimp import MailchimpClient, MailchimpError
from common.vocabulary import Stage
from services.admin.context import AdminContext, NotFound
from services.admin.mailchimp_support import mailchimp_errors

logger = logging.getLogger(__name__)

ABORTED = "aborted"
"""The ``error_response`` of the updates an abort completes."""
POSTING_WAIT = 15.0
"""Seconds to wait for batches being posted right now to be recorded (see module doc)."""
POLL_SECONDS = 0.2
DEADLOCK = "40P01"
DEADLOCK_ATTEMPTS = 3


@dataclass(frozen=True)
class AbortReport:
    """What one ``abortsync`` did."""

    group_id: int
    list_id: str
    batches_deleted_at_mailchimp: tuple[str, ...] = ()
    batches_already_gone: tuple[str, ...] = ()
    batches_aborted: int = 0
    updates_aborted: int = 0
    rows_failed: int = 0
    run_released: bool = False
    batches_still_posting: tuple[int, ...] = ()
    posted_meanwhile: tuple[int, ...] = ()

    def then(self, later: AbortReport) -> AbortReport:
        """This pass followed by a later one."""
        return replace(
            later,
            batches_deleted_at_mailchimp=(
                self.batches_deleted_at_mailchimp + later.batches_deleted_at_mailchimp
            ),
            batches_already_gone=self.batches_already_gone + later.batches_already_gone,
            batches_aborted=self.batches_aborted + later.batches_aborted,
            updates_aborted=self.updates_aborted + later.updates_aborted,
            rows_failed=self.rows_failed + later.rows_failed,
            run_released=self.run_released or later.run_released,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "group_id": self.group_id,
            "list_id": self.list_id,
            "batches_deleted_at_mailchimp": len(self.batches_deleted_at_mailchimp),
            "batches_already_gone": len(self.batches_already_gone),
            "mailchimp_batch_ids": [
                *self.batches_deleted_at_mailchimp,
                *self.batches_already_gone,
            ],
            "batches_aborted": self.batches_aborted,
            "updates_aborted": self.updates_aborted,
            "rows_failed": self.rows_failed,
            "run_released": self.run_released,
            "batches_still_posting": len(self.batches_still_posting),
            "batches_posted_meanwhile": len(self.posted_meanwhile),
        }


def abort_sync(ctx: AdminContext, group_id: int, posting_wait: float = POSTING_WAIT) -> AbortReport:
    """Abort the sync of ``group_id``'s audience (see the module docstring)."""
    connection = _connection(ctx.engine, group_id)
    client = ctx.mailchimp(connection.api_key)
    deadline = time.monotonic() + posting_wait
    report = _abort_once(ctx, client, connection)
    while (report.posted_meanwhile and time.monotonic() < deadline) or (
        report.batches_still_posting
        and _posts_moved(ctx, connection.list_id, report.batches_still_posting, deadline)
    ):
        report = report.then(_abort_once(ctx, client, connection))
    return report


def _connection(engine: sa.Engine, group_id: int) -> SyncConnection:
    with engine.connect() as conn:
        found = config.load_connections(conn, group_id=group_id)
    if not found:
        raise NotFound(
            f"group_id: no sync connection has subscription group {group_id}", "group_id"
        )
    return found[0]


def _abort_once(
    ctx: AdminContext, client: MailchimpClient, connection: SyncConnection
) -> AbortReport:
    """One pass: delete at Mailchimp, then abort in one transaction."""
    with ctx.engine.connect() as conn:
        posted = batches.unprocessed_batches(conn, connection.list_id)
    deleted, gone = _delete_at_mailchimp(client, [str(b.mailchimp_batch_id) for b in posted])
    for _ in range(DEADLOCK_ATTEMPTS - 1):
        try:
            with ctx.engine.begin() as conn:
                return _abort_in_db(conn, connection, deleted, gone, ctx.clock())
        except sa.exc.OperationalError as error:
            # The poller may abort a batch it just found gone (we deleted it), locking in the
            # opposite order; Postgres then cancels one of us, and ours is simply redone.
            if getattr(error.orig, "sqlstate", None) != DEADLOCK:
                raise
            logger.warning("abortsync %s: deadlock, trying again", connection.list_id)
    with ctx.engine.begin() as conn:
        return _abort_in_db(conn, connection, deleted, gone, ctx.clock())


def _delete_at_mailchimp(
    client: MailchimpClient, batch_ids: list[str]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(deleted now, already gone); any other answer stops the abort before the database."""
    deleted: list[str] = []
    gone: list[str] = []
    with mailchimp_errors("abortsync: deleting batches", key_is_param=False):
        for batch_id in batch_ids:
            try:
                client.delete(f"/batches/{batch_id}")
            except MailchimpError as error:
                if error.status != 404:
                    raise
                gone.append(batch_id)
            else:
                deleted.append(batch_id)
    return tuple(deleted), tuple(gone)


def _abort_in_db(
    conn: sa.Connection,
    connection: SyncConnection,
    deleted: tuple[str, ...],
    gone: tuple[str, ...],
    now: datetime,
) -> AbortReport:
    list_id = connection.list_id
    # The run's row first: a stage unit in flight (it holds the row shared) finishes first,
    # and no later unit of this run finds it current. Then the submitter's claim lock.
    state = runs.lock(conn, list_id)
    batches.lock_audience_for_claim(conn, list_id)
    aborted = batches.abort_posted_batches(conn, (*deleted, *gone), ABORTED)
    unsubmitted = updates.abort_unsubmitted(conn, list_id, ABORTED)
    failed = aborted.cache_ids | {cache_id for _, cache_id in unsubmitted}
    batches.fail_rows_of_updates(conn, [*aborted.update_ids, *(u for u, _ in unsubmitted)])
    released = _release_run(conn, state, now)
    report = AbortReport(
        group_id=connection.subscription_group_id,
        list_id=list_id,
        batches_deleted_at_mailchimp=deleted,
        batches_already_gone=gone,
        batches_aborted=len(aborted.batch_row_ids),
        updates_aborted=len(aborted.update_ids) + len(unsubmitted),
        rows_failed=len(failed),
        run_released=released,
        batches_still_posting=tuple(b.id for b in batches.posting_batches_of(conn, list_id)),
        # Posted after this pass asked Mailchimp to delete: the next pass deletes them.
        posted_meanwhile=tuple(b.id for b in batches.unprocessed_batches(conn, list_id)),
    )
    if released or report.batches_aborted or report.updates_aborted:
        runs.log(conn, list_id, _log_line(report), now)
    logger.warning("abortsync %s: %s", list_id, report.to_json())
    return report


def _release_run(conn: sa.Connection, state: RunState, now: datetime) -> bool:
    """Forget the audience's run (if it has one) so the next trigger starts a fresh run."""
    if state.run_id is None and state.stage is Stage.READY_TO_FETCH:
        return False
    runs.reset(conn, state.list_id, now, why="abortsync")
    return True


def _log_line(report: AbortReport) -> str:
    line = (
        f"sync aborted (abortsync): {len(report.batches_deleted_at_mailchimp)} batches deleted "
        f"at Mailchimp, {report.batches_aborted} batches and {report.updates_aborted} updates "
        f"aborted, {report.rows_failed} rows marked fail"
    )
    if report.batches_still_posting:
        line += f"; {len(report.batches_still_posting)} batches still being posted"
    return line


def _posts_moved(
    ctx: AdminContext, list_id: str, posting: tuple[int, ...], deadline: float
) -> bool:
    """Wait until one of these *posting* rows left that state (True), or give up (False) at
    the deadline or at once when none is young enough to have its POST still on the wire."""
    while time.monotonic() < deadline:
        with ctx.engine.connect() as conn:
            rows = [b for b in batches.posting_batches_of(conn, list_id) if b.id in posting]
        if len(rows) < len(posting):
            return True
        young = ctx.clock() - ctx.settings.posting_grace
        if not any(b.submitted_at is not None and b.submitted_at > young for b in rows):
            return False
        time.sleep(POLL_SECONDS)
    return False
