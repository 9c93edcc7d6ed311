"""Builders for the admin actions' tests: a context, a CRM with groups, cache rows, snapshots."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from asgi_client import TestClient

from common.db import crm
from common.db.schema import cache, metadata
from common.mailchimp import MailchimpClient
from common.messages import Message
from common.settings import Settings
from common.vocabulary import GroupStatus
from services.admin.context import AdminContext

__all__ = ["TestClient"]

TOKEN = "admin-token-0123456789"
API_KEY = "0123456789abcdef0123456789abcdef-us1"
OTHER_KEY = "fedcba9876543210fedcba9876543210-us2"
LIST_A = "a1b2c3d4e5"
LIST_B = "b2c3d4e5f6"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@dataclass
class Sent:
    """A stand-in for the broker: the messages an action sent, in order."""

    messages: list[Message] = field(default_factory=list)

    def __call__(self, *messages: Message) -> None:
        self.messages.extend(messages)


def no_mailchimp(api_key: str) -> MailchimpClient:
    raise AssertionError(f"no Mailchimp call expected (api key {api_key})")


def make_context(
    engine: sa.Engine,
    sent: Sent | None = None,
    mailchimp: Callable[[str], MailchimpClient] = no_mailchimp,
    token: str = TOKEN,
) -> AdminContext:
    return AdminContext(
        settings=Settings(admin_token=token),
        engine=engine,
        mailchimp=mailchimp,
        send=sent if sent is not None else Sent(),
        clock=lambda: NOW,
    )


def make_groups(engine: sa.Engine, *names: str) -> dict[str, int]:
    """CRM groups by name."""
    with engine.begin() as conn:
        return {name: crm.create_group(conn, name, name.title()) for name in names}


def make_contact(engine: sa.Engine, first: str, email: str, held: bool = False) -> int:
    person = crm.NewContact(
        first, "Tester", "test", (crm.NewEmail(email, is_primary=True, on_hold=int(held)),)
    )
    with engine.begin() as conn:
        return crm.insert_contacts(conn, [person])[0]


def set_membership(
    engine: sa.Engine, contact_id: int, group_id: int, status: GroupStatus, at: datetime = NOW
) -> None:
    change = crm.MembershipChange(contact_id, group_id, status, at, "Admin")
    with engine.begin() as conn:
        crm.set_memberships(conn, [change])


def add_row(
    engine: sa.Engine,
    list_id: str,
    email: str | None,
    status: str | None,
    contact_id: int | None,
    sync_status: str = "ok",
) -> int:
    """A cache row; one with a Mailchimp ``status`` gets a member id."""
    values = {
        "mailchimp_list_id": list_id,
        "mailchimp_member_id": f"m-{email}" if status else None,
        "mailchimp_email": email if status else None,
        "mailchimp_status": status,
        "mailchimp_updated": NOW if status else None,
        "civicrm_contact_id": contact_id,
        "sync_status": sync_status,
    }
    with engine.begin() as conn:
        return int(conn.execute(sa.insert(cache).values(values).returning(cache.c.id)).scalar_one())


def connection_json(
    list_id: str, group_id: int, interests: dict[str, int] | None = None, **extra: Any
) -> dict[str, Any]:
    return {
        "mailchimp_list_id": list_id,
        "subscription_group_id": group_id,
        "interests": [{"interest_id": i, "group_id": g} for i, g in (interests or {}).items()],
        **extra,
    }


def config_text(*accounts: tuple[str, str, list[dict[str, Any]]]) -> str:
    """``updateconfig``'s ``config`` for (name, api key, connections) accounts."""
    return json.dumps(
        {
            "accounts": [
                {"name": name, "api_key": key, "connections": connections}
                for name, key, connections in accounts
            ]
        }
    )


def snapshot(engine: sa.Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, to show that a refused request wrote nothing."""
    with engine.connect() as conn:
        return {
            table.name: [tuple(row) for row in conn.execute(sa.select(table).order_by(*table.c))]
            for table in metadata.sorted_tables
        }
