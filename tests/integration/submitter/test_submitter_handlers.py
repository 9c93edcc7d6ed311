"""The submitter against a real Postgres and the Mailchimp simulator (polling, no webhooks)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import sqlalchemy as sa
from submitter_support import (
    Audience,
    add_rows,
    add_updates,
    batches,
    new_subscribers,
    rows,
    status_log,
    subscribe,
    unprocessed,
    updates,
    utcnow,
)

from common.db import config, crm, runs
from common.db.batches import (
    count_unsubmitted,
    lists_with_open_batches,
    processing_turn,
    try_lock_polling,
    unlock_polling,
)
from common.db.runs import RunParams
from common.db.schema import batch
from common.mailchimp import MailchimpError, MailchimpTransientError
from common.member_data import subscriber_hash
from common.messages import CheckBatches, SubmitUpdates
from common.vocabulary import Stage
from services.submitter import flow
from services.submitter.handlers import (
    POSTING_GRACE,
    CheckReport,
    claim_batch,
    process_batch,
    submit_full_batches,
    submit_updates,
)

pytestmark = pytest.mark.integration

LATER = POSTING_GRACE + timedelta(minutes=1)


def _post_stuck_batch(audience: Audience, subscribers: int) -> None:
    """Post a batch of new subscribers that Mailchimp starts and never finishes."""
    new_subscribers(audience, subscribers)
    audience.control("PATCH", "/switches", json={"batch_stuck": True})
    submit_updates(audience.engine, audience.client, audience.list_id, utcnow())


def _import(audience: Audience, records: list[dict[str, object]]) -> None:
    audience.control("POST", f"/lists/{audience.list_id}/members/import", json=records)


def test_2500_updates_go_in_three_batches_and_every_row_ends_ok(audience: Audience) -> None:
    new_subscribers(audience, 2400)
    known = [f"known{n}@example.org" for n in range(100)]
    _import(audience, [{"email": e, "status": "subscribed"} for e in known])
    known_rows = add_rows(
        audience.engine, audience.list_id, known, known=True, mailchimp_status="subscribed"
    )
    add_updates(audience.engine, [(c, {"status": "unsubscribed"}) for c in known_rows])

    report = submit_updates(audience.engine, audience.client, audience.list_id, utcnow())
    audience.drain()

    assert (report.batches_posted, report.updates_submitted, report.remaining) == (3, 2500, 0)
    seen = audience.requests_seen()
    assert seen["counts"]["POST /batches"] == 3
    assert seen["batch_operation_counts"] == {
        "POST /lists/{list_id}/members": 2400,
        "PUT /lists/{list_id}/members/{subscriber_hash}": 100,
    }
    assert {r.sync_status for r in rows(audience.engine).values()} == {"ok"}
    assert all(u.completed and u.error_response is None for u in updates(audience.engine))
    members = audience.members()
    assert members["new7@example.org"]["status"] == "subscribed"
    assert members["known7@example.org"]["status"] == "unsubscribed"
    new_row = next(
        r for r in rows(audience.engine).values() if r.mailchimp_email == "new7@example.org"
    )
    assert new_row.mailchimp_member_id == subscriber_hash("new7@example.org")
    assert new_row.mailchimp_status == "subscribed" and new_row.mailchimp_updated is not None
    assert [(b.total_operations, b.response_processed) for b in batches(audience.engine)] == [
        (1000, 2),
        (1000, 2),
        (500, 2),
    ]


def test_full_batches_are_posted_and_the_rest_left_for_the_submit_stage(
    audience: Audience,
) -> None:
    new_subscribers(audience, 2500)

    posted = submit_full_batches(audience.engine, audience.client, audience.list_id, utcnow())
    again = submit_full_batches(audience.engine, audience.client, audience.list_id, utcnow())

    assert (posted, again, audience.batch_posts()) == (2, 0, 2)
    with audience.engine.connect() as conn:
        assert count_unsubmitted(conn, audience.list_id) == 500


@pytest.mark.parametrize(
    ("stage", "leftovers_sent"),
    [(Stage.READY_TO_RECONCILE_QUEUE, False), (Stage.READY_TO_FETCH, True)],
)
def test_updates_left_after_a_batch_wait_for_a_run_that_is_deciding_rows(
    audience: Audience, stage: Stage, leftovers_sent: bool
) -> None:
    with audience.engine.begin() as conn:
        group = crm.create_group(conn, "newsletter", "Newsletter")
        account = config.add_account(conn, "test", audience.api_key)
        config.add_connection(conn, account, audience.list_id, group)
        state = runs.start(conn, runs.lock(conn, audience.list_id), RunParams(), False, utcnow())
        runs.advance(conn, state, stage, utcnow())
    new_subscribers(audience, 1000)
    submit_updates(audience.engine, audience.client, audience.list_id, utcnow())
    new_subscribers(audience, 10, prefix="later")  # queued by the run's next chunks
    audience.wait_batches_finished()
    deps = flow.Deps(audience.engine, lambda _: audience.client, utcnow)

    sent = flow.check(deps, CheckBatches())

    assert not unprocessed(audience.engine)
    leftovers = [SubmitUpdates(list_id=audience.list_id, run_id="")]
    assert sent == (leftovers if leftovers_sent else [])


def test_a_new_member_another_row_already_holds_leaves_both_rows_to_the_duplicate_cleanup(
    audience: Audience,
) -> None:
    # A CRM-only row's member is created at Mailchimp while a fetch brought the same member
    # in as a row of its own: the results must not give both rows one member id.
    email = "twice@example.org"
    (fetched,) = add_rows(audience.engine, audience.list_id, [email], known=True)
    (crm_only,) = add_rows(audience.engine, audience.list_id, [email])
    add_updates(audience.engine, [(crm_only, subscribe(email))])

    submit_updates(audience.engine, audience.client, audience.list_id, utcnow())
    audience.drain()

    both = rows(audience.engine)
    assert both[fetched].mailchimp_member_id == subscriber_hash(email)
    assert both[crm_only].mailchimp_member_id is None
    assert (both[crm_only].mailchimp_status, both[crm_only].sync_status) == ("subscribed", "ok")


def test_a_tags_update_waits_until_its_member_exists(audience: Audience) -> None:
    (cache_id,) = add_rows(audience.engine, audience.list_id, ["tagged@example.org"])
    add_updates(
        audience.engine,
        [
            (cache_id, subscribe("tagged@example.org")),
            (cache_id, {"tags": [{"name": "crm", "status": "active"}]}),
        ],
    )

    first = submit_updates(audience.engine, audience.client, audience.list_id, utcnow())
    audience.drain()
    assert (first.updates_submitted, first.deferred, first.remaining) == (1, 1, 1)
    assert audience.requests_seen()["batch_operation_counts"] == {
        "POST /lists/{list_id}/members": 1
    }

    second = submit_updates(audience.engine, audience.client, audience.list_id, utcnow())
    audience.drain()
    assert (second.updates_submitted, second.deferred, second.remaining) == (1, 0, 0)
    assert audience.members()["tagged@example.org"]["tags"][0]["name"] == "crm"
    assert rows(audience.engine)[cache_id].sync_status == "ok"


def test_a_subscribe_refused_for_compliance_is_retried_as_pending(audience: Audience) -> None:
    email = "gone@example.org"
    _import(audience, [{"email": email, "status": "unsubscribed", "unsubscribed_by": "contact"}])
    (cache_id,) = add_rows(
        audience.engine, audience.list_id, [email], known=True, mailchimp_status="unsubscribed"
    )
    add_updates(audience.engine, [(cache_id, {"status": "subscribed"})])

    submit_updates(audience.engine, audience.client, audience.list_id, utcnow())
    audience.drain()
    refused, retry = updates(audience.engine)
    assert refused.completed and "Member In Compliance State" in refused.error_response
    assert (retry.completed, retry.mailchimpsync_batch_id, retry.data) == (
        False,
        None,
        {"status": "pending"},
    )
    assert rows(audience.engine)[cache_id].sync_status == "redo"

    submit_updates(audience.engine, audience.client, audience.list_id, utcnow())
    audience.drain()
    assert updates(audience.engine)[1].completed
    assert rows(audience.engine)[cache_id].sync_status == "ok"
    assert rows(audience.engine)[cache_id].mailchimp_status == "pending"
    assert audience.members()[email]["status"] == "pending"


def test_any_other_error_completes_the_update_and_fails_the_row(audience: Audience) -> None:
    (cache_id,) = add_rows(audience.engine, audience.list_id, ["not-an-email"])
    add_updates(audience.engine, [(cache_id, subscribe("not-an-email"))])

    submit_updates(audience.engine, audience.client, audience.list_id, utcnow())
    audience.drain()

    (failed,) = updates(audience.engine)
    assert failed.completed and failed.error_response.startswith("400 Invalid Resource")
    assert rows(audience.engine)[cache_id].sync_status == "fail"
    assert rows(audience.engine)[cache_id].fail_reason == failed.error_response


def test_an_update_that_cannot_be_an_operation_is_rejected_without_being_sent(
    audience: Audience,
) -> None:
    (cache_id,) = add_rows(audience.engine, audience.list_id, ["x@example.org"])
    add_updates(audience.engine, [(cache_id, {"merge_fields": {"FNAME": "X"}})])

    report = submit_updates(audience.engine, audience.client, audience.list_id, utcnow())

    assert (report.batches_posted, report.rejected) == (0, 1)
    assert updates(audience.engine)[0].completed
    assert rows(audience.engine)[cache_id].sync_status == "fail"
    assert rows(audience.engine)[cache_id].fail_reason == updates(audience.engine)[0].error_response
    assert audience.batch_posts() == 0


def test_processing_a_batch_twice_changes_nothing(audience: Audience) -> None:
    email = "gone@example.org"
    _import(audience, [{"email": email, "status": "unsubscribed", "unsubscribed_by": "contact"}])
    (cache_id,) = add_rows(audience.engine, audience.list_id, [email], known=True)
    add_updates(audience.engine, [(cache_id, {"status": "subscribed"})])
    new_subscribers(audience, 3)
    submit_updates(audience.engine, audience.client, audience.list_id, utcnow())
    audience.drain()
    before = (updates(audience.engine), rows(audience.engine), batches(audience.engine))
    (processed,) = batches(audience.engine)

    again = process_batch(audience.engine, audience.client, processed.mailchimp_batch_id)
    forced = process_batch(
        audience.engine, audience.client, processed.mailchimp_batch_id, force=True
    )

    assert again.outcome == "already_processed"
    assert (forced.outcome, forced.succeeded, forced.retried, forced.failed) == (
        "processed",
        0,
        0,
        0,
    )
    assert (updates(audience.engine), rows(audience.engine), batches(audience.engine)) == before


def test_a_result_for_an_update_we_do_not_know_is_skipped_with_a_warning(
    audience: Audience, caplog: pytest.LogCaptureFixture
) -> None:
    kept, dropped = new_subscribers(audience, 2)
    submit_updates(audience.engine, audience.client, audience.list_id, utcnow())
    with audience.engine.begin() as conn:  # e.g. its row was deleted since (config change)
        conn.execute(
            sa.text("DELETE FROM civicrm_mailchimpsync_update WHERE id = :u"), {"u": dropped}
        )

    audience.drain()

    (posted,) = batches(audience.engine)
    expected = (
        f"batch {posted.mailchimp_batch_id}: result for operation 'mailchimpsync_{dropped}', "
        "an update we do not know, skipped"
    )
    assert [u.id for u in updates(audience.engine) if u.completed] == [kept]
    assert [line["message"] for line in status_log(audience.engine, audience.list_id)][-1:] == [
        expected
    ]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert f"audience {audience.list_id}: {expected}" in warnings


def test_an_unknown_batch_id_is_ignored(audience: Audience) -> None:
    report = process_batch(audience.engine, audience.client, "0123456789")

    assert report.outcome == "ignored"
    assert audience.requests_seen()["counts"] == {}


def test_a_worker_killed_between_claim_and_post_leaves_a_batch_posted_exactly_once(
    audience: Audience,
) -> None:
    new_subscribers(audience, 5)
    claim = claim_batch(audience.engine, audience.list_id, utcnow())  # ... and then the kill
    assert claim.batch_row_id is not None
    with audience.engine.connect() as conn:
        assert lists_with_open_batches(conn) == {audience.list_id}  # the poller looks at it

    soon = submit_updates(audience.engine, audience.client, audience.list_id, utcnow())
    assert (soon.batches_posted, audience.batch_posts()) == (0, 0)  # maybe still posting
    later = submit_updates(audience.engine, audience.client, audience.list_id, utcnow() + LATER)
    audience.drain()

    assert later.batches_posted == 1
    seen = audience.requests_seen()
    assert seen["counts"]["POST /batches"] == 1
    assert seen["batch_operation_counts"] == {"POST /lists/{list_id}/members": 5}
    assert [b.status for b in batches(audience.engine)] == ["aborted", "finished"]
    assert {r.sync_status for r in rows(audience.engine).values()} == {"ok"}


def test_a_batch_posted_but_not_recorded_is_adopted_not_posted_again(audience: Audience) -> None:
    new_subscribers(audience, 5)
    claim = claim_batch(audience.engine, audience.list_id, utcnow())
    assert claim.batch is not None
    audience.client.post("/batches", claim.batch.to_wire())  # ... and then the kill
    audience.wait_batches_finished()

    report = audience.check(utcnow() + LATER)
    submit_updates(audience.engine, audience.client, audience.list_id, utcnow() + LATER)

    assert len(report.adopted) == 1 and report.released == ()
    assert audience.batch_posts() == 1
    (adopted,) = batches(audience.engine)
    assert (adopted.mailchimp_batch_id, adopted.response_processed) == (report.adopted[0], 2)
    assert {r.sync_status for r in rows(audience.engine).values()} == {"ok"}
    assert all(u.completed for u in updates(audience.engine))


def test_an_ambiguous_post_waits_while_a_later_batch_is_unfinished(audience: Audience) -> None:
    new_subscribers(audience, 2)
    claim = claim_batch(audience.engine, audience.list_id, utcnow())
    assert claim.batch is not None
    audience.control("PATCH", "/switches", json={"batch_stuck": True})
    audience.client.post("/batches", claim.batch.to_wire())

    waiting = audience.check(utcnow() + LATER)
    audience.control("PATCH", "/switches", json={"batch_stuck": False})
    audience.wait_batches_finished()
    resolved = audience.check(utcnow() + LATER)

    assert (waiting.unresolved, waiting.adopted) == ((claim.batch_row_id,), ())
    assert len(resolved.adopted) == 1
    assert audience.batch_posts() == 1


def test_a_stuck_batch_is_reported_in_the_status_log_and_kept(audience: Audience) -> None:
    _post_stuck_batch(audience, 3)

    first = audience.check()
    second = audience.check(utcnow() + timedelta(hours=2))

    assert first.stalled == ()
    assert len(second.stalled) == 1 and second.processed == ()
    (entry,) = status_log(audience.engine, audience.list_id)
    assert second.stalled[0] in entry["message"] and "not progressing" in entry["message"]
    assert len(unprocessed(audience.engine)) == 1
    audience.control("PATCH", "/switches", json={"batch_stuck": False})
    audience.drain()
    assert {r.sync_status for r in rows(audience.engine).values()} == {"ok"}


def test_the_poller_reads_a_batch_that_is_not_moving_less_and_less_often(
    audience: Audience,
) -> None:
    _post_stuck_batch(audience, 3)
    start = utcnow()

    moved = audience.check(start)  # posted pending, read started
    idle = audience.check(start + timedelta(minutes=10))
    too_soon = audience.check(start + timedelta(minutes=14))
    again = audience.check(start + timedelta(minutes=15))

    (posted,) = batches(audience.engine)
    read = (posted.mailchimp_batch_id,)
    assert moved.in_progress == idle.in_progress == again.in_progress == read
    assert too_soon.in_progress == () and too_soon.backed_off == read
    assert (posted.progressed_at, posted.checked_at) == (start, start + timedelta(minutes=15))
    assert audience.requests_seen()["counts"]["GET /batches/{batch_id}"] == 3
    assert not (moved.stalled or idle.stalled or again.stalled)
    audience.control("PATCH", "/switches", json={"batch_stuck": False})
    audience.drain()


def test_a_check_while_another_process_checks_does_nothing(audience: Audience) -> None:
    new_subscribers(audience, 3)
    submit_updates(audience.engine, audience.client, audience.list_id, utcnow())
    audience.wait_batches_finished()

    with audience.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as other:
        assert try_lock_polling(other)
        meanwhile = audience.check()
        unlock_polling(other)
    after = audience.check()

    assert meanwhile == CheckReport(skipped=True)
    assert len(after.processed) == 1 and not after.skipped
    assert audience.requests_seen()["counts"]["GET /batches/{batch_id}"] == 1


def test_the_poller_processes_a_batch_whose_webhook_never_came(audience: Audience) -> None:
    new_subscribers(audience, 3)
    submit_updates(audience.engine, audience.client, audience.list_id, utcnow())
    audience.wait_batches_finished()

    report = audience.check()

    (done,) = batches(audience.engine)
    assert report.processed == (done.mailchimp_batch_id,)
    assert (done.response_processed, done.finished_operations, done.total_operations) == (2, 3, 3)
    assert done.completed_at is not None


def _killed_midway(audience: Audience) -> str:
    """A batch whose processing was claimed, then its worker killed; its Mailchimp id."""
    new_subscribers(audience, 3)
    submit_updates(audience.engine, audience.client, audience.list_id, utcnow())
    (listed,) = audience.wait_batches_finished()
    with audience.engine.begin() as conn:
        conn.execute(sa.update(batch).values(response_processed=1, completed_at=utcnow()))
    return str(listed["id"])


def test_a_processing_killed_midway_is_taken_over_at_once_by_the_redelivered_message(
    audience: Audience,
) -> None:
    batch_id = _killed_midway(audience)

    report = process_batch(audience.engine, audience.client, batch_id)

    assert (report.outcome, report.succeeded) == ("processed", 3)
    assert {r.sync_status for r in rows(audience.engine).values()} == {"ok"}


def test_a_processing_killed_midway_is_taken_over_at_once_by_the_poller(
    audience: Audience,
) -> None:
    batch_id = _killed_midway(audience)

    assert audience.check().processed == (batch_id,)
    assert {r.sync_status for r in rows(audience.engine).values()} == {"ok"}


def test_a_batch_a_live_worker_is_processing_is_left_to_it(audience: Audience) -> None:
    batch_id = _killed_midway(audience)
    (row,) = batches(audience.engine)
    with processing_turn(audience.engine, row.id) as mine:  # the live worker's turn
        assert mine
        report = process_batch(audience.engine, audience.client, batch_id)
        check = audience.check()

    assert report.outcome == "being_processed"
    assert check.processed == () and check.in_progress == (batch_id,)
    assert "GET /batches/{batch_id}" not in audience.requests_seen()["counts"]  # not read


def _fail_next_post(audience: Audience, status: int) -> None:
    fault = {"kind": "status", "status": status, "path_prefix": "/batches", "method": "POST"}
    audience.control("POST", "/faults", json=fault)


def test_a_post_refused_for_the_rate_limit_leaves_the_updates_unsubmitted_and_retryable(
    audience: Audience,
) -> None:
    new_subscribers(audience, 4)
    _fail_next_post(audience, 429)  # Mailchimp answers 429 before doing anything

    with pytest.raises(MailchimpTransientError):
        submit_updates(audience.engine, audience.client, audience.list_id, utcnow())
    assert all(
        u.mailchimpsync_batch_id is None and not u.completed for u in updates(audience.engine)
    )
    assert [b.status for b in batches(audience.engine)] == ["aborted"]

    retried = submit_updates(audience.engine, audience.client, audience.list_id, utcnow())
    audience.drain()

    assert retried.batches_posted == 1
    listed = audience.client.get("/batches")["batches"]
    assert len(listed) == 1
    assert audience.requests_seen()["batch_operation_counts"] == {
        "POST /lists/{list_id}/members": 4
    }
    assert {r.sync_status for r in rows(audience.engine).values()} == {"ok"}


def test_a_post_answered_5xx_is_posted_again_only_once_it_cannot_land_any_more(
    audience: Audience,
) -> None:
    new_subscribers(audience, 4)
    _fail_next_post(audience, 503)  # a server error: the batch may be created all the same

    with pytest.raises(MailchimpTransientError):
        submit_updates(audience.engine, audience.client, audience.list_id, utcnow())
    soon = submit_updates(audience.engine, audience.client, audience.list_id, utcnow())
    assert (soon.batches_posted, audience.batch_posts()) == (0, 0)  # waiting, not reposting

    later = submit_updates(audience.engine, audience.client, audience.list_id, utcnow() + LATER)
    audience.drain()

    assert later.batches_posted == 1
    assert audience.requests_seen()["batch_operation_counts"] == {
        "POST /lists/{list_id}/members": 4
    }
    assert [b.status for b in batches(audience.engine)] == ["aborted", "finished"]
    assert {r.sync_status for r in rows(audience.engine).values()} == {"ok"}


def test_a_post_mailchimp_refuses_outright_releases_its_updates(audience: Audience) -> None:
    new_subscribers(audience, 2)
    fault = {"kind": "status", "status": 400, "path_prefix": "/batches", "method": "POST"}
    audience.control("POST", "/faults", json=fault)

    with pytest.raises(MailchimpError):
        submit_updates(audience.engine, audience.client, audience.list_id, utcnow())
    retried = submit_updates(audience.engine, audience.client, audience.list_id, utcnow())
    audience.drain()

    assert retried.batches_posted == 1
    assert [b.status for b in batches(audience.engine)] == ["aborted", "finished"]
    assert audience.requests_seen()["batch_operation_counts"] == {
        "POST /lists/{list_id}/members": 2
    }


def test_a_runs_batch_mailchimp_refuses_parks_the_run_saying_why(audience: Audience) -> None:
    with audience.engine.begin() as conn:
        group = crm.create_group(conn, "newsletter", "Newsletter")
        config.add_connection(
            conn, config.add_account(conn, "t", audience.api_key), audience.list_id, group
        )
        state = runs.start(conn, runs.lock(conn, audience.list_id), RunParams(), False, utcnow())
        state = runs.advance(conn, state, Stage.READY_TO_SUBMIT_UPDATES, utcnow())
    new_subscribers(audience, 2)
    fault = {"kind": "status", "status": 403, "path_prefix": "/batches", "method": "POST"}
    audience.control("POST", "/faults", json=fault)
    deps = flow.Deps(audience.engine, lambda _: audience.client, utcnow)
    assert state.run_id is not None

    sent = flow.submit(deps, SubmitUpdates(list_id=audience.list_id, run_id=state.run_id))

    with audience.engine.connect() as conn:
        parked = runs.read(conn, audience.list_id)
    assert sent == [] and parked is not None
    assert parked.parked_reason == "Mailchimp refused a batch: 403 Error: Injected fault."
    assert parked.stage is Stage.READY_TO_SUBMIT_UPDATES
    assert all(u.mailchimpsync_batch_id is None for u in updates(audience.engine))


def test_a_batch_mailchimp_no_longer_knows_is_logged_and_its_rows_decided_again(
    audience: Audience,
) -> None:
    _post_stuck_batch(audience, 2)
    (posted,) = batches(audience.engine)
    audience.client.delete(f"/batches/{posted.mailchimp_batch_id}")

    report = audience.check()

    assert report.lost == (posted.mailchimp_batch_id,)
    assert [b.status for b in batches(audience.engine)] == ["aborted"]
    assert all(
        u.completed and "no longer exists" in u.error_response for u in updates(audience.engine)
    )
    assert {r.sync_status for r in rows(audience.engine).values()} == {"todo"}
    assert "no longer exists" in status_log(audience.engine, audience.list_id)[0]["message"]


def test_two_workers_submitting_at_once_send_every_update_exactly_once(
    audience: Audience,
) -> None:
    new_subscribers(audience, 2500)

    with ThreadPoolExecutor(2) as pool:
        reports = list(
            pool.map(
                lambda _: submit_updates(
                    audience.engine, audience.client, audience.list_id, utcnow()
                ),
                range(2),
            )
        )
    audience.drain()

    assert sum(r.updates_submitted for r in reports) == 2500
    assert audience.requests_seen()["batch_operation_counts"] == {
        "POST /lists/{list_id}/members": 2500
    }
    assert {r.sync_status for r in rows(audience.engine).values()} == {"ok"}


def test_a_failing_check_is_logged_and_the_batch_processed_by_the_next_one(
    audience: Audience,
) -> None:
    new_subscribers(audience, 2)
    submit_updates(audience.engine, audience.client, audience.list_id, utcnow())
    audience.wait_batches_finished()
    fault = {"kind": "status", "status": 503, "path_prefix": "/batches/", "method": "GET"}
    audience.control("POST", "/faults", json=fault)

    failed = audience.check()
    retried = audience.check()

    assert failed.processed == () and len(retried.processed) == 1
    assert "will retry" in status_log(audience.engine, audience.list_id)[0]["message"]
    assert {r.sync_status for r in rows(audience.engine).values()} == {"ok"}
