"""The relay: publish the message of inbox events whose message never went out.

The webhook answers once an event is committed and sends its message afterwards
(``SyncMember`` for an audience event, ``ProcessBatch`` for a batch one); if the broker is
down the event is left unpublished. A relay thread beside the app looks every few
seconds for events unpublished for longer than a grace period and publishes them, oldest
first, a bounded page per transaction. It also resends events published long ago and still
not acted on: their publisher may have died between its commit and its send.

A page is taken with ``FOR UPDATE SKIP LOCKED`` and marked published in the same short
transaction, committed *before* sending (and unmarked if sending fails). So several replicas
each running a relay take disjoint pages, and no row lock is held while a message is on its
way: the reconciler's ``claim`` (SKIP LOCKED) would take such an event for one already being
acted on. Publishing twice is harmless anyway (the reconciler acts on an event once).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from common.db import inbox
from common.messages import Message, ProcessBatch, SyncMember
from common.periodic import Periodic

log = logging.getLogger(__name__)

PAGE_SIZE = 500
GRACE = timedelta(seconds=10)
# Longer than any queue backlog we expect: resending a message still queued is only waste.
REDELIVER_AFTER = timedelta(hours=1)
Send = Callable[..., None]
Take = Callable[[sa.Connection, datetime, int, datetime], list[inbox.Taken]]
SENT = "ProcessBatch enqueued"  # a batch event's outcome: the submitter does the rest


def message_of(event_id: int, event_type: str, data: Mapping[str, Any]) -> Message:
    """The message an inbox event stands for."""
    if event_type == inbox.BATCH_COMPLETED:
        return ProcessBatch(mailchimp_batch_id=str(data["batch_id"]))
    return SyncMember(event_id=event_id)


def done_when_sent(event_type: str) -> bool:
    """A batch event is done once its message is out; an audience event once acted on."""
    return event_type == inbox.BATCH_COMPLETED


def publish_pending(
    engine: sa.Engine,
    send: Send,
    now: datetime,
    grace: timedelta = GRACE,
    page_size: int = PAGE_SIZE,
    stopping: threading.Event | None = None,
    redeliver_after: timedelta = REDELIVER_AFTER,
) -> int:
    """One pass: publish the events unpublished since before ``now - grace``, then resend
    those published before ``now - redeliver_after`` and still not acted on; return how many
    messages went out. A failed send raises, with that page left for the next pass."""
    published = _drain(engine, send, inbox.take_unpublished, now - grace, now, page_size, stopping)
    stale = _drain(engine, send, inbox.take_stale, now - redeliver_after, now, page_size, stopping)
    if stale:
        log.warning("resent SyncMember for %d event(s) published long ago, never acted on", stale)
    return published + stale


def _drain(
    engine: sa.Engine,
    send: Send,
    take: Take,
    before: datetime,
    now: datetime,
    page_size: int,
    stopping: threading.Event | None,
) -> int:
    sent = 0
    while stopping is None or not stopping.is_set():
        with engine.begin() as conn:
            taken = take(conn, before, page_size, now)
        if taken:
            _send_or_unpublish(engine, send, taken, now)
        sent += len(taken)
        if len(taken) < page_size:
            break
    return sent


def _send_or_unpublish(
    engine: sa.Engine, send: Send, taken: list[inbox.Taken], now: datetime
) -> None:
    try:
        send(*[message_of(*event) for event in taken])
    except BaseException:
        with engine.begin() as conn:
            inbox.unpublish(conn, [event.id for event in taken])
        raise
    done = [event.id for event in taken if done_when_sent(event.event_type)]
    if done:
        with engine.begin() as conn:
            inbox.finish(conn, done, SENT, now)


class Relay:
    """``publish_pending`` every ``every_seconds`` on a thread of its own until stopped (a
    first pass at once: leftovers from before a restart); an outage of the broker or the
    database is logged once, and the pass tried again with backoff (``common.periodic``)."""

    def __init__(
        self,
        engine: sa.Engine,
        send: Send,
        every_seconds: float = 5.0,
        grace_seconds: float = GRACE.total_seconds(),
        redeliver_seconds: float = REDELIVER_AFTER.total_seconds(),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.engine = engine
        self.send = send
        self.grace = timedelta(seconds=grace_seconds)
        self.redeliver_after = timedelta(seconds=redeliver_seconds)
        self.clock = clock
        self._stopping = threading.Event()
        self.periodic = Periodic("webhook relay", self.publish, every_seconds, at_once=True)

    def start(self) -> None:
        self._stopping.clear()
        self.periodic.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the page in hand (if any); wait for the thread up to ``timeout``."""
        self._stopping.set()
        self.periodic.stop(timeout)

    def publish(self) -> int:
        """One pass now; raises when the broker or the database fails (the events wait
        safely in the inbox for the next pass)."""
        published = publish_pending(
            self.engine,
            self.send,
            self.clock(),
            self.grace,
            stopping=self._stopping,
            redeliver_after=self.redeliver_after,
        )
        if published:
            log.info("webhook relay published %d event(s)", published)
        return published
