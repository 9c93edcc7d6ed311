"""Trials: RabbitMQ or Redis goes away mid-run, and a webhook arrives meanwhile.

Slow (each outage lasts as long as a real one): run with ``make bench`` or ``-m slow``. The
workers, the webhook app and its relay run in this process and reach RabbitMQ and Redis
through proxies that stage the outage (``tcp_proxy``); the audience is the pipeline's mixed
world. Each trial checks that the run completes with both sides in agreement, that no
operation reached Mailchimp twice, and that the webhook's event was acted on once.

``MCSYNC_TRIAL_OUTAGE_SECONDS`` sets how long each outage lasts (30 by default).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from urllib.parse import urlencode

import pytest
import sqlalchemy as sa
from asgi_client import TestClient
from rabbit_support import REDIS, VHOST, require_isolated_rabbitmq
from resilience_support import World, mismatches, mixed_world, posted_operation_ids, sync
from server_checks import require_server
from tcp_proxy import TcpProxy

from common.db import config, runs, stats
from common.settings import Settings
from mcsync import workers
from mcsync.sync import SyncRequest
from services.webhooks.app import AUDIENCE_WEBHOOK_PATH, Deps, create_app
from services.webhooks.relay import Relay

pytestmark = [pytest.mark.integration, pytest.mark.slow]

OUTAGE_SECONDS = float(os.environ.get("MCSYNC_TRIAL_OUTAGE_SECONDS", "30"))
MEMBERS = 3000
SECRET = "trial-secret-0123456789abcdef"


@pytest.fixture
def world(clean_tables: sa.Engine) -> Iterator[World]:
    require_isolated_rabbitmq()
    require_server("127.0.0.1", 6379, "Redis")
    with mixed_world(clean_tables, MEMBERS) as seeded:
        with clean_tables.begin() as conn:
            account_id = conn.execute(sa.text("SELECT id FROM mailchimpsync_account")).scalar_one()
            config.add_webhook_secret(conn, account_id, SECRET)
        yield seeded


@pytest.fixture
def proxies() -> Iterator[dict[str, TcpProxy]]:
    found = {"rabbitmq": TcpProxy(5672), "redis": TcpProxy(6379)}
    yield found
    for proxy in found.values():
        proxy.close()


def _until(condition: Callable[[], bool], what: str, seconds: float) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > seconds:
            pytest.fail(f"timed out after {seconds:.0f} s waiting until {what}")
        time.sleep(0.2)
    return time.monotonic() - started


def _batches_posted(engine: sa.Engine) -> bool:
    with engine.connect() as conn:
        posted = conn.execute(sa.text("SELECT count(*) FROM civicrm_mailchimpsync_batch"))
        return bool(posted.scalar_one())


def _settled(engine: sa.Engine, list_id: str) -> bool:
    with engine.connect() as conn:
        state = runs.read(conn, list_id)
        progress = stats.progress(conn, list_id)
        unprocessed = conn.execute(
            sa.text("SELECT count(*) FROM mailchimpsync_webhook_event WHERE processed_at IS NULL")
        ).scalar_one()
    done = state is not None and state.last_sync_at is not None
    return done and progress is not None and progress.settled and not unprocessed


def _profile_webhook(client: TestClient, world: World) -> None:
    member = next(m for m in world.plan.members if m.status == "subscribed")
    body = urlencode(
        {
            "type": "profile",
            "data[list_id]": world.audience.list_id,
            "data[email]": member.email,
            "data[merges][FNAME]": "Renamed",
            "data[merges][LNAME]": "During the outage",
        }
    )
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    reply = client.post(f"{AUDIENCE_WEBHOOK_PATH}?secret={SECRET}", content=body, headers=headers)
    assert reply.status_code == 200


@pytest.mark.parametrize("server", ["redis", "rabbitmq"])
def test_a_run_goes_through_an_outage_with_a_webhook_in_it(
    world: World,
    clean_tables: sa.Engine,
    database_url: str,
    proxies: dict[str, TcpProxy],
    server: str,
) -> None:
    settings = Settings(
        database_url=database_url,
        broker_url=proxies["rabbitmq"].url("amqp://guest:guest@127.0.0.1:{port}/" + VHOST),
        redis_url=proxies["redis"].url(REDIS.replace("6379", "{port}")),
        mailchimp_api_url=world.simulator.api_url,
    )
    running = workers.build(settings, workers.SERVICES, threads=4, poll_seconds=1.0)
    running.start()
    relay = Relay(clean_tables, running.runtime.send, every_seconds=1.0, grace_seconds=1.0)
    relay.start()
    list_id = world.audience.list_id
    try:
        with TestClient(create_app(Deps(clean_tables, running.runtime.send))) as client:
            sync(settings, SyncRequest(max_time=0), wait=False)
            _until(lambda: _batches_posted(clean_tables), "the run posted a batch", 120)
            with proxies[server].outage():
                time.sleep(OUTAGE_SECONDS / 2)
                _profile_webhook(client, world)
                time.sleep(OUTAGE_SECONDS / 2)
            took = _until(lambda: _settled(clean_tables, list_id), "the run settled", 300)
    finally:
        relay.stop()
        running.stop()

    repeated = {op: n for op, n in posted_operation_ids(world.simulator.simulator).items() if n > 1}
    with clean_tables.connect() as conn:
        events = conn.execute(
            sa.text("SELECT processed_at IS NOT NULL, outcome FROM mailchimpsync_webhook_event")
        ).all()
        renamed = conn.execute(
            sa.text("SELECT count(*) FROM civicrm_contact WHERE first_name = 'Renamed'")
        ).scalar_one()
    print(f"\n{server} out for {OUTAGE_SECONDS:.0f} s; settled {took:.1f} s after it ended")
    assert repeated == {}
    assert [processed for processed, _ in events] == [True]
    assert renamed == 1
    assert mismatches(world, clean_tables) == []
