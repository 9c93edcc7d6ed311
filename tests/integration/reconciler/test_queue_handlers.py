"""The reconcile queue's handlers on a real Postgres: chunks planned, each decided once, and
the last one moving the run on to the submitter."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from reconciler_support import LIST_ID, T0, World

from common.db import cache, runs, stats
from common.db.runs import RunParams
from common.messages import ReconcileChunk, RunCrmStages, SubmitFullBatches, SubmitUpdates
from common.vocabulary import GroupStatus, Stage, SyncStatus
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
        row_ids = runs.take_chunk(conn, LIST_ID, run_id, last.first_id, NOW)
        assert row_ids
        chunk.reconcile_chunk(conn, world.sc, row_ids, NOW)

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


def _queue_of_crm_members(
    world: World, engine: sa.Engine, stop_on: str | None = None
) -> list[ReconcileChunk]:
    """Contacts Added in the CRM with no member at Mailchimp: each row queues an update."""
    conn = world.conn
    conn.execute(sa.text("DELETE FROM civicrm_mailchimpsync_cache"))
    for n in range(ROWS):
        contact = world.contact(f"crm{n}", f"crm{n}@example.org")
        world.history(contact, GroupStatus.ADDED, T0)
        world.row(None, None, contact, sync_status="todo")
    state = runs.reset(conn, LIST_ID, NOW)
    state = runs.start(conn, state, RunParams(stop_on=stop_on), False, NOW)
    runs.advance(conn, state, Stage.READY_TO_RECONCILE_QUEUE, NOW)
    conn.commit()
    assert state.run_id is not None
    return _plan(engine, state.run_id)


def test_a_chunk_that_queues_updates_asks_for_full_batches_to_be_posted_at_once(
    queued: tuple[World, str], clean_tables: sa.Engine
) -> None:
    world, _ = queued
    first, *_ = _queue_of_crm_members(world, clean_tables)

    sent = handlers.reconcile_chunk(_deps(clean_tables), first)

    assert sent == [SubmitFullBatches(list_id=LIST_ID)]


def test_a_run_stopping_before_the_submit_stage_posts_nothing_early(
    queued: tuple[World, str], clean_tables: sa.Engine
) -> None:
    world, _ = queued
    first, *_ = _queue_of_crm_members(world, clean_tables, stop_on="readyToSubmitUpdates")

    assert handlers.reconcile_chunk(_deps(clean_tables), first) == []
