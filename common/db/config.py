"""SQL for the configuration tables: accounts, sync connections, interest maps, webhook secrets."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert

from common.db.schema import (
    account,
    batch,
    cache,
    connection,
    fetch_page,
    group,
    interest_map,
    reconcile_chunk,
    run_history,
    status,
    webhook_event,
    webhook_secret,
)
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


# --- the whole configuration (the admin action updateconfig) -------------------------------


@dataclass(frozen=True)
class ConnectionSetup:
    """One sync connection as the configuration states it."""

    list_id: str
    subscription_group_id: int
    data_sync: bool = False
    trust_override: TrustOverride = TrustOverride.NONE
    interests: tuple[InterestMapping, ...] = ()


@dataclass(frozen=True)
class AccountSetup:
    """One Mailchimp account and its sync connections, as the configuration states them."""

    name: str
    api_key: str
    connections: tuple[ConnectionSetup, ...] = ()


def lock_config(conn: sa.Connection) -> None:
    """Serialise changes to the configuration for the rest of this transaction."""
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('mailchimpsync-config'))"))


def missing_groups(conn: sa.Connection, group_ids: Iterable[int]) -> list[int]:
    """Those of ``group_ids`` that are not CRM groups, in ascending order."""
    wanted = sorted(set(group_ids))
    found = set(conn.scalars(sa.select(group.c.id).where(group.c.id.in_(wanted))))
    return [group_id for group_id in wanted if group_id not in found]


def replace_config(conn: sa.Connection, accounts: Sequence[AccountSetup]) -> list[str]:
    """Make the stored configuration exactly ``accounts``; return the audiences removed.

    Accounts (by API key) and connections (by audience) that stay keep their ids, webhook
    secrets and webhook ids. A removed connection or account takes its audiences' rows in
    our tables with it (``forget_audiences``). Run it in one transaction, after
    ``lock_config``: a failure half way leaves nothing changed.
    """
    wanted = {c.list_id for a in accounts for c in a.connections}
    stored = conn.scalars(sa.select(connection.c.mailchimp_list_id)).all()
    removed = sorted(set(stored) - wanted)
    forget_audiences(conn, removed)
    conn.execute(sa.delete(connection).where(connection.c.mailchimp_list_id.in_(removed)))
    account_ids = _upsert_accounts(conn, accounts)
    connection_ids = _upsert_connections(conn, accounts, account_ids)
    _replace_interests(conn, accounts, connection_ids)
    # Last: a connection that moved to another account has left the removed one by now.
    keys = [a.api_key for a in accounts]
    conn.execute(sa.delete(account).where(account.c.api_key.not_in(keys)))
    return removed


def _upsert_accounts(conn: sa.Connection, accounts: Sequence[AccountSetup]) -> dict[str, int]:
    if not accounts:
        return {}
    insert = pg_insert(account).values([{"name": a.name, "api_key": a.api_key} for a in accounts])
    statement = insert.on_conflict_do_update(
        index_elements=[account.c.api_key], set_={"name": insert.excluded.name}
    ).returning(account.c.api_key, account.c.id)
    return {key: account_id for key, account_id in conn.execute(statement)}


def _upsert_connections(
    conn: sa.Connection, accounts: Sequence[AccountSetup], account_ids: Mapping[str, int]
) -> dict[str, int]:
    rows = [
        {
            "account_id": account_ids[a.api_key],
            "mailchimp_list_id": c.list_id,
            "subscription_group_id": c.subscription_group_id,
            "data_sync": c.data_sync,
            "trust_override": c.trust_override.value,
        }
        for a in accounts
        for c in a.connections
    ]
    if not rows:
        return {}
    # Groups are unique per connection and checked row by row: park the kept connections on
    # a placeholder first, so two connections can swap their groups in one change.
    list_ids = [row["mailchimp_list_id"] for row in rows]
    conn.execute(
        sa.update(connection)
        .where(connection.c.mailchimp_list_id.in_(list_ids))
        .values(subscription_group_id=-connection.c.id)
    )
    insert = pg_insert(connection).values(rows)
    statement = insert.on_conflict_do_update(
        index_elements=[connection.c.mailchimp_list_id],
        set_={
            name: insert.excluded[name]
            for name in ("account_id", "subscription_group_id", "data_sync", "trust_override")
        },
    ).returning(connection.c.mailchimp_list_id, connection.c.id)
    return {list_id: connection_id for list_id, connection_id in conn.execute(statement)}


def _replace_interests(
    conn: sa.Connection, accounts: Sequence[AccountSetup], connection_ids: Mapping[str, int]
) -> None:
    conn.execute(
        sa.delete(interest_map).where(interest_map.c.connection_id.in_(connection_ids.values()))
    )
    rows = [
        {
            "connection_id": connection_ids[c.list_id],
            "interest_id": i.interest_id,
            "group_id": i.group_id,
            "trust_override": i.trust_override.value,
        }
        for a in accounts
        for c in a.connections
        for i in c.interests
    ]
    if rows:
        conn.execute(sa.insert(interest_map), rows)


def forget_audiences(conn: sa.Connection, list_ids: Sequence[str]) -> None:
    """Delete everything our tables hold about these audiences: cache rows (and their
    updates), batches, the status row, fetch pages, reconcile chunks, webhook events and
    the history of their runs."""
    if not list_ids:
        return
    # Wait for a stage working on the audience to commit, so it cannot write after us.
    conn.execute(sa.select(status.c.id).where(status.c.list_id.in_(list_ids)).with_for_update())
    conn.execute(sa.delete(cache).where(cache.c.mailchimp_list_id.in_(list_ids)))
    conn.execute(sa.delete(batch).where(batch.c.mailchimp_list_id.in_(list_ids)))
    conn.execute(sa.delete(fetch_page).where(fetch_page.c.list_id.in_(list_ids)))
    conn.execute(sa.delete(reconcile_chunk).where(reconcile_chunk.c.list_id.in_(list_ids)))
    conn.execute(sa.delete(webhook_event).where(webhook_event.c.mailchimp_list_id.in_(list_ids)))
    conn.execute(sa.delete(run_history).where(run_history.c.list_id.in_(list_ids)))
    conn.execute(sa.delete(status).where(status.c.list_id.in_(list_ids)))


def read_config(conn: sa.Connection) -> list[AccountSetup]:
    """The stored configuration: every account (by id) with its connections (by id)."""
    connections = load_connections(conn)
    accounts = conn.execute(
        sa.select(account.c.id, account.c.name, account.c.api_key).order_by(account.c.id)
    )
    return [
        AccountSetup(
            name=name,
            api_key=api_key,
            connections=tuple(
                ConnectionSetup(
                    list_id=c.list_id,
                    subscription_group_id=c.subscription_group_id,
                    data_sync=c.data_sync,
                    trust_override=c.trust_override,
                    interests=c.interests,
                )
                for c in connections
                if c.account_id == account_id
            ),
        )
        for account_id, name, api_key in accounts
    ]


def add_webhook_secret(conn: sa.Connection, account_id: int, secret: str) -> None:
    conn.execute(sa.insert(webhook_secret).values(account_id=account_id, secret=secret))


def connection_for(conn: sa.Connection, list_id: str) -> SyncConnection | None:
    """The sync connection of an audience, if it has one."""
    found = load_connections(conn, list_id=list_id)
    return found[0] if found else None


def webhook_secrets(conn: sa.Connection) -> list[str]:
    """Every stored webhook secret (a few per account), for a constant-time comparison."""
    return list(conn.execute(sa.select(webhook_secret.c.secret)).scalars())


# --- webhook registrations (the admin actions fetchaccountinfo and updatewebhook) ------------


@dataclass(frozen=True)
class ConnectionWebhook:
    """A sync connection's audience and the id of its audience webhook at Mailchimp."""

    connection_id: int
    list_id: str
    subscription_group_id: int
    webhook_id: str | None


@dataclass(frozen=True)
class AccountWebhooks:
    """An account's webhook secrets (oldest first), batch webhook id and connections."""

    account_id: int
    name: str
    api_key: str
    batch_webhook_id: str | None
    secrets: tuple[str, ...]
    connections: tuple[ConnectionWebhook, ...]


def load_account_webhooks(
    conn: sa.Connection, api_key: str, lock: bool = False
) -> AccountWebhooks | None:
    """The account of ``api_key`` with its secrets and connections, or None if not configured.

    ``lock``: hold the account row for the transaction (before creating its first secret).
    """
    query = sa.select(account).where(account.c.api_key == api_key)
    row = conn.execute(query.with_for_update() if lock else query).one_or_none()
    if row is None:
        return None
    secrets = conn.execute(
        sa.select(webhook_secret.c.secret)
        .where(webhook_secret.c.account_id == row.id)
        .order_by(webhook_secret.c.id)
    ).scalars()
    connections = conn.execute(
        sa.select(
            connection.c.id,
            connection.c.mailchimp_list_id,
            connection.c.subscription_group_id,
            connection.c.webhook_id,
        )
        .where(connection.c.account_id == row.id)
        .order_by(connection.c.id)
    ).all()
    return AccountWebhooks(
        account_id=row.id,
        name=row.name,
        api_key=row.api_key,
        batch_webhook_id=row.batch_webhook_id,
        secrets=tuple(secrets),
        connections=tuple(ConnectionWebhook(*c) for c in connections),
    )


def connected_groups(conn: sa.Connection) -> dict[str, int]:
    """Every connected audience's subscription group, by audience id."""
    query = sa.select(connection.c.mailchimp_list_id, connection.c.subscription_group_id)
    return {list_id: group_id for list_id, group_id in conn.execute(query)}


def set_batch_webhook_id(conn: sa.Connection, account_id: int, webhook_id: str | None) -> None:
    """Record the account's batch webhook at Mailchimp (None: it has none)."""
    conn.execute(
        sa.update(account).where(account.c.id == account_id).values(batch_webhook_id=webhook_id)
    )


def set_connection_webhook_id(
    conn: sa.Connection, connection_id: int, webhook_id: str | None
) -> None:
    """Record the audience webhook of a sync connection at Mailchimp (None: it has none)."""
    conn.execute(
        sa.update(connection).where(connection.c.id == connection_id).values(webhook_id=webhook_id)
    )


def forget_webhook_id(conn: sa.Connection, account_id: int, webhook_id: str) -> int:
    """A webhook deleted at Mailchimp: clear it wherever the account records it; returns how
    many records (the batch webhook, audience webhooks) were cleared."""
    cleared = conn.execute(
        sa.update(account)
        .where(account.c.id == account_id, account.c.batch_webhook_id == webhook_id)
        .values(batch_webhook_id=None)
    ).rowcount
    cleared += conn.execute(
        sa.update(connection)
        .where(connection.c.account_id == account_id, connection.c.webhook_id == webhook_id)
        .values(webhook_id=None)
    ).rowcount
    return int(cleared)


def lock_account_webhooks(conn: sa.Connection, account_id: int) -> None:
    """Serialise changes to one account's webhooks at Mailchimp across processes.

    A session-level advisory lock (``conn`` should be in autocommit, so no transaction stays
    open during the calls to Mailchimp); release it with ``unlock_account_webhooks``.
    """
    conn.execute(
        sa.text("SELECT pg_advisory_lock(hashtext(:namespace), :account_id)"),
        {"namespace": _WEBHOOK_LOCK_NAMESPACE, "account_id": account_id},
    )


def unlock_account_webhooks(conn: sa.Connection, account_id: int) -> None:
    conn.execute(
        sa.text("SELECT pg_advisory_unlock(hashtext(:namespace), :account_id)"),
        {"namespace": _WEBHOOK_LOCK_NAMESPACE, "account_id": account_id},
    )


_WEBHOOK_LOCK_NAMESPACE = "mailchimpsync-webhooks"
