"""Moving a run on after a stage: the stage machine's answer applied to the status row.

Shared by every service: whoever finishes a stage calls ``after_stage`` in the transaction
that holds the audience's status row, and sends the messages it returns after commit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

import sqlalchemy as sa

from common.db import config, runs, stats
from common.db.config import SyncConnection
from common.db.runs import RunState
from common.mailchimp import MailchimpError
from common.messages import Message, RunCrmStages, SubmitUpdates
from common.runs import STAGE_SERVICE, Continue, Finish, Park, Service, next_step, out_of_time
from common.vocabulary import Stage

log = logging.getLogger(__name__)


def after_stage(
    conn: sa.Connection, state: RunState, completed: Stage, data_sync: bool, now: datetime
) -> list[Message]:
    """Advance, park or finish the (locked) run once ``completed`` is done."""
    step = next_step(completed, state.limits(data_sync), now)
    match step:
        case Continue(stage):
            return messages_for(runs.advance(conn, state, stage, now))
        case Park(stage, reason):
            runs.park(conn, state, stage, reason, now)
            return []
        case Finish():
            connections = config.load_connections(conn, list_id=state.list_id)
            if state.sync_started_at is not None:
                for connection in connections:
                    changes = stats.changes_since(conn, connection, state.sync_started_at)
                    runs.remember(conn, state, changes, now)
            runs.finish(conn, state, now)
            for connection in connections:
                config.clear_trust_overrides(conn, connection.id)
            return []


def messages_for(state: RunState) -> list[Message]:
    """The message that runs the run's current stage (fetch pages are planned elsewhere)."""
    assert state.run_id is not None
    match STAGE_SERVICE[state.stage]:
        case Service.RECONCILER:
            return [RunCrmStages(list_id=state.list_id, run_id=state.run_id)]
        case Service.SUBMITTER:
            return [SubmitUpdates(list_id=state.list_id, run_id=state.run_id)]
        case Service.FETCHER:
            return []


def park_refused(
    engine: sa.Engine,
    state: RunState,
    stage: Stage,
    doing: str,
    error: MailchimpError,
    clock: Callable[[], datetime],
) -> list[Message]:
    """Mailchimp refused a request the run cannot do without (a 4xx: a wrong key, an unknown
    audience): retrying cannot help, so park the run at ``stage`` at once, Mailchimp's words
    in the status log and ``parked_reason``; the next trigger resumes it. Returns no
    message."""
    assert state.run_id is not None
    reason = f"Mailchimp refused {doing}: {error}"
    log.warning("audience %s: %s; the run is parked", state.list_id, reason)
    with engine.begin() as conn:
        runs.park_if_current(conn, state.list_id, state.run_id, stage, clock(), reason)
    return []


def unit_of_stage(
    engine: sa.Engine, list_id: str, run_id: str, stage: Stage, clock: Callable[[], datetime]
) -> tuple[RunState, SyncConnection] | None:
    """The run and connection for one unit (a page, a chunk) of ``stage``, or None.

    None when the message is stale (its run or stage is over) or when the run has spent its
    ``max_time``: then the run is parked here, and the next trigger resumes it.
    """
    with engine.connect() as conn:
        state = runs.read(conn, list_id)
        connection = config.connection_for(conn, list_id)
    if state is None or connection is None or not state.current(run_id, stage):
        return None
    if out_of_time(state.limits(connection.data_sync), clock()):
        with engine.begin() as conn:
            runs.park_if_current(conn, list_id, run_id, stage, clock())
        return None
    return state, connection
