"""The sync schedule: ``fetchandreconcile`` of every connection at each time of
``MCSYNC_SYNC_SCHEDULE`` (a cron expression, UTC; hourly by default), as the extension's
hourly job did. ``mcsync serve`` runs it; several replicas trigger each time once.

A scheduled run has no ``max_time``: the workers carry it to the end. A trigger finding its
audience's run still going only logs it, as any trigger does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

import sqlalchemy as sa
from cronsim import CronSim

from common.db import config, schedule
from common.periodic import Periodic
from common.sync_request import SyncRequest

log = logging.getLogger(__name__)

CHECK_SECONDS = 20.0  # how often the clock is looked at: a time is triggered this late at most
SCHEDULED = SyncRequest(max_time=0)


def utcnow() -> datetime:
    return datetime.now(UTC)


class SyncSchedule:
    """Sends a ``StartSync`` per connection at each time of ``expression`` (``tick``)."""

    def __init__(
        self,
        engine: sa.Engine,
        send: Callable[..., None],
        expression: str,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.engine = engine
        self.send = send
        self.expression = expression
        self.clock = clock
        self.next_at: datetime = next(CronSim(expression, clock()))

    def tick(self) -> int:
        """Trigger the time due, if one is; returns the syncs this call triggered. The triggers
        are sent inside the transaction recording the time: a send that fails (the broker is
        down) leaves the time unrecorded, and the next tick tries again."""
        now = self.clock()
        if now < self.next_at:
            return 0
        slot = self.next_at
        with self.engine.begin() as conn:
            connections = config.load_connections(conn)
            if schedule.claim_slot(conn, slot, now, len(connections)):
                self.send(*(SCHEDULED.message(c.list_id) for c in connections))
            else:
                connections = []  # another process triggered this time
        self.next_at = next(CronSim(self.expression, now))
        if connections:
            log.info(
                "scheduled sync of %s: %d audience(s)", f"{slot:%Y-%m-%d %H:%M}", len(connections)
            )
        return len(connections)

    def periodic(self) -> Periodic:
        """The schedule on a thread of its own, looking at the clock every few seconds."""
        return Periodic("sync schedule", self.tick, CHECK_SECONDS)


def start(engine: sa.Engine, send: Callable[..., None], expression: str) -> Periodic | None:
    """Run the schedule in this process (None when ``expression`` is empty: no schedule)."""
    if not expression:
        log.info("no sync schedule (MCSYNC_SYNC_SCHEDULE is empty)")
        return None
    scheduled = SyncSchedule(engine, send, expression)
    log.info(
        "sync schedule %r (UTC): next at %s", expression, f"{scheduled.next_at:%Y-%m-%d %H:%M}"
    )
    running = scheduled.periodic()
    running.start()
    return running
