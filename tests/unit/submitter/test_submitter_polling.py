"""When the poller reads a batch again, and when a batch counts as stalled."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from common.db.batches import BatchRow, MailchimpBatchState, last_progress
from services.submitter.polling import MAX_CHECK_INTERVAL, due_for_check, stalled

SUBMITTED = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def batch(
    checked: timedelta | None = None,
    progressed: timedelta | None = None,
    status: str = "pending",
    finished: int = 0,
) -> BatchRow:
    """A posted batch of 1000 operations, read and moved on at these times after submission."""
    return BatchRow(
        id=1,
        list_id="a36b032126",
        mailchimp_batch_id="8b2428d747",
        status=status,
        submitted_at=SUBMITTED,
        completed_at=None,
        finished_operations=finished,
        total_operations=1000,
        response_processed=0,
        checked_at=None if checked is None else SUBMITTED + checked,
        progressed_at=None if progressed is None else SUBMITTED + progressed,
    )


def read(status: str = "pending", finished: int = 0) -> MailchimpBatchState:
    return MailchimpBatchState(status, finished, 0, 1000, None)


def at(offset: timedelta) -> datetime:
    return SUBMITTED + offset


def test_a_batch_never_read_is_due_at_once() -> None:
    assert due_for_check(batch(), at(timedelta(seconds=1)))


def test_a_batch_that_moved_at_its_last_read_is_due_at_the_next_tick() -> None:
    row = batch(checked=timedelta(minutes=10), progressed=timedelta(minutes=10))

    assert due_for_check(row, at(timedelta(minutes=10, seconds=15)))


def test_a_batch_not_moving_is_read_again_after_half_the_time_it_has_waited() -> None:
    row = batch(checked=timedelta(minutes=4))  # unchanged since its submission, 4 min before

    assert not due_for_check(row, at(timedelta(minutes=5, seconds=59)))
    assert due_for_check(row, at(timedelta(minutes=6)))


def test_a_batch_waiting_for_hours_is_still_read_every_five_minutes() -> None:
    row = batch(checked=3 * HOUR)

    assert not due_for_check(row, at(3 * HOUR + MAX_CHECK_INTERVAL - timedelta(seconds=1)))
    assert due_for_check(row, at(3 * HOUR + MAX_CHECK_INTERVAL))


def test_a_read_time_ahead_of_this_clock_does_not_hold_the_batch_back() -> None:
    row = batch(checked=3 * HOUR)

    assert due_for_check(row, at(HOUR))


@given(
    checked=st.integers(0, 10 * 3600),
    idle=st.integers(0, 10 * 3600),
    then=st.integers(0, 10 * 3600),
)
def test_no_batch_goes_unread_longer_than_the_longest_interval(
    checked: int, idle: int, then: int
) -> None:
    read_at = timedelta(seconds=checked)
    row = batch(checked=read_at, progressed=read_at - timedelta(seconds=min(idle, checked)))
    now = at(read_at + timedelta(seconds=then))

    if now - row.checked_at >= MAX_CHECK_INTERVAL:  # type: ignore[operator]
        assert due_for_check(row, now)


def test_the_last_progress_of_a_batch_that_never_moved_is_its_submission() -> None:
    assert last_progress(batch()) == SUBMITTED
    assert last_progress(batch(progressed=HOUR)) == SUBMITTED + HOUR


def test_a_batch_unchanged_for_an_hour_is_stalled_however_often_it_was_read() -> None:
    row = batch(checked=HOUR - timedelta(seconds=15), progressed=timedelta(minutes=1))

    assert not stalled(row, read(), at(HOUR), stall_after=HOUR)
    assert stalled(row, read(), at(HOUR + timedelta(minutes=1)), stall_after=HOUR)


def test_a_slow_batch_that_keeps_moving_is_not_stalled_however_old() -> None:
    row = batch(
        checked=5 * HOUR, progressed=5 * HOUR - timedelta(minutes=20), status="started", finished=40
    )

    assert not stalled(row, read("started", 40), at(5 * HOUR + timedelta(minutes=5)), HOUR)


def test_a_batch_that_moves_as_it_is_read_is_not_stalled() -> None:
    row = batch(checked=3 * HOUR)  # pending since its submission, three hours before

    assert not stalled(row, read("started", 10), at(3 * HOUR + timedelta(minutes=5)), HOUR)
    assert stalled(row, read(), at(3 * HOUR + timedelta(minutes=5)), HOUR)
