"""The submitter's batch poller lives through a RabbitMQ outage.

A batch whose webhook never comes is applied only because the poller sends ``CheckBatches``
now and then; if the poller died with the broker, the batch would wait for a restart. The
worker here reaches RabbitMQ through a proxy that stages the outage (``tcp_proxy``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from rabbit_support import REDIS, VHOST, require_isolated_rabbitmq
from tcp_proxy import TcpProxy

from common.db import config
from common.db.schema import batch, cache, update
from common.mailchimp import MailchimpClient
from common.settings import Settings
from mcsync import workers
from services.submitter.handlers import submit_updates
from sim.mailchimp import RunningSimulator, Simulator, run_in_thread

pytestmark = pytest.mark.integration


@pytest.fixture
def rabbitmq() -> Iterator[TcpProxy]:
    require_isolated_rabbitmq()
    proxy = TcpProxy(5672)
    yield proxy
    proxy.close()


@pytest.fixture
def simulator() -> Iterator[RunningSimulator]:
    with run_in_thread(Simulator()) as running:
        yield running


def _audience(engine: sa.Engine, simulator: RunningSimulator) -> tuple[str, str]:
    account = simulator.simulator.create_account("Test Org")
    audience = simulator.simulator.create_list(account.api_key, "Newsletter")
    with engine.begin() as conn:
        group = conn.execute(
            sa.text("INSERT INTO civicrm_group (name, title) VALUES ('n', 'N') RETURNING id")
        ).scalar_one()
        account_id = config.add_account(conn, "Test Org", account.api_key)
        config.add_connection(conn, account_id, audience.id, group, {})
        for n in range(3):
            row = conn.execute(
                sa.insert(cache)
                .values(mailchimp_list_id=audience.id, sync_status="live")
                .returning(cache.c.id)
            ).scalar_one()
            data = {"email_address": f"p{n}@example.org", "status": "subscribed"}
            conn.execute(sa.insert(update).values(mailchimpsync_cache_id=row, data=data))
    return account.api_key, audience.id


def _processed(engine: sa.Engine) -> bool:
    with engine.connect() as conn:
        states = conn.execute(sa.select(batch.c.response_processed)).scalars().all()
    return bool(states) and all(state == 2 for state in states)


def test_a_batch_posted_during_a_broker_outage_is_applied_once_the_broker_is_back(
    clean_tables: sa.Engine, database_url: str, rabbitmq: TcpProxy, simulator: RunningSimulator
) -> None:
    api_key, list_id = _audience(clean_tables, simulator)
    settings = Settings(
        database_url=database_url,
        broker_url=rabbitmq.url("amqp://guest:guest@127.0.0.1:{port}/" + VHOST),
        redis_url=REDIS,
        mailchimp_api_url=simulator.api_url,
    )
    running = workers.build(settings, ["submitter"], threads=2, poll_seconds=0.3)
    running.start()
    try:
        with rabbitmq.outage():
            time.sleep(1.5)  # a few polls fail
            client = MailchimpClient(api_key, base_url=simulator.api_url)
            # Posted with its webhook lost: only the poller can have its results applied.
            submit_updates(clean_tables, client, list_id, datetime.now(UTC))
            client.close()
            assert not running.healthy()
        deadline = time.monotonic() + 60
        while not _processed(clean_tables):
            assert time.monotonic() < deadline, "the batch was never applied"
            time.sleep(0.2)
        assert running.healthy()
    finally:
        running.stop()
