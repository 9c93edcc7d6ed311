"""When the poller reads a batch again, and when a batch counts as stalled: pure rules over a
batch row's times.

Mailchimp runs one batch per account at a time, so the batches of a big run wait in its
queue, unchanged, for minutes or hours, and the batch webhook normally says when each one
finishes. Reading every unfinished batch on every tick cost a request per batch every 15 s
(a run's hundreds of queued batches). A batch that is not moving is read again only after
half the time it had gone without moving when it was last read, and at least every
``MAX_CHECK_INTERVAL``: a lost webhook delays a batch's results by at most half its wait.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from common.db.batches import BatchRow, MailchimpBatchState, last_progress

MAX_CHECK_INTERVAL = timedelta(minutes=5)


def due_for_check(
    row: BatchRow, now: datetime, max_interval: timedelta = MAX_CHECK_INTERVAL
) -> bool:
    """Whether the poller should read the batch from Mailchimp at ``now``."""
    if row.checked_at is None or now < row.checked_at:
        return True  # never read, or read "later" by a worker whose clock is ahead
    since = last_progress(row)
    idle = row.checked_at - since if since is not None else timedelta(0)
    return now - row.checked_at >= min(idle / 2, max_interval)


def stalled(
    row: BatchRow, state: MailchimpBatchState, now: datetime, stall_after: timedelta
) -> bool:
    """The batch, just read as ``state``, has not moved on for ``stall_after``."""
    unchanged = state.status == row.status and state.finished_operations == row.finished_operations
    since = last_progress(row)
    return unchanged and since is not None and now - since >= stall_after
