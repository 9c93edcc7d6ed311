"""SQL for the webhook inbox: audience events kept from receipt until the reconciler acts.

The webhooks service records an event and commits before it answers Mailchimp, then
publishes ``SyncMember``; a relay republishes whatever stayed unpublished (broker down).
The reconciler claims an event once (``processed_at``), so a message delivered twice acts
once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from common.db.schema import connection, webhook_event, webhook_secret

# Advisory lock (two-key space, like common.db.batches) held by one relay pass at a time.
RELAY_LOCK = "mailchimpsync_webhook_relay"


@dataclass(frozen=True)
class InboxEvent:
    """A stored audience event: its audience, type and the parsed fields."""

    id: int
    list_id: str
    event_type: str
    data: Mapping[str, Any]
    received_at: datetime


def record(conn: sa.Connection, list_id: str, event_type: str, data: Mapping[str, Any]) -> int:
    """Store an event; return its id."""
    statement = (
        sa.insert(webhook_event)
        .values(mailchimp_list_id=list_id, event_type=event_type, data=dict(data))
        .returning(webhook_event.c.id)
    )
    return int(conn.execute(statement).scalar_one())


def mark_published(conn: sa.Connection, event_ids: Sequence[int], now: datetime) -> int:
    """Note that ``SyncMember`` went out for these events."""
    if not event_ids:
        return 0
    statement = (
        sa.update(webhook_event)
        .where(webhook_event.c.id.in_(list(event_ids)))
        .where(webhook_event.c.published_at.is_(None))
        .values(published_at=now)
    )
    return conn.execute(statement).rowcount


def unpublished(
    conn: sa.Connection, received_before: datetime, limit: int, after_id: int = 0
) -> list[int]:
    """Events never published that arrived before ``received_before``, oldest first
    (ids above ``after_id``: keyset paging)."""
    query = (
        sa.select(webhook_event.c.id)
        .where(webhook_event.c.published_at.is_(None))
        .where(webhook_event.c.received_at < received_before)
        .where(webhook_event.c.id > after_id)
        .order_by(webhook_event.c.id)
        .limit(limit)
    )
    return list(conn.execute(query).scalars())


def claim(conn: sa.Connection, event_id: int) -> InboxEvent | None:
    """Lock an unprocessed event for the caller's transaction; None if done or being done."""
    query = (
        sa.select(webhook_event)
        .where(webhook_event.c.id == event_id)
        .where(webhook_event.c.processed_at.is_(None))
        .with_for_update(skip_locked=True)
    )
    row = conn.execute(query).one_or_none()
    if row is None:
        return None
    return InboxEvent(row.id, row.mailchimp_list_id, row.event_type, row.data, row.received_at)


def finish(conn: sa.Connection, event_id: int, outcome: str, now: datetime) -> None:
    """Mark a claimed event processed, with a line saying what came of it."""
    conn.execute(
        sa.update(webhook_event)
        .where(webhook_event.c.id == event_id)
        .values(
            processed_at=now,
            outcome=outcome,
            published_at=sa.func.coalesce(webhook_event.c.published_at, now),
        )
    )


def secret_accounts(conn: sa.Connection) -> list[tuple[str, int]]:
    """Every webhook secret with its account, for a constant-time comparison by the caller."""
    query = sa.select(webhook_secret.c.secret, webhook_secret.c.account_id)
    return [(row.secret, row.account_id) for row in conn.execute(query)]


def audience_account(conn: sa.Connection, list_id: str) -> int | None:
    """The account whose sync connection covers this audience; None if it is not synced."""
    query = sa.select(connection.c.account_id).where(connection.c.mailchimp_list_id == list_id)
    return conn.execute(query).scalar_one_or_none()


def try_lock_relay(conn: sa.Connection) -> bool:
    """Take the relay's lock for the caller's transaction; False if another relay holds it.

    A lock on the pass, not on rows: a row lock held while publishing would make the
    reconciler's ``claim`` (SKIP LOCKED) take a just-published event for one being done.
    """
    statement = sa.text("SELECT pg_try_advisory_xact_lock(hashtext(:name), 0)")
    return bool(conn.execute(statement, {"name": RELAY_LOCK}).scalar_one())
