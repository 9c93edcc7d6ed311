"""The relay: publish ``SyncMember`` for inbox events whose publication never happened.

The webhook answers once an event is committed and sends ``SyncMember`` afterwards; if the
broker was down, or the process died in between, the event stays unpublished. A relay
thread beside the app looks every few seconds for events unpublished for longer than a
grace period (so it does not race the answer's own send) and publishes them, oldest first,
a bounded page per transaction.

Several replicas may each run a relay: a pass takes a transaction-scoped advisory lock, so
one relay publishes a page at a time and the pages do not overlap. Row locks would not do:
held while sending, they would make the reconciler's ``claim`` (SKIP LOCKED) skip an event
it was just told about. Publishing twice is harmless anyway (the reconciler claims an
event once); the lock only avoids needless duplicates.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from common.db import inbox
from common.messages import SyncMember

log = logging.getLogger(__name__)

PAGE_SIZE = 500
GRACE = timedelta(seconds=10)
Send = Callable[..., None]


def publish_pending(
    engine: sa.Engine,
    send: Send,
    now: datetime,
    grace: timedelta = GRACE,
    page_size: int = PAGE_SIZE,
    stopping: threading.Event | None = None,
) -> int:
    """One pass: publish every event unpublished since before ``now - grace``; return how
    many. Stops early (returning what it did) when another relay holds the lock or
    ``stopping`` is set."""
    published, after_id = 0, 0
    while True:
        with engine.begin() as conn:
            if not inbox.try_lock_relay(conn):
                log.debug("another relay is publishing; this pass stops")
                return published
            ids = inbox.unpublished(conn, now - grace, page_size, after_id=after_id)
            if ids:
                send(*[SyncMember(event_id=event_id) for event_id in ids])
                inbox.mark_published(conn, ids, now)
        published += len(ids)
        if len(ids) < page_size or (stopping is not None and stopping.is_set()):
            return published
        after_id = ids[-1]


class Relay:
    """A daemon thread running ``publish_pending`` every ``every_seconds`` until stopped."""

    def __init__(
        self,
        engine: sa.Engine,
        send: Send,
        every_seconds: float = 5.0,
        grace_seconds: float = GRACE.total_seconds(),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.engine = engine
        self.send = send
        self.every_seconds = every_seconds
        self.grace = timedelta(seconds=grace_seconds)
        self.clock = clock
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread (a first pass runs at once: leftovers from before a restart)."""
        if self._thread is not None:
            raise RuntimeError("relay already started")
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="webhook-relay", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the page in hand (if any); wait for the thread up to ``timeout``."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def run_once(self) -> int:
        """One pass now; failures (broker or database down) are logged and retried later."""
        try:
            published = publish_pending(
                self.engine, self.send, self.clock(), self.grace, stopping=self._stopping
            )
        except Exception:  # the next pass retries; the events wait safely in the inbox
            log.warning(
                "webhook relay pass failed; retrying in %ss", self.every_seconds, exc_info=True
            )
            return 0
        if published:
            log.info("webhook relay published %d event(s)", published)
        return published

    def _run(self) -> None:
        while not self._stopping.is_set():
            self.run_once()
            self._stopping.wait(self.every_seconds)
