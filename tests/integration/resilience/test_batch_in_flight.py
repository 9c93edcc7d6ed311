"""A sync triggered while the previous sync's batch still awaits its results.

Batch results arrive by webhook or by the poller (once a minute), and a real Mailchimp batch
takes minutes: the next trigger can easily come first. The workers here run in the test
process on RabbitMQ (a vhost of their own) with the batch poller off, so the test decides
when results are read by sending ``CheckBatches`` itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import datetime

import pytest
import sqlalchemy as sa
from rabbit_support import RABBITMQ, REDIS, require_isolated_rabbitmq
from resilience_support import (
    World,
    mismatches,
    mixed_world,
    posted_operation_ids,
    run_state,
    sync,
    update_rows,
)

from common.db import runs, stats
from common.messages import CheckBatches
from common.settings import Settings
from mcsync import workers
from mcsync.sync import SyncRequest

pytestmark = pytest.mark.integration


@pytest.fixture
def world(clean_tables: sa.Engine) -> Iterator[World]:
    require_isolated_rabbitmq()
    with mixed_world(clean_tables, 400) as seeded:
        yield seeded


@pytest.fixture
def running(world: World, database_url: str) -> Iterator[workers.Workers]:
    settings = _settings(world, database_url)
    started = workers.build(settings, workers.SERVICES, threads=4, poll_seconds=None)
    started.start()
    try:
        yield started
    finally:
        started.stop()


def _settings(world: World, database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        broker_url=RABBITMQ,
        redis_url=REDIS,
        mailchimp_api_url=world.simulator.api_url,
    )


def _until(condition: Callable[[], bool], what: str, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting until {what}")
        time.sleep(0.1)


def _batches_finished_at_mailchimp(world: World) -> bool:
    simulator = world.simulator.simulator
    with simulator.lock:
        found = [b for a in simulator.accounts.values() for b in a.batches.values()]
    return bool(found) and all(b.status == "finished" for b in found)


def test_a_sync_started_before_the_last_batch_was_processed_keeps_the_updates_it_sent(
    world: World, clean_tables: sa.Engine, database_url: str, running: workers.Workers
) -> None:
    engine, list_id = clean_tables, world.audience.list_id
    settings = _settings(world, database_url)
    sync(settings, SyncRequest(max_time=0), wait=False)
    _until(lambda: _last_sync(engine, list_id) is not None, "the first run finished")
    _until(lambda: _batches_finished_at_mailchimp(world), "Mailchimp ran the first batch")
    first = _last_sync(engine, list_id)

    sync(settings, SyncRequest(max_time=0), wait=False)
    _until(
        lambda: (
            run_state(engine, list_id).last_sync_at != first
            and not run_state(engine, list_id).active
        ),
        "the second run finished",
    )
    running.runtime.send(CheckBatches())
    _until(lambda: _settled(engine, list_id), "the batch results were applied")

    updates = update_rows(engine)
    posted = posted_operation_ids(world.simulator.simulator)
    assert {op: n for op, n in posted.items() if n > 1} == {}
    missing = set(posted) - {f"mailchimpsync_{i}" for i in updates.submitted_ids}
    assert sorted(missing) == [], "operations Mailchimp ran without an update row left"
    assert (updates.unsubmitted, updates.uncompleted) == (0, 0)
    assert mismatches(world, engine) == []


def _last_sync(engine: sa.Engine, list_id: str) -> datetime | None:
    with engine.connect() as conn:
        state = runs.read(conn, list_id)
    return None if state is None else state.last_sync_at


def _settled(engine: sa.Engine, list_id: str) -> bool:
    with engine.connect() as conn:
        now = stats.progress(conn, list_id)
    return now is not None and now.settled
