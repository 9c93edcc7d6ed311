"""The CRM-side stages and the reconcile queue of one audience's run.

``run_crm_stages`` runs stages 2..7 one transaction each, holding the audience's status row
so no other worker runs a stage of the same audience meanwhile, and then splits the queue of
``todo`` rows into chunks. ``reconcile_chunk`` decides one chunk; several reconciler
processes share a big audience's chunks, each taken once (``runs.take_chunk``). The last
chunk to be decided moves the run on: rows marked ``todo`` meanwhile outside the chunks are
left to the next run. A chunk that queued updates asks the submitter to post whole batches at
once (``SubmitFullBatches``), unless the run is to stop before ``readyToSubmitUpdates``. A
message whose run or stage is no longer current finds nothing to do.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from common import logs
from common.crm.writes import EMBEDDED, CrmWrites
from common.db import config, runs
from common.db.config import SyncConnection
from common.db.runs import RunState
from common.messages import Message, ReconcileChunk, RunCrmStages, SubmitFullBatches
from common.progress import after_stage, unit_of_stage
from common.runs import CRM_UNFIT
from common.vocabulary import Stage
from services.reconciler import chunk, stages
from services.reconciler.plugins import DataPlugin

log = logging.getLogger(__name__)

CHUNK_SIZE = 1000
FIX = Stage.READY_TO_FIX_CONTACT_IDS
QUEUE = Stage.READY_TO_RECONCILE_QUEUE
SUBMIT = Stage.READY_TO_SUBMIT_UPDATES


@dataclass(frozen=True)
class Deps:
    engine: sa.Engine
    clock: Callable[[], datetime]
    plugins: Sequence[DataPlugin] = ()
    crm: CrmWrites = EMBEDDED


def _run_stage(conn: sa.Connection, deps: Deps, connection: SyncConnection, state: RunState) -> str:
    """Run the state's CRM stage in the caller's transaction; return a line for the log."""
    logs.bind(stage=state.stage.value)
    match state.stage:
        case Stage.READY_TO_FIX_CONTACT_IDS:
            report = stages.fix_contact_ids(conn, connection)
        case Stage.READY_TO_CREATE_NEW_CONTACTS_FROM_MAILCHIMP:
            writes = deps.crm.for_run(f"mcsync:{state.run_id}")
            report = stages.create_new_contacts_from_mailchimp(conn, connection, None, writes)
        case Stage.READY_TO_CLEAN_UP_DUPLICATES:
            report = stages.clean_up_duplicates(conn, connection)
        case Stage.READY_TO_ADD_CIVI_ONLY:
            report = stages.add_civi_only(conn, connection)
        case Stage.READY_TO_CHECK_FOR_GROUP_CHANGES:
            report = stages.check_for_group_changes(conn, connection, state.fetch_since)
        case Stage.READY_TO_CHECK_FOR_DATA_UPDATES:
            report = stages.check_for_data_updates(conn, connection, deps.plugins)
        case _:
            raise ValueError(f"{state.stage} is not a CRM stage")
    counts = ", ".join(f"{name} {count}" for name, count in report.counts.items() if count)
    return f"{state.stage}: {counts or 'nothing to do'}"


def run_crm_stages(deps: Deps, message: RunCrmStages) -> list[Message]:
    """Run CRM stages until the run reaches the reconcile queue, parks or leaves us."""
    if not _refresh_crm_facts(deps, message):
        return []
    while True:
        with deps.engine.begin() as conn:
            state = runs.lock(conn, message.list_id)
            connection = config.connection_for(conn, message.list_id)
            if connection is None or not state.current(message.run_id, state.stage):
                return []
            if state.stage is QUEUE:
                return _plan_queue(conn, connection, state, deps.clock())
            if state.stage is Stage.READY_TO_FETCH or state.stage is Stage.READY_TO_SUBMIT_UPDATES:
                return []
            completed = state.stage
            runs.log(conn, state.list_id, _run_stage(conn, deps, connection, state), deps.clock())
            sent = after_stage(conn, state, completed, connection.data_sync, deps.clock())
        if sent != [message]:
            return sent


def _refresh_crm_facts(deps: Deps, message: RunCrmStages) -> bool:
    """Before ``readyToFixContactIds``, bring the run's CRM facts up to date (CiviCRM's copy,
    outside the status row's lock: it takes a while). A CRM the sync cannot work with parks
    the run, its problems in the status log. Returns whether the stages may go on."""
    with deps.engine.connect() as conn:
        state = runs.read(conn, message.list_id)
        connection = config.connection_for(conn, message.list_id)
    if state is None or connection is None or not state.current(message.run_id, FIX):
        return True
    problems = deps.crm.problems()
    if problems:
        reason = CRM_UNFIT + "; ".join(problems)
        log.warning("audience %s: %s; the run is parked", message.list_id, reason)
        with deps.engine.begin() as conn:
            runs.park_if_current(conn, message.list_id, message.run_id, FIX, deps.clock(), reason)
        return False
    report = deps.crm.refresh(deps.engine, connection.group_ids)
    if report is not None:
        with deps.engine.begin() as conn:
            runs.log(conn, message.list_id, report.line, deps.clock())
    return True


def _plan_queue(
    conn: sa.Connection, connection: SyncConnection, state: RunState, now: datetime
) -> list[Message]:
    assert state.run_id is not None
    planned = runs.plan_chunks(conn, state.list_id, state.run_id, CHUNK_SIZE)
    runs.log(conn, state.list_id, f"{QUEUE}: {len(planned)} chunks to decide", now)
    if not planned:
        return after_stage(conn, state, QUEUE, connection.data_sync, now)
    return [
        ReconcileChunk(
            list_id=state.list_id, run_id=state.run_id, first_id=c.first_id, last_id=c.last_id
        )
        for c in planned
    ]


def reconcile_chunk(deps: Deps, message: ReconcileChunk) -> list[Message]:
    """Decide one chunk, once; the run's last chunk to be decided moves the run on."""
    unit = unit_of_stage(deps.engine, message.list_id, message.run_id, QUEUE, deps.clock)
    if unit is None:
        return []
    state, connection = unit
    queued = 0
    with deps.engine.begin() as conn:
        if not runs.share(conn, message.list_id, message.run_id, QUEUE):
            return []
        # A chunk already taken was decided and committed; its copy only checks whether the
        # run can move on (the first may have died before it did).
        taken = runs.take_chunk(
            conn, message.list_id, message.run_id, message.first_id, deps.clock()
        )
        if taken is not None:
            writes = deps.crm.for_run(f"mcsync:{message.run_id}")
            report = chunk.reconcile_chunk(conn, connection, taken, deps.clock(), writes)
            queued = report.counts.get(chunk.UPDATES_QUEUED, 0)
    # Not inside the chunk's transaction: that one shares the status row with other chunks.
    with deps.engine.begin() as conn:
        runs.heartbeat(conn, message.list_id, message.run_id, deps.clock())
    submit_early = queued and state.params.stop_on != SUBMIT.value
    early = [SubmitFullBatches(list_id=message.list_id)] if submit_early else []
    return early + _finish_queue_if_done(deps, connection, message)


def _finish_queue_if_done(
    deps: Deps, connection: SyncConnection, message: ReconcileChunk
) -> list[Message]:
    with deps.engine.begin() as conn:
        if runs.chunks_left(conn, message.list_id, message.run_id):
            return []
        state = runs.lock(conn, message.list_id)
        if not state.current(message.run_id, QUEUE):
            return []
        runs.log(conn, state.list_id, f"{QUEUE}: every row decided", deps.clock())
        return after_stage(conn, state, QUEUE, connection.data_sync, deps.clock())
