"""A ``POST /batches`` Mailchimp takes in after the client gave up on its answer.

Mailchimp has no idempotency key: a batch whose POST timed out may still be created, a
moment or minutes later. Its operations must run once: the submitter neither posts them
again while the late batch can still land, nor lets two batches hold the same update.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from simulator_support import posted_operation_ids
from submitter_support import Audience, batches, new_subscribers, rows, updates, utcnow

from common.mailchimp import MailchimpClient, MailchimpTransientError
from services.submitter.handlers import UNANSWERED_AFTER, submit_updates

pytestmark = pytest.mark.integration

TIMEOUT = 0.4  # the client's, in seconds
GRACE = timedelta(seconds=3)  # MCSYNC_POSTING_GRACE_SECONDS: longer than a POST can land late


@pytest.fixture
def impatient(audience: Audience) -> Iterator[MailchimpClient]:
    """A client that gives up on an answer after ``TIMEOUT`` seconds."""
    client = MailchimpClient(
        audience.api_key, base_url=audience.running.api_url, timeout=TIMEOUT, retries=0
    )
    yield client
    client.close()


@pytest.mark.parametrize("late_by", [TIMEOUT + 0.1, 1.2, GRACE.total_seconds() - 0.6])
def test_a_batch_mailchimp_creates_after_the_post_timed_out_runs_its_operations_once(
    audience: Audience, impatient: MailchimpClient, late_by: float
) -> None:
    new_subscribers(audience, 5)
    fault = {"kind": "latency", "seconds": late_by, "count": 1, "method": "POST"}
    fault["path_prefix"] = "/batches"
    audience.control("POST", "/faults", json=fault)

    posted_at = time.monotonic()
    with pytest.raises(MailchimpTransientError):
        submit_updates(audience.engine, impatient, audience.list_id, utcnow(), posting_grace=GRACE)
    # The actor retries the message at once, and keeps retrying: nothing is posted again.
    for _ in range(3):
        submit_updates(audience.engine, impatient, audience.list_id, utcnow(), posting_grace=GRACE)
    # The poller checks until the batch's results are applied.
    deadline = time.monotonic() + GRACE.total_seconds() + 10
    while any(b.response_processed != 2 for b in batches(audience.engine)):
        assert time.monotonic() < deadline, "the batch was never resolved"
        audience.check(posting_grace=GRACE)
        time.sleep(0.1)

    time.sleep(max(0.0, posted_at + late_by + 0.5 - time.monotonic()))  # the late POST landed
    audience.wait_batches_finished()

    assert set(posted_operation_ids(audience.running.simulator).values()) == {1}
    assert len(posted_operation_ids(audience.running.simulator)) == 5
    assert all(u.completed and u.error_response is None for u in updates(audience.engine))
    assert {r.sync_status for r in rows(audience.engine).values()} == {"ok"}
    assert {m["status"] for m in audience.members().values()} == {"subscribed"}


def test_a_late_batch_is_adopted_as_soon_as_its_post_has_surely_ended(
    audience: Audience, impatient: MailchimpClient
) -> None:
    new_subscribers(audience, 3)
    fault = {"kind": "latency", "seconds": 1.0, "count": 1, "method": "POST"}
    audience.control("POST", "/faults", json=fault | {"path_prefix": "/batches"})
    with pytest.raises(MailchimpTransientError):
        submit_updates(audience.engine, impatient, audience.list_id, utcnow())
    time.sleep(1.5)
    audience.wait_batches_finished()

    early = audience.check()  # the POST may still be on its way: nothing is resolved
    later = audience.check(now=utcnow() + UNANSWERED_AFTER)  # long before the posting grace

    assert (early.adopted, early.released) == ((), ())
    assert len(later.adopted) == 1 and later.released == ()
    assert set(posted_operation_ids(audience.running.simulator).values()) == {1}
    assert {r.sync_status for r in rows(audience.engine).values()} == {"ok"}
