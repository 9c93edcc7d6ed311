"""Helpers for the resilience tests: the pipeline's mixed world, and reading both sides back.

The mixed world and its expected final state live in ``tests/integration/pipeline``; that
folder is only on ``sys.path`` when pytest collects it, so it is added here explicitly.
"""

from __future__ import annotations

import io
import sys
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

PIPELINE = Path(__file__).resolve().parent.parent / "pipeline"
if str(PIPELINE) not in sys.path:
    sys.path.insert(0, str(PIPELINE))

from pipeline_support import World, crm_statuses, mismatches, mixed_world  # noqa: E402
from simulator_support import posted_operation_ids  # noqa: E402

from common.db import runs  # noqa: E402
from common.db.runs import RunState  # noqa: E402
from common.settings import Settings  # noqa: E402
from mcsync.demo import SUBSCRIPTION_GROUP  # noqa: E402
from mcsync.sync import SyncRequest, fetch_and_reconcile  # noqa: E402

__all__ = [
    "World",
    "crm_statuses",
    "mismatches",
    "mixed_world",
    "posted_operation_ids",
]


def sync(settings: Settings, request: SyncRequest, wait: bool = True) -> str:
    """One ``fetchandreconcile`` call; its printed output."""
    out = io.StringIO()
    fetch_and_reconcile(settings, request, wait=wait, out=out, poll=0.2, give_up_after=180)
    return out.getvalue()


def read_run_state(engine: sa.Engine, list_id: str) -> RunState | None:
    """The audience's status row; None before its first trigger was taken."""
    with engine.connect() as conn:
        return runs.read(conn, list_id)


def run_state(engine: sa.Engine, list_id: str) -> RunState:
    state = read_run_state(engine, list_id)
    assert state is not None
    return state


@dataclass(frozen=True)
class UpdateRows:
    total: int
    unsubmitted: int
    uncompleted: int
    submitted_ids: frozenset[int]


UPDATE_ROWS = sa.text(
    """
    SELECT u.id, u.mailchimpsync_batch_id AS batch_id, u.completed,
        coalesce(b.status, '') AS batch_status
    FROM civicrm_mailchimpsync_update u
    LEFT JOIN civicrm_mailchimpsync_batch b ON b.id = u.mailchimpsync_batch_id
    """
)


def update_rows(engine: sa.Engine) -> UpdateRows:
    with engine.connect() as conn:
        rows = conn.execute(UPDATE_ROWS).all()
    return UpdateRows(
        total=len(rows),
        unsubmitted=sum(1 for r in rows if r.batch_id is None and not r.completed),
        uncompleted=sum(1 for r in rows if not r.completed),
        submitted_ids=frozenset(
            r.id for r in rows if r.batch_id is not None and r.batch_status != "aborted"
        ),
    )


def scalar(engine: sa.Engine, sql: str, **params: object) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(sql), params).scalar_one())


def sync_history_rows(engine: sa.Engine) -> int:
    """CRM subscription history rows written by the sync (method MCsync)."""
    return scalar(
        engine, "SELECT count(*) FROM civicrm_subscription_history WHERE method = 'MCsync'"
    )


def subscription_group_id(engine: sa.Engine) -> int:
    return scalar(engine, "SELECT id FROM civicrm_group WHERE name = :n", n=SUBSCRIPTION_GROUP[0])


def contact_id_of(engine: sa.Engine, email: str) -> int:
    return scalar(
        engine,
        "SELECT e.contact_id FROM civicrm_email e JOIN civicrm_contact c ON c.id = e.contact_id "
        "WHERE lower(e.email) = :email AND NOT c.is_deleted ORDER BY e.contact_id LIMIT 1",
        email=email.lower(),
    )
