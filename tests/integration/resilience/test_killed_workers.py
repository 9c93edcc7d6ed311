"""A sync whose worker process is SIGKILLed at random moments, again and again.

The workers run as a separate OS process (``mcsync worker fetcher reconciler submitter``) on
this machine's RabbitMQ (in a vhost of its own, created with ``rabbitmqctl`` if missing: other
processes on this machine consume the same queue names on ``/``), Redis and Postgres, against a
simulator served from the test process. After each kill the worker is restarted and, while the
run is unfinished, the sync re-triggered.

A batch row left *posting* is resolved only once older than the posting grace, which the
worker is given short here (``POSTING_GRACE_SECONDS``) but still longer than the simulator
takes to answer a POST: a POST the dead worker sent may still land after the kill (Mailchimp
finishes a request whose client went away), and resolving the row before it lands would
post its operations again. A killed run is taken over only once its heartbeat is older than
``STALE_AFTER`` (15 min): right after each kill, when the worker that owned it is certainly
dead, the test moves the heartbeat back by that much in Postgres, which is what waiting
would have done. Likewise the dead process's Redis connection leases (180 s) are dropped.
The worker's own batch poller runs once a minute, so the test sends ``CheckBatches`` itself
while it waits.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa
from civicrm_support import CRMS, CrmSide, crm_side
from dramatiq import Broker
from rabbit_support import RABBITMQ, REDIS, require_isolated_rabbitmq
from resilience_support import (
    World,
    mismatches,
    mixed_world,
    posted_operation_ids,
    read_run_state,
    run_state,
    sync,
    update_rows,
)

from common.broker import build_broker, send
from common.db import cache, stats
from common.db.runs import STALE_AFTER
from common.limits import lease_key
from common.messages import CheckBatches
from common.settings import Settings
from common.vocabulary import SyncStatus
from mcsync.sync import SyncRequest
from sim.mailchimp.simulator import Fault

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
MEMBERS = 3000
MID_RUN_KILLS = 3
MAX_KILLS = 8
SEED = 20261123
SETTLE_SECONDS = 45.0
POST_LATENCY_SECONDS = 1.0
POSTING_GRACE_SECONDS = 5 * POST_LATENCY_SECONDS


class WorkerProcess:
    """``mcsync worker fetcher reconciler submitter`` as a child process."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log = env, log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [str(ROOT / ".venv/bin/mcsync"), "worker", "fetcher", "reconciler", "submitter"]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [*command, "--threads", "4"], env=self.env, cwd=ROOT, stdout=out, stderr=out
            )

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()


@contextmanager
def worker_process(env: dict[str, str], log: Path) -> Iterator[WorkerProcess]:
    worker = WorkerProcess(env, log)
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()


def _worker_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCSYNC_")}
    return (
        env
        | {
            "MCSYNC_DATABASE_URL": settings.database_url,
            "MCSYNC_BROKER_URL": settings.broker_url,
            "MCSYNC_REDIS_URL": settings.redis_url,
            "MCSYNC_MAILCHIMP_API_URL": settings.mailchimp_api_url,
            "MCSYNC_LOG_LEVEL": "WARNING",
            "MCSYNC_POSTING_GRACE_SECONDS": str(POSTING_GRACE_SECONDS),
            "MCSYNC_METRICS_PORT": "0",  # no probes: a restarted worker's port may linger
        }
        | ({"MCSYNC_CRM_URL": settings.crm_url} if settings.crm_url else {})
    )


AGE_HEARTBEAT = sa.text(
    "UPDATE civicrm_mailchimpsync_status SET heartbeat_at = heartbeat_at - :by "
    "WHERE run_id IS NOT NULL AND parked_reason IS NULL"
)


def _as_if_long_dead(engine: sa.Engine, leases: redis.Redis, api_key: str) -> None:
    """What the passing of time does for a dead worker's run and leases."""
    with engine.begin() as conn:
        conn.execute(AGE_HEARTBEAT, {"by": STALE_AFTER + timedelta(minutes=1)})
    leases.delete(lease_key(api_key))


def _where(engine: sa.Engine, list_id: str) -> str:
    """The stage the run was in, or where its results stood once it had finished."""
    with engine.connect() as conn:
        now = stats.progress(conn, list_id)
    if now is None:
        return "not started"
    if now.active:
        return now.stage
    return "finished" if now.settled else "finished, batch results pending"


def _mid_run(killed_at: list[str]) -> int:
    return sum(where != "finished" for where in killed_at)


def _settled(engine: sa.Engine, list_id: str) -> bool:
    with engine.connect() as conn:
        now = stats.progress(conn, list_id)
        return (
            now is not None
            and now.settled
            and cache.status_counts(conn, list_id)[SyncStatus.TODO] == 0
        )


def _slow_down(world: World) -> None:
    """Stretch the run over a few seconds, so that kills land inside its stages."""
    simulator = world.simulator.simulator
    members = f"/lists/{world.audience.list_id}/members"
    simulator.add_fault(Fault("latency", remaining=None, seconds=0.3, path_prefix=members))
    # A slow POST /batches: a kill there leaves a batch row *posting*, posted or not.
    simulator.add_fault(
        Fault(
            "latency",
            remaining=None,
            seconds=POST_LATENCY_SECONDS,
            path_prefix="/batches",
            method="POST",
        )
    )
    simulator.set_switches(batch_operation_delay_seconds=0.004)


def _retrigger_if_unfinished(settings: Settings, engine: sa.Engine, list_id: str) -> None:
    """Trigger again while the killed run is unfinished (its heartbeat now looks stale).

    Once it has finished, a new run is not started: that would be a second sync racing the
    first one's batch results (see test_batch_in_flight.py), not a test of the kill. Killed
    before it took the first trigger, the worker left no run: that trigger is still queued.
    """
    state = read_run_state(engine, list_id)
    if state is not None and state.run_id is not None:
        sync(settings, SyncRequest(max_time=0), wait=False)


def _settings(world: World, crm: CrmSide, database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        crm_url=crm.url,
        broker_url=RABBITMQ,
        redis_url=REDIS,
        mailchimp_api_url=world.simulator.api_url,
    )


def _leases(api_key: str) -> redis.Redis:
    """Redis, without the connection leases a previous test's dead worker left."""
    leases = redis.Redis.from_url(REDIS)
    leases.delete(lease_key(api_key))
    return leases


def _settle(engine: sa.Engine, list_id: str, broker: Broker) -> None:
    """Wait for the run's results (the test sends the batch checks the poller would)."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while not _settled(engine, list_id) and time.monotonic() < deadline:
        send(broker, CheckBatches())
        time.sleep(1.0)


@pytest.fixture(params=CRMS)
def crm(request: pytest.FixtureRequest, clean_tables: sa.Engine) -> Iterator[CrmSide]:
    with crm_side(request.param, clean_tables, "mcsync_killed_workers_test") as side:
        yield side


@pytest.fixture
def world(clean_tables: sa.Engine, crm: CrmSide) -> Iterator[World]:
    require_isolated_rabbitmq()
    with mixed_world(clean_tables, MEMBERS, side=crm) as seeded:
        yield seeded


def test_a_sync_survives_its_worker_being_killed_repeatedly_without_repeating_an_operation(
    world: World, crm: CrmSide, clean_tables: sa.Engine, database_url: str, tmp_path: Path
) -> None:
    engine, list_id, api_key = clean_tables, world.audience.list_id, world.audience.api_key
    settings = _settings(world, crm, database_url)
    leases = _leases(api_key)
    rng = random.Random(SEED)
    killed_at: list[str] = []
    log = tmp_path / "worker.log"
    _slow_down(world)
    broker = build_broker(settings)
    try:
        with worker_process(_worker_env(settings), log) as worker:
            sync(settings, SyncRequest(max_time=0), wait=False)
            while len(killed_at) < MAX_KILLS and _mid_run(killed_at) < MID_RUN_KILLS:
                time.sleep(rng.uniform(0.8, 2.5))  # the worker takes ~1.5 s to start
                worker.kill()
                killed_at.append(_where(engine, list_id))
                _as_if_long_dead(engine, leases, api_key)
                worker.start()
                _retrigger_if_unfinished(settings, engine, list_id)
                send(broker, CheckBatches())
            _settle(engine, list_id, broker)
    finally:
        broker.close()
        leases.close()

    worker_log = log.read_text(errors="replace")[-3000:]
    assert _settled(engine, list_id), worker_log
    state = run_state(engine, list_id)
    assert not state.active
    assert _mid_run(killed_at) >= 2, killed_at
    updates = update_rows(engine)
    assert (updates.unsubmitted, updates.uncompleted) == (0, 0)
    posted = posted_operation_ids(world.simulator.simulator)
    assert {op: n for op, n in posted.items() if n > 1} == {}
    assert set(posted) == {f"mailchimpsync_{i}" for i in updates.submitted_ids}
    assert mismatches(world, crm.engine) == []
    assert _made_twice(crm) == []


# CRM changes made twice: a change of a run recorded twice, or two contacts the sync created
# for one address. CiviCRM's history says which run wrote a row; the embedded one does not.
_HISTORY_TWICE = """
    SELECT contact_id, group_id, status FROM civicrm_subscription_history
    WHERE method = 'MCsync' GROUP BY contact_id, group_id, status, {run} HAVING count(*) > 1
"""
_CONTACT_TWICE = """
    SELECT lower(e.email) FROM civicrm_contact c
    JOIN civicrm_email e ON e.contact_id = c.id AND e.is_primary
    WHERE c.source = 'mailchimpsync' GROUP BY lower(e.email) HAVING count(*) > 1
"""


def _made_twice(crm: CrmSide) -> list[tuple[object, ...]]:
    run = "tracking" if crm.url else "date"
    with crm.engine.connect() as conn:
        history = conn.execute(sa.text(_HISTORY_TWICE.replace("{run}", run)))
        contacts = conn.execute(sa.text(_CONTACT_TWICE))
        return [tuple(row) for row in [*history, *contacts]]


# What the sync wrote to a CRM's tables: contacts it created and history rows.
_SYNC_WRITES = sa.text("""
    SELECT (SELECT count(*) FROM civicrm_contact WHERE source = 'mailchimpsync')
         + (SELECT count(*) FROM civicrm_subscription_history WHERE method = 'MCsync')
""")


def _sync_writes(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(_SYNC_WRITES).scalar_one())


@pytest.mark.parametrize("crm", ["civicrm"], indirect=True)
def test_a_worker_killed_right_after_civicrm_committed_makes_no_crm_change_twice(
    world: World, crm: CrmSide, clean_tables: sa.Engine, database_url: str, tmp_path: Path
) -> None:
    engine, list_id, api_key = clean_tables, world.audience.list_id, world.audience.api_key
    settings = _settings(world, crm, database_url)
    leases = _leases(api_key)
    log = tmp_path / "worker.log"
    in_window = 0  # kills that left CiviCRM ahead of the copy in Postgres
    broker = build_broker(settings)
    try:
        with worker_process(_worker_env(settings), log) as worker:
            sync(settings, SyncRequest(max_time=0), wait=False)
            for _ in range(3):
                before = _sync_writes(crm.engine)
                deadline = time.monotonic() + 30
                while _sync_writes(crm.engine) == before and time.monotonic() < deadline:
                    time.sleep(0.002)
                worker.kill()  # CiviCRM has just committed a write of the sync
                in_window += _sync_writes(crm.engine) > _sync_writes(engine)
                _as_if_long_dead(engine, leases, api_key)
                worker.start()
                _retrigger_if_unfinished(settings, engine, list_id)
            _settle(engine, list_id, broker)
    finally:
        broker.close()
        leases.close()

    assert _settled(engine, list_id), log.read_text(errors="replace")[-3000:]
    assert in_window >= 1
    assert _made_twice(crm) == []
    assert mismatches(world, crm.engine) == []
