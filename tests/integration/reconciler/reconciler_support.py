"""Builders for the reconciler's stage tests: a sync connection, contacts, cache rows.

A World's CRM is the embedded one, or CiviCRM's own database (``civi``): then contacts,
groups and history are made in CiviCRM as CiviCRM's users make them, and brought into the
copy the stages read, on the test's transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from civicrm_support import CiviCrmTables

from common.crm import mirror
from common.crm.writes import EMBEDDED, CiviCrm, CrmWrites
from common.db import config, crm, runs
from common.db.config import SyncConnection
from common.db.schema import cache
from common.vocabulary import GroupStatus

LIST_ID = "a1b2c3d4e5"
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class CiviSide:
    """CiviCRM as a World's CRM: its tables, a connection on them, and its writes."""

    tables: CiviCrmTables
    conn: sa.Connection
    writes: CiviCrm


class World:
    """One audience connected to a subscription group (and optional interest groups)."""

    def __init__(
        self,
        conn: sa.Connection,
        interests: int = 0,
        data_sync: bool = False,
        civi: CiviSide | None = None,
    ):
        self.conn = conn
        self.civi = civi
        self.writes: CrmWrites = EMBEDDED if civi is None else civi.writes
        self.group = self._group("newsletter", "Newsletter")
        self.interest_groups = [
            self._group(f"interest{i}", f"Interest {i}") for i in range(interests)
        ]
        account = config.add_account(conn, "test", "0123456789abcdef-us1")
        mapping = {f"int{i}": g for i, g in enumerate(self.interest_groups)}
        config.add_connection(conn, account, LIST_ID, self.group, mapping, data_sync=data_sync)
        self.sc: SyncConnection = config.load_connections(conn, list_id=LIST_ID)[0]

    def contact(
        self,
        first: str,
        *emails: str,
        deleted: bool = False,
        held: tuple[str, ...] = (),
        source: str | None = "test",
    ) -> int:
        """A contact; its first email is primary (and bulk-mail); ``held`` ones on hold."""
        if self.civi is not None:
            return self._civicrm_contact(first, emails, deleted, held, source)
        mails = [
            crm.NewEmail(e, is_primary=i == 0, is_bulkmail=i == 0) for i, e in enumerate(emails)
        ]
        mails += [crm.NewEmail(e, on_hold=1) for e in held]
        person = crm.NewContact(first, "Tester", source, tuple(mails), is_deleted=deleted)
        return crm.insert_contacts(self.conn, [person])[0]

    def history(
        self, contact_id: int, status: GroupStatus, date: datetime, group: int | None = None
    ) -> None:
        """A membership change made in the CRM (method ``Admin``) at ``date``."""
        if self.civi is not None:
            at = date.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
            self.civi.tables.join(contact_id, group or self.group, status.value, at)
            self._copy(contact_id)
            return
        change = crm.MembershipChange(contact_id, group or self.group, status, date, "Admin")
        crm.set_memberships(self.conn, [change])

    def _group(self, name: str, title: str) -> int:
        if self.civi is None:
            return crm.create_group(self.conn, name, title)
        group = self.civi.tables.group(name)
        mirror.refresh_on(self.conn, self.civi.conn, [])
        return group

    def _civicrm_contact(
        self,
        first: str,
        emails: tuple[str, ...],
        deleted: bool,
        held: tuple[str, ...],
        source: str | None,
    ) -> int:
        assert self.civi is not None
        tables = self.civi.tables
        cid = tables.contact(first, "Tester", *emails)
        tables.execute(
            "UPDATE civicrm_contact SET is_deleted = %s, source = %s WHERE id = %s",
            deleted,
            source,
            cid,
        )
        for email in held:
            tables.execute(
                "INSERT INTO civicrm_email (contact_id, email, on_hold) VALUES (%s, %s, 1)",
                cid,
                email,
            )
        self._copy(cid)
        return cid

    def _copy(self, contact_id: int) -> None:
        assert self.civi is not None
        groups = [self.group, *self.interest_groups]
        mirror.copy_contacts(self.conn, self.civi.conn, [contact_id], groups)

    def row(
        self,
        email: str | None = None,
        status: str | None = None,
        contact_id: int | None = None,
        *,
        member_id: str | None = None,
        at: datetime = T0,
        data: dict[str, Any] | None = None,
        sync_status: str = "ok",
        civicrm_data: dict[str, Any] | None = None,
    ) -> int:
        """A cache row; a Mailchimp row (``status`` given) gets a member id and data."""
        if status is not None:
            member_id = member_id or f"m-{email}"
            data = data or {"status": status, "status@": at.isoformat()}
        values = {
            "mailchimp_list_id": LIST_ID,
            "mailchimp_member_id": member_id,
            "mailchimp_email": email if status is not None else None,
            "mailchimp_status": status,
            "mailchimp_updated": at if status is not None else None,
            "mailchimp_data": data,
            "civicrm_contact_id": contact_id,
            "sync_status": sync_status,
            "civicrm_data": civicrm_data,
        }
        return int(
            self.conn.execute(sa.insert(cache).values(values).returning(cache.c.id)).scalar_one()
        )

    def rows(self) -> dict[int, dict[str, Any]]:
        """Every cache row by id, as a dict of its columns."""
        result = self.conn.execute(sa.select(cache).order_by(cache.c.id))
        return {r.id: dict(r._mapping) for r in result}

    def snapshot(self) -> list[tuple[Any, ...]]:
        """Every row of every table the stages touch, for idempotence checks."""
        tables = [
            "civicrm_mailchimpsync_cache",
            "civicrm_mailchimpsync_update",
            "civicrm_contact",
            "civicrm_email",
            "civicrm_group_contact",
            "civicrm_subscription_history",
        ]
        out: list[tuple[Any, ...]] = []
        for table in tables:
            out += [
                (table, *r)
                for r in self.conn.execute(sa.text(f"SELECT * FROM {table} ORDER BY id"))
            ]
        return out

    def updates(self) -> list[tuple[Any, ...]]:
        """(cache id, data, completed, error) of every update row, in id order."""
        sql = (
            "SELECT mailchimpsync_cache_id, data, completed, error_response "
            "FROM civicrm_mailchimpsync_update ORDER BY id"
        )
        return [tuple(r) for r in self.conn.execute(sa.text(sql))]


def planned_chunks(conn: sa.Connection, size: int = 1000, run_id: str = "a-run") -> list[list[int]]:
    """The audience's todo rows planned into chunks as a run plans them: each chunk's row ids,
    as taking the chunk to decide it hands them over."""
    planned = runs.plan_chunks(conn, LIST_ID, run_id, size)
    return [runs.take_chunk(conn, LIST_ID, run_id, c.first_id, T0) or [] for c in planned]
