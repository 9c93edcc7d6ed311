"""Helpers for the audience webhook's tests: a synced audience, a recording sender, the inbox."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa

from common.audience_events import AudienceEvent
from common.db.config import add_account, add_connection, add_webhook_secret
from common.db.schema import webhook_event
from common.messages import Message, SyncMember

LIST_ID = "ec4689c266"
SECRET = "s3cret-0123456789abcdef"


def synced_audience(
    engine: sa.Engine,
    list_id: str = LIST_ID,
    secret: str = SECRET,
    api_key: str = "k" * 32,
    group_id: int = 1,
) -> int:
    """An account holding ``secret`` whose sync connection covers ``list_id``; its id."""
    with engine.begin() as conn:
        account_id = add_account(conn, f"Org {api_key[:4]}", api_key)
        add_webhook_secret(conn, account_id, secret)
        add_connection(conn, account_id, list_id, subscription_group_id=group_id)
    return account_id


@dataclass
class Recorder:
    """A thread-safe stand-in for the broker; ``down`` makes every send raise."""

    down: bool = False
    messages: list[Message] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, *messages: Message) -> None:
        if self.down:
            raise ConnectionError("RabbitMQ is down")
        with self.lock:
            self.messages.extend(messages)

    def sync_members(self) -> list[int]:
        with self.lock:
            return [m.event_id for m in self.messages if isinstance(m, SyncMember)]


@dataclass(frozen=True)
class Stored:
    """One inbox row as the reconciler will read it."""

    id: int
    list_id: str
    event_type: str
    event: AudienceEvent
    published_at: datetime | None


def inbox_rows(engine: sa.Engine) -> list[Stored]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(webhook_event).order_by(webhook_event.c.id)).all()
    return [
        Stored(
            row.id,
            row.mailchimp_list_id,
            row.event_type,
            AudienceEvent.from_json(row.data),
            row.published_at,
        )
        for row in rows
    ]


def wait_for_rows(engine: sa.Engine, count: int, seconds: float = 10.0) -> list[Stored]:
    deadline = time.monotonic() + seconds
    while True:
        rows = inbox_rows(engine)
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)
