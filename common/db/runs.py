"""SQL for the status table (one row per audience: its run, stage and log) and fetch pages.

The stage changes only by compare-and-set on (list_id, run_id, stage), under the row lock
taken by ``lock``: two workers never run the same stage of one audience, and a message from
an older run (its run_id no longer current) finds nothing to do.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert

from common.db.schema import fetch_page, reconcile_chunk, run_history, status
from common.db.stats import Changes
from common.metrics import RUNS_PARKED, SYNC_SECONDS, parked_why
from common.runs import RunLimits, fetch_since, parse_stop_on
from common.settings import Settings
from common.vocabulary import Stage

LOG_LIMIT = 100
RUN_HISTORY_KEPT = 100  # completed runs remembered per audience
STALE_AFTER = Settings().stale_after  # the default of MCSYNC_STALE_AFTER_SECONDS
"""A run whose heartbeat is older than this is taken to be abandoned (a killed worker)."""


@dataclass(frozen=True)
class RunParams:
    """The seed's ``fetchandreconcile`` parameters for one audience."""

    since: str | None = None
    max_time: int = 300
    stop_on: str | None = None
    with_data: bool = False
    trigger_id: str = ""  # the StartSync that started or last resumed the run

    def to_json(self) -> dict[str, Any]:
        return {
            "since": self.since,
            "max_time": self.max_time,
            "stop_on": self.stop_on,
            "with_data": self.with_data,
            "trigger_id": self.trigger_id,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> RunParams:
        return cls(**(data or {}))


@dataclass(frozen=True)
class RunState:
    list_id: str
    stage: Stage
    run_id: str | None
    params: RunParams
    run_started_at: datetime | None
    sync_started_at: datetime | None
    fetch_since: datetime | None
    parked_reason: str | None
    heartbeat_at: datetime | None
    last_sync_at: datetime | None
    last_sync_finished_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.run_id is not None and self.parked_reason is None

    @property
    def parked(self) -> bool:
        return self.run_id is not None and self.parked_reason is not None

    def current(self, run_id: str, stage: Stage) -> bool:
        """True when a message for (run_id, stage) still has work to do."""
        return self.active and self.run_id == run_id and self.stage is stage

    def stale(self, now: datetime, after: timedelta = STALE_AFTER) -> bool:
        """Active, but no unit has beaten for ``after`` (its worker died)."""
        return self.active and (self.heartbeat_at is None or now - self.heartbeat_at > after)

    def limits(self, data_sync: bool) -> RunLimits:
        assert self.run_started_at is not None
        return RunLimits(
            started_at=self.run_started_at,
            max_time=self.params.max_time,
            stop_on=parse_stop_on(self.params.stop_on),
            data_sync=data_sync or self.params.with_data,
        )


def _state(row: sa.Row[Any]) -> RunState:
    return RunState(
        list_id=row.list_id,
        stage=Stage(row.stage),
        run_id=row.run_id,
        params=RunParams.from_json(row.run_params),
        run_started_at=row.run_started_at,
        sync_started_at=row.sync_started_at,
        fetch_since=row.fetch_since,
        parked_reason=row.parked_reason,
        heartbeat_at=row.heartbeat_at,
        last_sync_at=row.last_sync_at,
        last_sync_finished_at=row.last_sync_finished_at,
    )


def lock(conn: sa.Connection, list_id: str) -> RunState:
    """Lock the audience's status row for this transaction (creating it if new)."""
    conn.execute(pg_insert(status).values(list_id=list_id).on_conflict_do_nothing())
    row = conn.execute(sa.select(status).where(status.c.list_id == list_id).with_for_update()).one()
    return _state(row)


def share(conn: sa.Connection, list_id: str, run_id: str, stage: Stage) -> bool:
    """Hold the status row shared while a unit of ``stage`` works; False if no longer current.

    Units of one stage (pages, chunks) run side by side under a shared lock; moving the run
    on takes the row exclusively (``lock``), so it waits for every unit in flight. The lock
    is ``FOR KEY SHARE``: a unit's ``heartbeat`` (a plain UPDATE) does not wait for the
    other units in flight, so units never queue behind one another's heartbeats.
    """
    row = conn.execute(
        sa.select(status.c.run_id, status.c.stage, status.c.parked_reason)
        .where(status.c.list_id == list_id)
        .with_for_update(read=True, key_share=True)
    ).one_or_none()
    return (
        row is not None
        and row.run_id == run_id
        and row.stage == stage.value
        and row.parked_reason is None
    )


def park_if_current(
    conn: sa.Connection,
    list_id: str,
    run_id: str,
    stage: Stage,
    now: datetime,
    reason: str | None = None,
) -> None:
    """Park a run at ``stage`` (if it is still there) for ``reason``: by default, that it has
    spent its ``max_time``."""
    state = lock(conn, list_id)
    if state.current(run_id, stage):
        why = reason or f"max_time of {state.params.max_time} s reached"
        park(conn, state, stage, why, now)


def read(conn: sa.Connection, list_id: str) -> RunState | None:
    row = conn.execute(sa.select(status).where(status.c.list_id == list_id)).one_or_none()
    return None if row is None else _state(row)


def start(
    conn: sa.Connection, state: RunState, params: RunParams, override_set: bool, now: datetime
) -> RunState:
    """Begin a new run at ``readyToFetch`` (the row must be locked and idle)."""
    since = fetch_since(params.since, state.last_sync_at, override_set)
    return _set(
        conn,
        state.list_id,
        stage=Stage.READY_TO_FETCH.value,
        run_id=str(uuid.uuid4()),
        run_params=params.to_json(),
        run_started_at=now,
        sync_started_at=now,
        fetch_since=since,
        parked_reason=None,
        heartbeat_at=now,
    )


def resume(conn: sa.Connection, state: RunState, params: RunParams, now: datetime) -> RunState:
    """Continue a parked or abandoned run where it stopped, under a new run id.

    The new id makes messages still queued for the old one find nothing to do. The fetch
    window (``since``) stays as it was; ``max_time`` and ``stop_on`` come from this trigger.
    """
    kept = RunParams(
        since=state.params.since,
        max_time=params.max_time,
        stop_on=params.stop_on,
        with_data=state.params.with_data or params.with_data,
        trigger_id=params.trigger_id,
    )
    return _set(
        conn,
        state.list_id,
        run_id=str(uuid.uuid4()),
        run_params=kept.to_json(),
        run_started_at=now,
        parked_reason=None,
        heartbeat_at=now,
    )


def advance(conn: sa.Connection, state: RunState, to: Stage, now: datetime) -> RunState:
    """Move the (locked) run on to the next stage."""
    return _set(conn, state.list_id, stage=to.value, heartbeat_at=now)


def park(conn: sa.Connection, state: RunState, at: Stage, reason: str, now: datetime) -> RunState:
    """Stop the run before ``at``; the next trigger resumes it there."""
    log(conn, state.list_id, f"parked before {at.value}: {reason}", now)
    RUNS_PARKED.labels(state.list_id, parked_why(reason)).inc()
    return _set(conn, state.list_id, stage=at.value, parked_reason=reason, heartbeat_at=now)


def finish(conn: sa.Connection, state: RunState, now: datetime) -> RunState:
    """The run is complete: back to ``readyToFetch``; the next run fetches since its start."""
    log(conn, state.list_id, "sync complete", now)
    if state.sync_started_at is not None:
        SYNC_SECONDS.labels(state.list_id).observe((now - state.sync_started_at).total_seconds())
    return _set(
        conn,
        state.list_id,
        stage=Stage.READY_TO_FETCH.value,
        run_id=None,
        parked_reason=None,
        heartbeat_at=now,
        last_sync_at=state.sync_started_at,
        last_sync_finished_at=now,
    )


def remember(conn: sa.Connection, state: RunState, changes: Changes, now: datetime) -> None:
    """Keep the (locked, completing) run's times and ``changes``, and forget the oldest runs."""
    assert state.run_id is not None and state.sync_started_at is not None
    conn.execute(
        pg_insert(run_history)
        .values(
            list_id=state.list_id,
            run_id=state.run_id,
            started_at=state.sync_started_at,
            finished_at=now,
            contacts_created=changes.contacts_created,
            crm_added=changes.crm_added,
            crm_removed=changes.crm_removed,
            mailchimp_updates=changes.mailchimp_queued,
        )
        .on_conflict_do_nothing()
    )
    newest = (
        sa.select(run_history.c.id)
        .where(run_history.c.list_id == state.list_id)
        .order_by(run_history.c.finished_at.desc())
        .limit(RUN_HISTORY_KEPT)
    )
    conn.execute(
        sa.delete(run_history).where(
            run_history.c.list_id == state.list_id, run_history.c.id.not_in(newest)
        )
    )


def recent_runs(conn: sa.Connection, list_id: str, count: int = 20) -> list[dict[str, Any]]:
    """The audience's newest completed runs, oldest first."""
    query = (
        sa.select(
            run_history.c.started_at,
            run_history.c.finished_at,
            run_history.c.contacts_created,
            run_history.c.crm_added,
            run_history.c.crm_removed,
            run_history.c.mailchimp_updates,
        )
        .where(run_history.c.list_id == list_id)
        .order_by(run_history.c.finished_at.desc())
        .limit(count)
    )
    return [dict(row._mapping) for row in conn.execute(query)][::-1]


def reset(conn: sa.Connection, list_id: str, now: datetime, why: str = "force_restart") -> RunState:
    """Forget the run's tracking state (``force_restart``, ``abortsync``): running work is
    not stopped by it."""
    conn.execute(sa.delete(fetch_page).where(fetch_page.c.list_id == list_id))
    forget_chunks(conn, list_id)
    log(conn, list_id, f"tracking state reset ({why})", now)
    return _set(
        conn,
        list_id,
        stage=Stage.READY_TO_FETCH.value,
        run_id=None,
        run_params=None,
        parked_reason=None,
        heartbeat_at=now,
    )


def heartbeat(conn: sa.Connection, list_id: str, run_id: str, now: datetime) -> None:
    """Note that a unit of the run just finished (a heartbeat that stops means a dead run).

    Its own short transaction: the key-share locks of the units in flight do not block it."""
    conn.execute(
        sa.update(status)
        .where(status.c.list_id == list_id, status.c.run_id == run_id)
        .values(heartbeat_at=now)
    )


APPEND_LOG = sa.text(
    """
    UPDATE civicrm_mailchimpsync_status
    SET data = jsonb_set(data, '{log}', (
        SELECT coalesce(jsonb_agg(value ORDER BY n), '[]'::jsonb)
        FROM (
            SELECT value, n
            FROM jsonb_array_elements(
                coalesce(data -> 'log', '[]'::jsonb) || jsonb_build_array(CAST(:entry AS jsonb))
            ) WITH ORDINALITY AS line(value, n)
            ORDER BY n DESC
            LIMIT :keep
        ) AS newest
    ))
    WHERE list_id = :list_id
    """
)


def log(conn: sa.Connection, list_id: str, message: str, now: datetime) -> None:
    """Append a line to the audience's log, keeping the newest ``LOG_LIMIT`` lines."""
    conn.execute(pg_insert(status).values(list_id=list_id).on_conflict_do_nothing())
    entry = json.dumps({"at": now.isoformat(), "message": message})
    conn.execute(APPEND_LOG, {"entry": entry, "keep": LOG_LIMIT, "list_id": list_id})


def read_log(conn: sa.Connection, list_id: str) -> list[dict[str, str]]:
    data = conn.execute(sa.select(status.c.data).where(status.c.list_id == list_id)).scalar()
    return list((data or {}).get("log", []))


def _set(conn: sa.Connection, list_id: str, **values: Any) -> RunState:
    row = conn.execute(
        sa.update(status).where(status.c.list_id == list_id).values(**values).returning(status)
    ).one()
    return _state(row)


# --- fetch pages ----------------------------------------------------------------------------


def add_pages(conn: sa.Connection, list_id: str, run_id: str, offsets: Iterable[int]) -> None:
    rows = [{"list_id": list_id, "run_id": run_id, "page_offset": o} for o in offsets]
    if rows:
        conn.execute(pg_insert(fetch_page).on_conflict_do_nothing(), rows)


def pages_of(conn: sa.Connection, list_id: str, run_id: str, fetched: bool) -> list[int]:
    """Offsets of this run's pages that are (or are not yet) fetched."""
    done = fetch_page.c.fetched_at.is_not(None) if fetched else fetch_page.c.fetched_at.is_(None)
    query = (
        sa.select(fetch_page.c.page_offset)
        .where(fetch_page.c.list_id == list_id, fetch_page.c.run_id == run_id, done)
        .order_by(fetch_page.c.page_offset)
    )
    return list(conn.scalars(query))


def move_pages(conn: sa.Connection, list_id: str, from_run: str, to_run: str) -> None:
    """A resumed run keeps the pages its earlier part planned."""
    conn.execute(
        sa.update(fetch_page)
        .where(fetch_page.c.list_id == list_id, fetch_page.c.run_id == from_run)
        .values(run_id=to_run)
    )


def members_fetched(conn: sa.Connection, list_id: str, run_id: str) -> int:
    """The members the run's fetched pages held (one row per page: cheap at any size)."""
    total = sa.func.coalesce(sa.func.sum(fetch_page.c.member_count), 0)
    query = sa.select(total).where(
        fetch_page.c.list_id == list_id,
        fetch_page.c.run_id == run_id,
        fetch_page.c.fetched_at.is_not(None),
    )
    return int(conn.execute(query).scalar_one())


def mark_fetched(
    conn: sa.Connection, list_id: str, run_id: str, offset: int, count: int, now: datetime
) -> bool:
    """Record a page as fetched; False when it already was (a redelivered message)."""
    result = conn.execute(
        sa.update(fetch_page)
        .where(
            fetch_page.c.list_id == list_id,
            fetch_page.c.run_id == run_id,
            fetch_page.c.page_offset == offset,
            fetch_page.c.fetched_at.is_(None),
        )
        .values(fetched_at=now, member_count=count)
    )
    return result.rowcount == 1


def forget_pages(conn: sa.Connection, list_id: str, keep_run: str | None = None) -> None:
    query = sa.delete(fetch_page).where(fetch_page.c.list_id == list_id)
    if keep_run is not None:
        query = query.where(fetch_page.c.run_id != keep_run)
    conn.execute(query)


# --- reconcile chunks ----------------------------------------------------------------------


class PlannedChunk(NamedTuple):
    """``row_count`` todo rows of the queue, ids ``first_id``..``last_id`` (inclusive), of
    which ``rows_without_member`` are not at Mailchimp yet."""

    first_id: int
    last_id: int
    row_count: int
    rows_without_member: int


def plan_chunks(
    conn: sa.Connection, list_id: str, run_id: str, chunk_size: int = 1000
) -> list[PlannedChunk]:
    """Cut the audience's ``todo`` rows into chunks of about ``chunk_size`` in id order and
    record them, each with its rows' ids, as the run's (the audience's earlier plans are
    forgotten). A contact's rows all go to the chunk of its first row, however far apart
    they are: the chunk reads the contact's CRM facts once, before it changes anything, so
    no row is decided on a change the run made for another (a chunk can hold a contact's
    rows beyond ``chunk_size``). One statement: the ids never leave Postgres, so planning a
    million rows holds a thousand chunks in memory, not a million ids.

    Returned in the order to decide them: the chunks with the most rows not at Mailchimp
    first, then by id. Each such row is a member to create, so its chunk fills batches: the
    CRM-only rows come last in id order (``readyToAddCiviOnly`` adds them after the fetch),
    and deciding them last left their batches to Mailchimp after the rest of the queue."""
    forget_chunks(conn, list_id)
    params = {"list_id": list_id, "run_id": run_id, "size": chunk_size}
    planned = (PlannedChunk(*row) for row in conn.execute(_PLAN_CHUNKS, params))
    return sorted(planned, key=lambda c: (-c.rows_without_member, c.first_id))


# Reads the cache's todo rows, which the chunks are made of. Each row is placed by its
# contact's first todo row (its own id when it has no contact); rank() gives the rows placed
# alike one position, so a chunk boundary never falls between a contact's rows.
_PLAN_CHUNKS = sa.text("""
    WITH placed AS (
        SELECT id, mailchimp_member_id,
            CASE WHEN civicrm_contact_id IS NULL THEN id
                 ELSE min(id) OVER (PARTITION BY civicrm_contact_id) END AS place
        FROM civicrm_mailchimpsync_cache
        WHERE mailchimp_list_id = :list_id AND sync_status = 'todo'
    ), planned AS (
        SELECT min(id) AS first_id, max(id) AS last_id, count(*) AS row_count,
            count(*) FILTER (WHERE mailchimp_member_id IS NULL) AS rows_without_member,
            array_agg(id ORDER BY id) AS row_ids
        FROM (
            SELECT id, mailchimp_member_id, (rank() OVER (ORDER BY place) - 1) / :size AS bucket
            FROM placed
        ) AS numbered
        GROUP BY bucket
    ), recorded AS (
        INSERT INTO mailchimpsync_reconcile_chunk
            (list_id, run_id, first_id, last_id, row_count, row_ids)
        SELECT :list_id, :run_id, first_id, last_id, row_count, row_ids FROM planned
    )
    SELECT first_id, last_id, row_count, rows_without_member FROM planned
""")


def take_chunk(
    conn: sa.Connection, list_id: str, run_id: str, first_id: int, now: datetime
) -> list[int] | None:
    """Mark a planned chunk decided in the caller's transaction, which then decides it, and
    return its rows' ids; None when it is not the run's or already decided. A redelivered copy
    of a chunk in flight waits here for the first to commit, then finds it decided."""
    return conn.execute(
        sa.update(reconcile_chunk)
        .where(
            reconcile_chunk.c.list_id == list_id,
            reconcile_chunk.c.run_id == run_id,
            reconcile_chunk.c.first_id == first_id,
            reconcile_chunk.c.decided_at.is_(None),
        )
        .values(decided_at=now)
        .returning(reconcile_chunk.c.row_ids)
    ).scalar_one_or_none()


def chunks_left(conn: sa.Connection, list_id: str, run_id: str) -> int:
    """The run's chunks not decided yet."""
    query = sa.select(sa.func.count()).where(
        reconcile_chunk.c.list_id == list_id,
        reconcile_chunk.c.run_id == run_id,
        reconcile_chunk.c.decided_at.is_(None),
    )
    return int(conn.execute(query).scalar_one())


def forget_chunks(conn: sa.Connection, list_id: str) -> None:
    conn.execute(sa.delete(reconcile_chunk).where(reconcile_chunk.c.list_id == list_id))
