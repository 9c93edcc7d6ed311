"""Runs that park and resume (``stop_on``, ``max_time``) and incremental runs after changes.

These run the real pipeline with the embedded stub broker (every service's workers in the
test process, restarted by each ``fetchandreconcile`` call) against this machine's Postgres
and the bundled simulator, seeded with the pipeline tests' mixed audience.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import requests
import sqlalchemy as sa
from resilience_support import (
    World,
    contact_id_of,
    crm_statuses,
    mismatches,
    mixed_world,
    posted_operation_ids,
    run_state,
    subscription_group_id,
    sync,
    sync_history_rows,
    update_rows,
)

from common.db import crm
from common.settings import Settings
from common.vocabulary import GroupStatus, Stage
from mcsync.demo_data import MATCHED
from mcsync.sync import SyncRequest
from services.fetcher import actors as fetcher_actors
from services.reconciler import actors as reconciler_actors
from services.submitter import actors as submitter_actors

pytestmark = pytest.mark.integration

MAX_TRIGGERS = 60


@pytest.fixture
def world(clean_tables: sa.Engine) -> Iterator[World]:
    with mixed_world(clean_tables, 400) as seeded:
        yield seeded


def _settings(world: World, database_url: str) -> Settings:
    return Settings(database_url=database_url, mailchimp_api_url=world.simulator.api_url)


def _posted_batches(world: World) -> int:
    return world.request_counts().get("POST /batches", 0)


# --- stop_on -------------------------------------------------------------------------------


def test_a_run_stopped_before_submitting_parks_then_the_next_trigger_completes_it(
    world: World, clean_tables: sa.Engine, database_url: str
) -> None:
    engine, settings = clean_tables, _settings(world, database_url)

    first = sync(settings, SyncRequest(max_time=0, stop_on=Stage.READY_TO_SUBMIT_UPDATES.value))

    state = run_state(engine, world.audience.list_id)
    assert state.parked and state.stage is Stage.READY_TO_SUBMIT_UPDATES, first
    assert "parked" in first
    waiting = update_rows(engine)
    assert waiting.unsubmitted > 0 and waiting.unsubmitted == waiting.total
    assert sync_history_rows(engine) > 0, "the CRM side is applied before submitting"
    assert _posted_batches(world) == 0

    second = sync(settings, SyncRequest(max_time=0))

    state = run_state(engine, world.audience.list_id)
    assert not state.active and not state.parked, second
    assert state.run_id is None and state.last_sync_at is not None
    done = update_rows(engine)
    assert (done.unsubmitted, done.uncompleted) == (0, 0)
    assert done.total == waiting.total, "resuming submits the parked updates, no new ones"
    assert _posted_batches(world) >= 1
    assert mismatches(world, engine) == []


# --- max_time ------------------------------------------------------------------------------


class SteppingClock:
    """A clock every service reads through its Deps: each reading moves it on by ``step``.

    With ``max_time`` a few steps long, every run parks after a handful of units of work,
    whatever the speed of this machine.
    """

    def __init__(self, step: timedelta) -> None:
        self.now = datetime.now(UTC)
        self.step = step
        self.readings = 0
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            self.now += self.step
            self.readings += 1
            return self.now


@pytest.fixture
def stepping_clock(monkeypatch: pytest.MonkeyPatch) -> SteppingClock:
    clock = SteppingClock(timedelta(milliseconds=500))
    for module in (fetcher_actors, reconciler_actors, submitter_actors):
        monkeypatch.setattr(module, "utc_now", clock)
    return clock


def test_a_run_out_of_time_parks_and_repeated_triggers_finish_it_sending_each_update_once(
    world: World, clean_tables: sa.Engine, database_url: str, stepping_clock: SteppingClock
) -> None:
    engine, settings = clean_tables, _settings(world, database_url)
    parked_at: list[Stage] = []

    for _ in range(MAX_TRIGGERS):
        sync(settings, SyncRequest(max_time=2))
        state = run_state(engine, world.audience.list_id)
        if not state.parked:
            break
        parked_at.append(state.stage)
    else:
        pytest.fail(f"still parked after {MAX_TRIGGERS} triggers, at {parked_at[-5:]}")

    assert not state.active
    assert len(parked_at) >= 3, f"max_time never bit: parked only at {parked_at}"
    assert Stage.READY_TO_FETCH in parked_at or Stage.READY_TO_RECONCILE_QUEUE in parked_at
    updates = update_rows(engine)
    assert (updates.unsubmitted, updates.uncompleted) == (0, 0)
    posted = posted_operation_ids(world.simulator.simulator)
    assert [op for op, n in posted.items() if n > 1] == []
    assert set(posted) == {f"mailchimpsync_{i}" for i in updates.submitted_ids}
    assert mismatches(world, engine) == []


# --- changes on both sides after a first sync ------------------------------------------------


def _act(world: World, email: str, action: str, source: str, **details: object) -> None:
    url = (
        f"{world.simulator.base_url}/_sim/lists/{world.audience.list_id}"
        f"/members/{email}/actions/{action}"
    )
    response = requests.post(url, json={"source": source, **details}, timeout=10)
    response.raise_for_status()


def _people(world: World, case: str, count: int, skip: int = 0) -> list[str]:
    found = [
        c.emails[0][0]
        for c in world.plan.contacts
        if c.case == case and not c.is_deleted and len(c.emails) == 1
    ]
    assert len(found) >= skip + count, f"the mixed world has too few of {case!r}"
    return found[skip : skip + count]


UNSUBSCRIBED_BOTH = "unsubscribed on both sides"


def test_changes_on_both_sides_after_a_sync_are_carried_over_and_a_third_run_does_nothing(
    world: World, clean_tables: sa.Engine, database_url: str
) -> None:
    engine, settings = clean_tables, _settings(world, database_url)
    sync(settings, SyncRequest(max_time=0))
    assert mismatches(world, engine) == []

    matched = _people(world, MATCHED, 8)
    quits, admin_removed, renamed, crm_removed = (
        matched[0:2],
        matched[2:4],
        matched[4:6],
        matched[6:8],
    )
    rejoins = _people(world, UNSUBSCRIBED_BOTH, 2)
    crm_added = _people(world, UNSUBSCRIBED_BOTH, 2, skip=2)
    for email in quits:
        _act(world, email, "unsubscribe", "user")
    for email in admin_removed:
        _act(world, email, "unsubscribe", "admin")
    for email in rejoins:
        _act(world, email, "subscribe", "user")
    for email in renamed:
        _act(world, email, "profile", "user", merge_fields={"FNAME": "Renamed"})
    group, later = subscription_group_id(engine), datetime.now(UTC) + timedelta(seconds=1)
    with engine.begin() as conn:
        crm.set_memberships(
            conn,
            [
                crm.MembershipChange(contact_id_of(engine, e), group, status, later, "Admin")
                for emails, status in (
                    (crm_removed, GroupStatus.REMOVED),
                    (crm_added, GroupStatus.ADDED),
                )
                for e in emails
            ],
        )
    posted_before = world.request_counts().get("POST /batches", 0)

    second = sync(settings, SyncRequest(max_time=0))

    assert "Both sides agree." in second
    crm_now, mailchimp_now = crm_statuses(engine), world.mailchimp_statuses()
    # They unsubscribed themselves: Mailchimp refuses to resubscribe them through the API
    # (compliance), so the sync asks again as pending - the confirmation email.
    expected = (
        {e: ("Removed", "unsubscribed") for e in quits + admin_removed + crm_removed}
        | {e: ("Added", "subscribed") for e in rejoins + renamed}
        | {e: ("Added", "pending") for e in crm_added}
    )
    got = {e: (_only(crm_now[e]), mailchimp_now.get(e)) for e in expected}
    assert got == expected
    assert world.request_counts().get("POST /batches", 0) > posted_before
    untouched = set(_people(world, MATCHED, 30, skip=8))
    assert {e: (_only(crm_now[e]), mailchimp_now[e]) for e in untouched} == {
        e: ("Added", "subscribed") for e in untouched
    }
    assert mismatches_outside(world, engine, set(expected)) == []

    posted, history = _posted_batches(world), sync_history_rows(engine)
    third = sync(settings, SyncRequest(max_time=0))

    assert "Mailchimp: 0 changes made" in third
    assert _posted_batches(world) == posted
    assert sync_history_rows(engine) == history


def _only(statuses: set[str | None]) -> str | None:
    assert len(statuses) == 1, statuses
    return next(iter(statuses))


def mismatches_outside(world: World, engine: sa.Engine, changed: set[str]) -> list[str]:
    """The pipeline's per-case check, for everyone whose case this test did not change."""
    return [line for line in mismatches(world, engine) if not any(e in line for e in changed)]
