from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from common import progress
from common.db import config, crm, runs, stats
from common.db.runs import RunParams
from common.vocabulary import NEW_CONTACT_SOURCE, SYNC_METHOD, GroupStatus, Stage

pytestmark = pytest.mark.integration

LIST = "a1b2c3d4e5"
NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def test_a_first_run_fetches_everything_from_ready_to_fetch(db: sa.Connection) -> None:
    state = runs.start(db, runs.lock(db, LIST), RunParams(), override_set=False, now=NOW)

    assert state.active
    assert state.stage is Stage.READY_TO_FETCH
    assert state.fetch_since is None


def test_the_next_run_fetches_since_the_last_one_began_less_two_hours(db: sa.Connection) -> None:
    first = runs.start(db, runs.lock(db, LIST), RunParams(), False, NOW)
    runs.finish(db, runs.advance(db, first, Stage.READY_TO_SUBMIT_UPDATES, NOW), NOW)

    later = NOW + timedelta(days=1)
    second = runs.start(db, runs.lock(db, LIST), RunParams(), False, later)

    assert second.fetch_since == NOW - timedelta(hours=2)
    assert second.run_id != first.run_id


def test_a_finished_run_leaves_the_audience_idle_at_ready_to_fetch(db: sa.Connection) -> None:
    state = runs.start(db, runs.lock(db, LIST), RunParams(), False, NOW)

    done = runs.finish(db, runs.advance(db, state, Stage.READY_TO_SUBMIT_UPDATES, NOW), NOW)

    assert not done.active
    assert done.stage is Stage.READY_TO_FETCH
    assert done.last_sync_at == NOW
    assert runs.read_log(db, LIST)[-1]["message"] == "sync complete"


def test_a_parked_run_resumes_at_its_stage_under_a_new_run_id(db: sa.Connection) -> None:
    state = runs.start(
        db, runs.lock(db, LIST), RunParams(stop_on="readyToReconcileQueue"), False, NOW
    )
    parked = runs.park(db, state, Stage.READY_TO_RECONCILE_QUEUE, "stop_on", NOW)
    assert parked.parked and not parked.active

    resumed = runs.resume(db, runs.lock(db, LIST), RunParams(max_time=0), NOW)

    assert resumed.active
    assert resumed.stage is Stage.READY_TO_RECONCILE_QUEUE
    assert resumed.run_id != state.run_id
    assert resumed.params.max_time == 0
    assert not resumed.current(state.run_id or "", Stage.READY_TO_RECONCILE_QUEUE)


def test_a_run_without_heartbeat_for_a_long_time_is_stale(db: sa.Connection) -> None:
    state = runs.start(db, runs.lock(db, LIST), RunParams(), False, NOW)

    assert not state.stale(NOW + timedelta(minutes=5))
    assert state.stale(NOW + timedelta(hours=1))
    assert state.stale(NOW + timedelta(minutes=5), after=timedelta(minutes=1))  # configured


def test_the_log_keeps_the_newest_hundred_lines_in_order(db: sa.Connection) -> None:
    for line in range(130):
        runs.log(db, LIST, f"line {line}", NOW)

    lines = [entry["message"] for entry in runs.read_log(db, LIST)]

    assert lines == [f"line {n}" for n in range(30, 130)]


def test_a_page_is_marked_fetched_only_once(db: sa.Connection) -> None:
    runs.add_pages(db, LIST, "run-1", [0, 1000, 2000])

    assert runs.mark_fetched(db, LIST, "run-1", 1000, 1000, NOW)
    assert not runs.mark_fetched(db, LIST, "run-1", 1000, 1000, NOW)
    assert runs.pages_of(db, LIST, "run-1", fetched=False) == [0, 2000]


def _todo_rows(db: sa.Connection, ids: list[int]) -> None:
    db.execute(
        sa.text(
            "INSERT INTO civicrm_mailchimpsync_cache (id, mailchimp_list_id, sync_status) "
            "SELECT i, :list_id, 'todo' FROM unnest(CAST(:ids AS bigint[])) AS i"
        ),
        {"list_id": LIST, "ids": ids},
    )


def test_progress_counts_the_rows_of_the_runs_decided_chunks(db: sa.Connection) -> None:
    run_id = runs.start(db, runs.lock(db, LIST), RunParams(), False, NOW).run_id
    assert run_id is not None
    spread = [*range(1001, 1321), 1500]  # 321 todo rows among 500 ids
    _todo_rows(db, [*range(1, 1001), *spread])
    runs.plan_chunks(db, LIST, "an-earlier-run", 100)
    chunks = runs.plan_chunks(db, LIST, run_id, 1000)
    assert chunks == [
        runs.PlannedChunk(1, 1000, 1000, 1000),
        runs.PlannedChunk(1001, 1500, 321, 321),
    ]

    assert runs.take_chunk(db, LIST, run_id, 1001, NOW) == spread
    assert runs.take_chunk(db, LIST, run_id, 1001, NOW) is None  # a redelivered chunk

    progress = stats.progress(db, LIST)
    assert progress is not None
    assert (progress.rows_decided, progress.rows_planned) == (321, 1321)
    assert runs.chunks_left(db, LIST, run_id) == 1


def test_a_heartbeat_does_not_wait_for_units_in_flight_but_moving_the_run_on_does(
    clean_tables: sa.Engine,
) -> None:
    with clean_tables.begin() as conn:
        state = runs.start(conn, runs.lock(conn, LIST), RunParams(), False, NOW)
        run_id = state.run_id
        assert run_id is not None
    unit = clean_tables.connect()
    unit.begin()
    assert runs.share(unit, LIST, run_id, Stage.READY_TO_FETCH)  # a page in flight
    try:
        with clean_tables.connect() as other:
            other.execute(sa.text("SET lock_timeout = '2s'"))
            other.commit()
            with other.begin():
                runs.heartbeat(other, LIST, run_id, NOW)  # would time out if it waited
            with pytest.raises(sa.exc.OperationalError, match="lock timeout"), other.begin():
                runs.lock(other, LIST)
    finally:
        unit.rollback()
        unit.close()


def test_a_completed_run_is_remembered_with_what_it_changed_and_only_the_newest_are_kept(
    db: sa.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runs, "RUN_HISTORY_KEPT", 2)
    group = crm.create_group(db, "news", "News")
    config.add_connection(db, config.add_account(db, "A", "0" * 32 + "-us1"), LIST, group, {})
    ann = crm.insert_contacts(
        db, [crm.NewContact("Ann", "A", NEW_CONTACT_SOURCE, (crm.NewEmail("ann@example.org"),))]
    )[0]
    for day in range(3):
        start = NOW + timedelta(days=day)
        state = runs.start(db, runs.lock(db, LIST), RunParams(), False, start)
        if day == 2:
            added = crm.MembershipChange(ann, group, GroupStatus.ADDED, start, SYNC_METHOD)
            crm.set_memberships(db, [added])
        end = start + timedelta(minutes=5)
        progress.after_stage(db, state, Stage.READY_TO_SUBMIT_UPDATES, False, end)

    remembered = runs.recent_runs(db, LIST)

    assert [r["finished_at"] for r in remembered] == [
        NOW + timedelta(days=d, minutes=5) for d in (1, 2)
    ]
    assert (remembered[-1]["crm_added"], remembered[-1]["crm_removed"]) == (1, 0)
    assert remembered[0]["crm_added"] == 0
