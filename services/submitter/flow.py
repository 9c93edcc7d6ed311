"""The submitter's place in a run: submit, then finish the run; after results, submit again.

While a run decides its rows, each chunk that queued updates sends ``SubmitFullBatches``:
whole batches go to Mailchimp at once, so it works on them while the rest of the audience
is decided; what does not fill a batch waits for the run's ``readyToSubmitUpdates``.

Updates can appear outside a run (a compliance refusal retried as pending, a tags update
that waited for its member): whenever some are left unsubmitted after a batch is processed,
the audience gets another ``SubmitUpdates`` with no run id.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from common.db import batches, config, runs
from common.db.config import SyncConnection
from common.mailchimp import MailchimpClient, MailchimpError
from common.messages import (
    CheckBatches,
    Message,
    ProcessBatch,
    SubmitFullBatches,
    SubmitUpdates,
)
from common.progress import after_stage, park_refused
from common.vocabulary import Stage
from services.submitter import handlers

logger = logging.getLogger(__name__)

SUBMIT = Stage.READY_TO_SUBMIT_UPDATES
QUEUE = Stage.READY_TO_RECONCILE_QUEUE


@dataclass(frozen=True)
class Deps:
    engine: sa.Engine
    mailchimp: Callable[[str], MailchimpClient]
    clock: Callable[[], datetime]
    posting_grace: timedelta = handlers.POSTING_GRACE

    def client_for(self, list_id: str) -> MailchimpClient:
        with self.engine.connect() as conn:
            connection = config.connection_for(conn, list_id)
        if connection is None:
            raise LookupError(f"audience {list_id} has no sync connection")
        return self.mailchimp(connection.api_key)


def submit(deps: Deps, message: SubmitUpdates) -> list[Message]:
    """Post the audience's unsubmitted updates; in a run, that completes the run."""
    with deps.engine.connect() as conn:
        connection = config.connection_for(conn, message.list_id)
    if connection is None:
        return []
    try:
        report = handlers.submit_updates(
            deps.engine,
            deps.mailchimp(connection.api_key),
            message.list_id,
            deps.clock(),
            posting_grace=deps.posting_grace,
        )
    except MailchimpError as error:
        return _refused(deps, message, error)
    if not message.run_id:
        return []
    return _finish_run(deps, connection, message, report)


def _refused(deps: Deps, message: SubmitUpdates, error: MailchimpError) -> list[Message]:
    """Mailchimp refused a batch (its updates stay unsubmitted): a run's submission parks
    the run saying why; one outside a run is left to the next run's."""
    with deps.engine.connect() as conn:
        state = runs.read(conn, message.list_id)
    if message.run_id and state is not None and state.current(message.run_id, SUBMIT):
        return park_refused(deps.engine, state, SUBMIT, "a batch", error, deps.clock)
    logger.warning(
        "audience %s: Mailchimp refused a batch (%s); left to the next run", message.list_id, error
    )
    return []


def submit_full_batches(deps: Deps, message: SubmitFullBatches) -> list[Message]:
    """Post the audience's unsubmitted updates while they fill whole batches: a run's chunks
    send this as they queue updates, so Mailchimp works on the first batches while the rest
    of the audience is decided. The remainder is the run's ``readyToSubmitUpdates``."""
    with deps.engine.connect() as conn:
        connection = config.connection_for(conn, message.list_id)
    if connection is None:
        return []
    try:
        handlers.submit_full_batches(
            deps.engine,
            deps.mailchimp(connection.api_key),
            message.list_id,
            deps.clock(),
            posting_grace=deps.posting_grace,
        )
    except MailchimpError as error:  # the run's own submit stage meets it again, and parks
        logger.warning("audience %s: Mailchimp refused a batch (%s)", message.list_id, error)
    return []


def _finish_run(
    deps: Deps,
    connection: SyncConnection,
    message: SubmitUpdates,
    report: handlers.SubmitReport,
) -> list[Message]:
    with deps.engine.begin() as conn:
        state = runs.lock(conn, message.list_id)
        if not state.current(message.run_id, SUBMIT):
            return []
        posted = (
            f"{SUBMIT}: {report.batches_posted} batches posted ({report.updates_submitted} updates)"
        )
        runs.log(conn, state.list_id, posted, deps.clock())
        return after_stage(conn, state, SUBMIT, connection.data_sync, deps.clock())


def process(deps: Deps, message: ProcessBatch) -> list[Message]:
    """Apply a finished batch's results; submit what they left to send."""
    with deps.engine.connect() as conn:
        row = batches.find_batch(conn, message.mailchimp_batch_id)
    if row is None:
        return []  # another integration's batch: the account's webhook sees them all
    client = deps.client_for(row.list_id)
    handlers.process_batch(deps.engine, client, message.mailchimp_batch_id)
    return _submit_leftovers(deps, [row.list_id])


def check(deps: Deps, message: CheckBatches) -> list[Message]:
    """Poll unfinished batches whose webhook never came; submit what their results left."""
    with deps.engine.connect() as conn:
        lists = sorted(batches.lists_with_open_batches(conn))
    if not lists:
        return []
    handlers.check_batches(
        deps.engine, deps.client_for, deps.clock(), posting_grace=deps.posting_grace
    )
    return _submit_leftovers(deps, lists)


def _submit_leftovers(deps: Deps, list_ids: list[str]) -> list[Message]:
    with deps.engine.connect() as conn:
        waiting = [list_id for list_id in list_ids if batches.count_unsubmitted(conn, list_id)]
        active = {list_id for list_id in waiting if _submitting(conn, list_id)}
    return [
        SubmitUpdates(list_id=list_id, run_id="") for list_id in waiting if list_id not in active
    ]


def _submitting(conn: sa.Connection, list_id: str) -> bool:
    """A run deciding or submitting the audience posts what is waiting itself (full batches
    as its chunks go, the rest at its submit stage): no partial batch in between."""
    state = runs.read(conn, list_id)
    return state is not None and state.active and state.stage in (QUEUE, SUBMIT)
