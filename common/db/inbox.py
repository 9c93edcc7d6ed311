"""SQL for the webhook inbox: webhook events kept from receipt until they are acted on.

The webhooks service records an event and commits before it answers Mailchimp, then
publishes its message; a relay republishes whatever stayed unpublished (broker down). An
audience event's message is ``SyncMember``, and the reconciler claims the event once
(``processed_at``), so a message delivered twice acts once. A batch event's message is
``ProcessBatch`` (applying results is idempotent, and the poller backs it up): the event
is done once that is sent.

Publishers note ``published_at`` *before* sending and commit, and undo the note if sending
fails: a row write after the send could hold the row's lock just when the reconciler's
``claim`` (SKIP LOCKED) looks at it, and the event would pass for one being acted on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa

from common.db.schema import connection, webhook_event, webhook_secret

BATCH_COMPLETED = "batch_completed"
"""The event type of a batch webhook (``batch_operation_completed``); audience events are
typed by their own names (``subscribe``, ...)."""


class Taken(NamedTuple):
    """An event taken for publishing: its id, type and data."""

    id: int
    event_type: str
    data: Mapping[str, Any]


@dataclass(frozen=True)
class InboxEvent:
    """A stored audience event: its audience, type and the parsed fields."""

    id: int
    list_id: str
    event_type: str
    data: Mapping[str, Any]
    received_at: datetime


def record(
    conn: sa.Connection,
    list_id: str,
    event_type: str,
    data: Mapping[str, Any],
    published_at: datetime | None = None,
) -> int:
    """Store an event (``published_at``: the caller sends ``SyncMember`` once committed, and
    calls ``unpublish`` if it cannot); return its id."""
    statement = (
        sa.insert(webhook_event)
        .values(
            mailchimp_list_id=list_id,
            event_type=event_type,
            data=dict(data),
            published_at=published_at,
        )
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


def peek(conn: sa.Connection, event_id: int) -> InboxEvent | None:
    """An unprocessed event, read without a lock; None if it was acted on."""
    return _unprocessed(conn, event_id, lock=False)


def claim(conn: sa.Connection, event_id: int) -> InboxEvent | None:
    """Lock an unprocessed event for the caller's transaction; None if it was acted on.

    Waits for a lock another transaction holds (the relay marking the row, a worker acting
    on the same event), then looks again: skipping a locked row would drop the message.
    """
    return _unprocessed(conn, event_id, lock=True)


def _unprocessed(conn: sa.Connection, event_id: int, lock: bool) -> InboxEvent | None:
    query = (
        sa.select(webhook_event)
        .where(webhook_event.c.id == event_id)
        .where(webhook_event.c.processed_at.is_(None))
    )
    row = conn.execute(query.with_for_update() if lock else query).one_or_none()
    if row is None:
        return None
    return InboxEvent(row.id, row.mailchimp_list_id, row.event_type, row.data, row.received_at)


def finish(conn: sa.Connection, event_id: int | Sequence[int], outcome: str, now: datetime) -> None:
    """Mark claimed events (one id or several) processed, with a line saying what came of
    it."""
    ids = [event_id] if isinstance(event_id, int) else list(event_id)
    if not ids:
        return
    conn.execute(
        sa.update(webhook_event)
        .where(webhook_event.c.id.in_(ids))
        .values(
            processed_at=now,
            outcome=outcome,
            published_at=sa.func.coalesce(webhook_event.c.published_at, now),
        )
    )


def take_unpublished(
    conn: sa.Connection, received_before: datetime, limit: int, now: datetime
) -> list[Taken]:
    """Mark published (as of ``now``) up to ``limit`` events never published that arrived
    before ``received_before``, oldest first, skipping rows another transaction holds; return
    them. The caller commits, then sends, and calls ``unpublish`` if sending fails."""
    due = (
        sa.select(webhook_event.c.id)
        .where(webhook_event.c.published_at.is_(None))
        .where(webhook_event.c.received_at < received_before)
    )
    return _take(conn, due, limit, now)


def take_stale(
    conn: sa.Connection, published_before: datetime, limit: int, now: datetime
) -> list[Taken]:
    """Like ``take_unpublished``, for events published before ``published_before`` and still
    not acted on: their message was lost (a publisher died between commit and send)."""
    due = (
        sa.select(webhook_event.c.id)
        .where(webhook_event.c.processed_at.is_(None))
        .where(webhook_event.c.published_at < published_before)
    )
    return _take(conn, due, limit, now)


def _take(
    conn: sa.Connection, due: sa.Select[tuple[int]], limit: int, now: datetime
) -> list[Taken]:
    chosen = due.order_by(webhook_event.c.id).limit(limit).with_for_update(skip_locked=True)
    statement = (
        sa.update(webhook_event)
        .where(webhook_event.c.id.in_(chosen.scalar_subquery()))
        .values(published_at=now)
        .returning(webhook_event.c.id, webhook_event.c.event_type, webhook_event.c.data)
    )
    return sorted(Taken(*row) for row in conn.execute(statement))


def unpublish(conn: sa.Connection, event_ids: Sequence[int]) -> None:
    """Undo ``published_at`` for events whose ``SyncMember`` could not be sent (unless already
    acted on), so that the relay publishes them."""
    if event_ids:
        conn.execute(
            sa.update(webhook_event)
            .where(webhook_event.c.id.in_(list(event_ids)))
            .where(webhook_event.c.processed_at.is_(None))
            .values(published_at=None)
        )


def secret_accounts(conn: sa.Connection) -> list[tuple[str, int]]:
    """Every webhook secret with its account, for a constant-time comparison by the caller."""
    query = sa.select(webhook_secret.c.secret, webhook_secret.c.account_id)
    return [(row.secret, row.account_id) for row in conn.execute(query)]


def audience_account(conn: sa.Connection, list_id: str) -> int | None:
    """The account whose sync connection covers this audience; None if it is not synced."""
    query = sa.select(connection.c.account_id).where(connection.c.mailchimp_list_id == list_id)
    return conn.execute(query).scalar_one_or_none()
