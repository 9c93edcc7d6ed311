"""SQL for the sync schedule's record of the times it triggered (one per time)."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

from common.db.schema import schedule_slot

KEPT = timedelta(days=30)


def claim_slot(conn: sa.Connection, slot: datetime, now: datetime, audiences: int) -> bool:
    """Record that the schedule's time ``slot`` triggers ``audiences`` syncs; False if another
    process recorded it first (it waits for that one's transaction). Times older than
    ``KEPT`` are forgotten on the way."""
    conn.execute(sa.delete(schedule_slot).where(schedule_slot.c.slot < now - KEPT))
    claimed = conn.execute(
        insert(schedule_slot)
        .values(slot=slot, triggered_at=now, audiences=audiences)
        .on_conflict_do_nothing(index_elements=[schedule_slot.c.slot])
        .returning(schedule_slot.c.slot)
    ).first()
    return claimed is not None
