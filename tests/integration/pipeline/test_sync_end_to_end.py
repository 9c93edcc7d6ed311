"""A full sync of a mixed audience, across the services, then a second one that does nothing."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from civicrm_support import CRMS, CrmSide, crm_side
from pipeline_support import World, mismatches, mixed_world
from prometheus_client import REGISTRY
from rabbit_vhosts import dead_letters, isolated_rabbitmq
from server_checks import require_server

from common.settings import Settings
from mcsync import workers
from mcsync.sync import SyncRequest, fetch_and_reconcile
from services.reconciler.decide import CLEANED_ADDRESS

pytestmark = pytest.mark.integration

REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture
def world(clean_tables: sa.Engine) -> Iterator[World]:
    with mixed_world(clean_tables) as seeded:
        yield seeded


@pytest.fixture(params=CRMS)
def crm(request: pytest.FixtureRequest, clean_tables: sa.Engine) -> Iterator[CrmSide]:
    with crm_side(request.param, clean_tables, "mcsync_pipeline_test") as side:
        yield side


def _sync(settings: Settings) -> str:
    out = io.StringIO()
    fetch_and_reconcile(
        settings, SyncRequest(max_time=0), wait=True, out=out, poll=0.2, give_up_after=60
    )
    return out.getvalue()


def test_embedded_sync_brings_both_sides_into_agreement_then_has_nothing_to_do(
    crm: CrmSide, database_url: str, clean_tables: sa.Engine
) -> None:
    with mixed_world(clean_tables, side=crm) as world:
        _agree_then_nothing_to_do(world, crm, database_url)


def _agree_then_nothing_to_do(world: World, crm: CrmSide, database_url: str) -> None:
    settings = Settings(
        database_url=database_url, crm_url=crm.url, mailchimp_api_url=world.simulator.api_url
    )

    first = _sync(settings)

    assert "Both sides agree." in first
    assert f"cannot sync: {CLEANED_ADDRESS}" in first  # the summary says why, not only how many
    assert mismatches(world, crm.engine) == []
    posted = world.request_counts().get("POST /batches", 0)
    assert posted >= 1

    second = _sync(settings)

    assert "0 contacts created, 0 added to and 0 removed from groups" in second
    assert "Mailchimp: 0 changes made" in second
    assert world.request_counts().get("POST /batches", 0) == posted
    list_id = world.audience.list_id
    assert _counted("mcsync_members_fetched_total", audience=list_id) >= 400
    assert _counted("mcsync_rows_decided_total", audience=list_id, outcome="queued") > 0
    assert _counted("mcsync_updates_submitted_total", audience=list_id) > 0
    assert _counted("mcsync_update_results_total", audience=list_id, outcome="ok") > 0
    assert _counted("mcsync_messages_total", actor="fetch_page", outcome="processed") > 0
    requests_made = _counted(
        "mcsync_mailchimp_requests_total", method="POST", endpoint="/batches", status="200"
    )
    assert requests_made >= posted


def _counted(name: str, **labels: str) -> float:
    """A counter's value in this process (it counts across the tests of the session too)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_sync_on_rabbitmq_and_redis_with_separate_workers(world: World, database_url: str) -> None:
    require_server("127.0.0.1", 6379, "Redis")
    settings = Settings(
        database_url=database_url,
        broker_url=isolated_rabbitmq("mcsync_pipeline_test"),
        redis_url=REDIS,
        mailchimp_api_url=world.simulator.api_url,
    )
    # One worker per service, each consuming only its own queue, as in production.
    running = [
        workers.build(settings, [service], threads=2, poll_seconds=1.0)
        for service in workers.SERVICES
    ]
    for worker in running:
        worker.start()
    try:
        first = _sync(settings)
        assert "Both sides agree." in first
        assert mismatches(world, running[0].runtime.engine) == []

        second = _sync(settings)
        assert "Mailchimp: 0 changes made" in second
        assert dead_letters(settings.broker_url) == 0
    finally:
        for worker in running:
            worker.stop()
