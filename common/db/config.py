"""SQL for the configuration tables: accounts, sync connections, interest maps, webhook secrets."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert

from common.db.schema import account, connection, interest_map, webhook_secret
from common.vocabulary import TrustOverride


@dataclass(frozen=True)
class InterestMapping:
    """A Mailchimp interest kept in step with membership of a CRM group."""

    interest_id: str
    group_id: int
    trust_override: TrustOverride = TrustOverride.NONE


@dataclass(frozen=True)
class SyncConnection:
    """One audience <-> one CRM subscription group, with its account and interest maps."""

    id: int
    account_id: int
    api_key: str
    list_id: str
    subscription_group_id: int
    trust_override: TrustOverride = TrustOverride.NONE
    data_sync: bool = False
    interests: tuple[InterestMapping, ...] = ()

    @property
    def group_ids(self) -> tuple[int, ...]:
        """Every CRM group relevant to this audience: subscription group first."""
        return (self.subscription_group_id, *(i.group_id for i in self.interests))

    @property
    def override_set(self) -> bool:
        return bool(self.trust_override) or any(i.trust_override for i in self.interests)


def add_account(conn: sa.Connection, name: str, api_key: str) -> int:
    """Store an account (idempotent by API key); return its id."""
    statement = (
        pg_insert(account)
        .values(name=name, api_key=api_key)
        .on_conflict_do_update(index_elements=[account.c.api_key], set_={"name": name})
        .returning(account.c.id)
    )
    return int(conn.execute(statement).scalar_one())


def add_connection(
    conn: sa.Connection,
    account_id: int,
    list_id: str,
    subscription_group_id: int,
    interests: Mapping[str, int] | None = None,
    data_sync: bool = False,
) -> int:
    """Connect an audience to a subscription group (and interests to groups); return its id."""
    connection_id = int(
        conn.execute(
            sa.insert(connection)
            .values(
                account_id=account_id,
                mailchimp_list_id=list_id,
                subscription_group_id=subscription_group_id,
                data_sync=data_sync,
            )
            .returning(connection.c.id)
        ).scalar_one()
    )
    if interests:
        conn.execute(
            sa.insert(interest_map),
            [
                {"connection_id": connection_id, "interest_id": interest, "group_id": group}
                for interest, group in interests.items()
            ],
        )
    return connection_id


def load_connections(
    conn: sa.Connection, list_id: str | None = None, group_id: int | None = None
) -> list[SyncConnection]:
    """Every sync connection, or the one for an audience or a subscription group."""
    query = sa.select(connection, account.c.api_key).join(account)
    if list_id is not None:
        query = query.where(connection.c.mailchimp_list_id == list_id)
    if group_id is not None:
        query = query.where(connection.c.subscription_group_id == group_id)
    rows = conn.execute(query.order_by(connection.c.id)).all()
    interests = _interests(conn, [row.id for row in rows])
    return [
        SyncConnection(
            id=row.id,
            account_id=row.account_id,
            api_key=row.api_key,
            list_id=row.mailchimp_list_id,
            subscription_group_id=row.subscription_group_id,
            trust_override=TrustOverride(row.trust_override),
            data_sync=row.data_sync,
            interests=interests.get(row.id, ()),
        )
        for row in rows
    ]


def _interests(
    conn: sa.Connection, connection_ids: list[int]
) -> dict[int, tuple[InterestMapping, ...]]:
    found: dict[int, list[InterestMapping]] = {}
    if connection_ids:
        query = (
            sa.select(interest_map)
            .where(interest_map.c.connection_id.in_(connection_ids))
            .order_by(interest_map.c.id)
        )
        for row in conn.execute(query):
            found.setdefault(row.connection_id, []).append(
                InterestMapping(row.interest_id, row.group_id, TrustOverride(row.trust_override))
            )
    return {key: tuple(value) for key, value in found.items()}


def set_trust_override(
    conn: sa.Connection, connection_id: int, override: TrustOverride, interest_id: str = ""
) -> None:
    """Set the one-shot override of the subscription group, or of one interest."""
    if interest_id:
        conn.execute(
            sa.update(interest_map)
            .where(interest_map.c.connection_id == connection_id)
            .where(interest_map.c.interest_id == interest_id)
            .values(trust_override=override.value)
        )
    else:
        conn.execute(
            sa.update(connection)
            .where(connection.c.id == connection_id)
            .values(trust_override=override.value)
        )


def clear_trust_overrides(conn: sa.Connection, connection_id: int) -> None:
    """After a completed run, overrides are spent."""
    conn.execute(
        sa.update(connection).where(connection.c.id == connection_id).values(trust_override="")
    )
    conn.execute(
        sa.update(interest_map)
        .where(interest_map.c.connection_id == connection_id)
        .values(trust_override="")
    )


def add_webhook_secret(conn: sa.Connection, account_id: int, secret: str) -> None:
    conn.execute(sa.insert(webhook_secret).values(account_id=account_id, secret=secret))


def connection_for(conn: sa.Connection, list_id: str) -> SyncConnection | None:
    """The sync connection of an audience, if it has one."""
    found = load_connections(conn, list_id=list_id)
    return found[0] if found else None


def webhook_secrets(conn: sa.Connection) -> list[str]:
    """Every stored webhook secret (a few per account), for a constant-time comparison."""
    return list(conn.execute(sa.select(webhook_secret.c.secret)).scalars())
