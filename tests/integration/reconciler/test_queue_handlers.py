"""The reconcile queue's handlers on a real Postgres: chunks planned, each decided once, and
the last one moving the run on to the submitter."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from reconciler_support import LIST_ID, T0, World

from common.db import cache, runs, stats
from common.db.runs import RunParams
from common.messages import ReconcileChunk, RunCrmStages, SubmitUpdates
from common.vocabulary import Stage, SyncStatus
from services.reconciler import chunk, handlers

pytestmark = pytest.mark.integration

NOW = T0 + timedelta(days=1)
ROWS = 25


@pytest.fixture
def queued(committing_db: sa.Connection, monkeypatch: pytest.MonkeyPatch) -> tuple[World, str]:
    """An audience whose run has reached the reconcile queue with ROWS todo rows."""
    monkeypatch.setattr(handlers, "CHUNK_SIZE", 10)
    world = World(committing_db)
    for n in range(ROWS):
        contact = world.contact(f"p{n}", f"p{n}@example.org")
        world.row(f"p{n}@example.org", "subscribed", contact, sync_status="todo")
    state = runs.start(committing_db, runs.lock(committing_db, LIST_ID), RunParams(), False, NOW)
    runs.advance(committing_db, state, Stage.READY_TO_RECONCILE_QUEUE, NOW)
    committing_db.commit()
    assert state.run_id is not None
    return world, state.run_id


def _deps(engine: sa.Engine) -> handlers.Deps:
    return handlers.Deps(engine=engine, clock=lambda: NOW)


def _plan(engine: sa.Engine, run_id: str) -> list[ReconcileChunk]:
    planned = handlers.run_crm_stages(_deps(engine), RunCrmStages(list_id=LIST_ID, run_id=run_id))
    assert all(isinstance(m, ReconcileChunk) for m in planned)
    return [m for m in planned if isinstance(m, ReconcileChunk)]


def _history_rows(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        count = conn.execute(sa.text("SELECT count(*) FROM civicrm_subscription_history"))
        return int(count.scalar_one())


def test_each_chunk_is_decided_once_and_the_last_moves_the_run_on(
    queued: tuple[World, str], clean_tables: sa.Engine
) -> None:
    _, run_id = queued
    chunks = _plan(clean_tables, run_id)
    assert len(chunks) == 3

    first = handlers.reconcile_chunk(_deps(clean_tables), chunks[0])
    redelivered = handlers.reconcile_chunk(_deps(clean_tables), chunks[0])
    with clean_tables.connect() as conn:
        progress = stats.progress(conn, LIST_ID)
    rest = [handlers.reconcile_chunk(_deps(clean_tables), c) for c in chunks[1:]]

    assert (first, redelivered, rest[0]) == ([], [], [])
    assert rest[1] == [SubmitUpdates(list_id=LIST_ID, run_id=run_id)]
    assert progress is not None and (progress.rows_decided, progress.rows_planned) == (10, ROWS)
    assert _history_rows(clean_tables) == ROWS  # every contact added to the group once


def test_a_chunk_redelivered_after_its_worker_died_still_moves_the_run_on(
    queued: tuple[World, str], clean_tables: sa.Engine
) -> None:
    world, run_id = queued
    *others, last = _plan(clean_tables, run_id)
    for message in others:
        handlers.reconcile_chunk(_deps(clean_tables), message)
    with clean_tables.begin() as conn:  # the last chunk decided, then its worker killed
        assert runs.take_chunk(conn, LIST_ID, run_id, last.first_id, NOW)
        chunk.reconcile_chunk(conn, world.sc, last.first_id, last.last_id, NOW)

    redelivered = handlers.reconcile_chunk(_deps(clean_tables), last)

    assert redelivered == [SubmitUpdates(list_id=LIST_ID, run_id=run_id)]
    assert _history_rows(clean_tables) == ROWS


def test_a_row_marked_todo_after_planning_is_left_to_the_next_run(
    queued: tuple[World, str], clean_tables: sa.Engine
) -> None:
    world, run_id = queued
    chunks = _plan(clean_tables, run_id)
    contact = world.contact("late", "late@example.org")
    world.row("late@example.org", "subscribed", contact, sync_status="todo")
    world.conn.commit()

    results = [handlers.reconcile_chunk(_deps(clean_tables), c) for c in chunks]

    assert results[-1] == [SubmitUpdates(list_id=LIST_ID, run_id=run_id)]
    with clean_tables.connect() as conn:
        assert cache.status_counts(conn, LIST_ID)[SyncStatus.TODO] == 1
