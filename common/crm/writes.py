"""Where the sync's CRM changes land: the embedded tables, or CiviCRM and then its copy.

``EMBEDDED`` writes our Postgres's ``civicrm_*`` tables (``common.db.crm``). ``CiviCrm``
writes CiviCRM's own database the way CiviCRM writes it, in one MySQL transaction per call
and a handful of statements whatever the number of rows, then brings the touched contacts
up to date in the copy (``common.crm.mirror``) on the caller's Postgres transaction.

Never twice: a worker killed after CiviCRM committed and before Postgres did repeats the
call, and the repeat finds its work done. A history row carries ``tracking`` (``mcsync:``
and the run or event), and a change whose row is there is not written again; a membership
is an upsert; a new contact is first looked up among the contacts the sync created, by its
primary email. Design: docs/civicrm.md.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

import sqlalchemy as sa

from common.crm import civicrm, mirror
from common.db import crm
from common.metrics import CRM_SECONDS

__all__ = ["EMBEDDED", "CiviCrm", "CrmWrites", "display_name", "sort_name"]


class CrmWrites(Protocol):
    """The CRM changes a sync makes, each on the caller's Postgres transaction."""

    @property
    def tracking(self) -> str: ...

    def for_run(self, tracking: str) -> CrmWrites: ...
    def problems(self) -> list[str]: ...
    def refresh(self, pg: sa.Engine, group_ids: Sequence[int]) -> mirror.RefreshReport | None: ...
    def freshen(
        self,
        conn: sa.Connection,
        emails: Sequence[str],
        contact_ids: Sequence[int],
        groups: Sequence[int],
    ) -> None: ...
    def insert_contacts(
        self, conn: sa.Connection, contacts: Sequence[crm.NewContact]
    ) -> list[int]: ...
    def set_memberships(
        self, conn: sa.Connection, changes: Sequence[crm.MembershipChange]
    ) -> int: ...
    def put_emails_on_hold(
        self, conn: sa.Connection, emails: Sequence[str], when: datetime
    ) -> int: ...
    def add_emails(self, conn: sa.Connection, rows: Sequence[crm.EmailToAdd]) -> int: ...
    def set_contact_names(
        self, conn: sa.Connection, contact_id: int, first: str | None, last: str | None
    ) -> int: ...


@dataclass(frozen=True)
class _Embedded:
    """The CRM is our Postgres's tables: every change is one of ``common.db.crm``'s."""

    tracking: str = "mcsync"

    def for_run(self, tracking: str) -> _Embedded:
        return replace(self, tracking=tracking)

    def problems(self) -> list[str]:
        return []

    def refresh(self, pg: sa.Engine, group_ids: Sequence[int]) -> None:
        return None

    def freshen(
        self,
        conn: sa.Connection,
        emails: Sequence[str],
        contact_ids: Sequence[int],
        groups: Sequence[int],
    ) -> None:
        return None

    def insert_contacts(self, conn: sa.Connection, contacts: Sequence[crm.NewContact]) -> list[int]:
        return crm.insert_contacts(conn, contacts)

    def set_memberships(self, conn: sa.Connection, changes: Sequence[crm.MembershipChange]) -> int:
        return crm.set_memberships(conn, changes)

    def put_emails_on_hold(self, conn: sa.Connection, emails: Sequence[str], when: datetime) -> int:
        return crm.put_emails_on_hold(conn, emails, when)

    def add_emails(self, conn: sa.Connection, rows: Sequence[crm.EmailToAdd]) -> int:
        return crm.add_emails(conn, rows)

    def set_contact_names(
        self, conn: sa.Connection, contact_id: int, first: str | None, last: str | None
    ) -> int:
        return crm.set_contact_names(conn, contact_id, first, last)


EMBEDDED: CrmWrites = _Embedded()


def display_name(first: str | None, last: str | None, email: str | None) -> str | None:
    """An Individual's display name as CiviCRM forms it: "First Last", else the email."""
    return " ".join(n for n in (first, last) if n) or email


def sort_name(first: str | None, last: str | None, email: str | None) -> str | None:
    """An Individual's sort name as CiviCRM forms it: "Last, First", else the email."""
    return ", ".join(n for n in (last, first) if n) or email


@dataclass(frozen=True)
class CiviCrm:
    """CiviCRM's own database (``engine``) is the CRM; our Postgres holds its copy."""

    engine: sa.Engine
    tracking: str = "mcsync"

    def for_run(self, tracking: str) -> CiviCrm:
        """The same CRM, its history rows tracked as ``tracking`` (``mcsync:<run id>``)."""
        return replace(self, tracking=tracking)

    def problems(self) -> list[str]:
        """Why the sync cannot work with this CiviCRM (``civicrm.check``); empty if it can."""
        return civicrm.check(self.engine).problems

    @CRM_SECONDS.labels("refresh").time()
    def refresh(self, pg: sa.Engine, group_ids: Sequence[int]) -> mirror.RefreshReport:
        return mirror.refresh(pg, self.engine, group_ids)

    @CRM_SECONDS.labels("freshen").time()
    def freshen(
        self,
        conn: sa.Connection,
        emails: Sequence[str],
        contact_ids: Sequence[int],
        groups: Sequence[int],
    ) -> None:
        """Bring ``contact_ids`` and the contacts holding ``emails`` up to date in the copy,
        with their memberships and history in ``groups`` (a webhook's member, before it is
        decided)."""
        self._copy(conn, contact_ids, groups, emails)

    @CRM_SECONDS.labels("insert_contacts").time()
    def insert_contacts(self, conn: sa.Connection, contacts: Sequence[crm.NewContact]) -> list[int]:
        """Create ``contacts`` (or find the ones a killed call created); ids in input order."""
        if not contacts:
            return []
        primaries = [_primary(c) for c in contacts]
        with self._writing(conn) as civi:
            found = _created_before(civi, contacts, primaries)
            missing = [i for i, c in enumerate(contacts) if found.get(i) is None]
            hashes = [secrets.token_hex(16) for _ in missing]
            if missing:
                now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
                civi.exec_driver_sql(
                    _INSERT_CONTACT,
                    [
                        _contact_values(contacts[i], primaries[i], h, now)
                        for i, h in zip(missing, hashes, strict=True)
                    ],
                )
                by_hash: dict[str, int] = dict(
                    civi.exec_driver_sql(
                        f"SELECT hash, id FROM civicrm_contact WHERE hash IN ({_marks(hashes)})",
                        tuple(hashes),
                    ).all()
                )
                for i, h in zip(missing, hashes, strict=True):
                    found[i] = int(by_hash[h])
                emails = [
                    (found[i], e.email, e.is_primary, e.is_bulkmail, e.on_hold)
                    for i in missing
                    for e in contacts[i].emails
                ]
                if emails:
                    civi.exec_driver_sql(_INSERT_EMAIL, emails)
        ids = [found[i] for i in range(len(contacts))]
        self._copy(conn, ids)
        return ids

    @CRM_SECONDS.labels("set_memberships").time()
    def set_memberships(self, conn: sa.Connection, changes: Sequence[crm.MembershipChange]) -> int:
        """A history row per change (tracked; none twice) and the latest status per pair."""
        if not changes:
            return 0
        contacts = sorted({c.contact_id for c in changes})
        with self._writing(conn) as civi:
            todo = _not_made_yet(civi, changes, contacts, self.tracking)
            if todo:
                civi.exec_driver_sql(
                    _INSERT_HISTORY,
                    [
                        (
                            c.contact_id,
                            c.group_id,
                            _utc(c.date),
                            c.method,
                            c.status.value,
                            self.tracking,
                        )
                        for c in todo
                    ],
                )
            latest: dict[tuple[int, int], crm.MembershipChange] = {}
            for change in sorted(changes, key=lambda c: c.date):
                latest[(change.group_id, change.contact_id)] = change
            civi.exec_driver_sql(
                _UPSERT_MEMBERSHIP, [(g, cid, c.status.value) for (g, cid), c in latest.items()]
            )
        self._copy(conn, contacts, sorted({c.group_id for c in changes}))
        return len(changes)

    @CRM_SECONDS.labels("put_emails_on_hold").time()
    def put_emails_on_hold(self, conn: sa.Connection, emails: Sequence[str], when: datetime) -> int:
        """Put the addresses on hold since ``when``; one already on hold keeps its date."""
        if not emails:
            return 0
        with self._writing(conn) as civi:
            held = civi.exec_driver_sql(
                "UPDATE civicrm_email SET on_hold = 1, hold_date = %s "
                f"WHERE on_hold = 0 AND email IN ({_marks(emails)})",
                (_utc(when), *emails),
            ).rowcount
        self._copy(conn, (), (), emails)
        return int(held)

    @CRM_SECONDS.labels("add_emails").time()
    def add_emails(self, conn: sa.Connection, rows: Sequence[crm.EmailToAdd]) -> int:
        """Give each contact its address unless it has it; a bulk-mail one takes the flag."""
        if not rows:
            return 0
        contacts = sorted({r.contact_id for r in rows})
        with self._writing(conn) as civi:
            have = {
                (int(cid), str(email).lower())
                for cid, email in civi.exec_driver_sql(
                    "SELECT contact_id, email FROM civicrm_email "
                    f"WHERE contact_id IN ({_marks(contacts)})",
                    tuple(contacts),
                )
            }
            new: dict[tuple[int, str], crm.EmailToAdd] = {}
            for row in rows:
                key = (row.contact_id, row.email.lower())
                if key not in have and (key not in new or row.is_bulkmail):
                    new[key] = row
            bulk = sorted({r.contact_id for r in new.values() if r.is_bulkmail})
            if bulk:
                civi.exec_driver_sql(
                    "UPDATE civicrm_email SET is_bulkmail = 0 "
                    f"WHERE is_bulkmail = 1 AND contact_id IN ({_marks(bulk)})",
                    tuple(bulk),
                )
            if new:
                civi.exec_driver_sql(
                    _INSERT_EMAIL,
                    [(r.contact_id, r.email, False, r.is_bulkmail, 0) for r in new.values()],
                )
        self._copy(conn, contacts)
        return len(new)

    @CRM_SECONDS.labels("set_contact_names").time()
    def set_contact_names(
        self, conn: sa.Connection, contact_id: int, first: str | None, last: str | None
    ) -> int:
        """Take the names given and not blank, with the display and sort names they make."""
        given_first, given_last = crm.clean_name(first), crm.clean_name(last)
        if given_first is None and given_last is None:
            return 0
        with self._writing(conn) as civi:
            found = civi.exec_driver_sql(_NAMES, (contact_id,)).first()
            if found is None:
                return 0
            old_first, old_last, email = found
            new_first, new_last = given_first or old_first, given_last or old_last
            if (new_first, new_last) == (old_first, old_last):
                return 0
            civi.exec_driver_sql(
                _SET_NAMES,
                (
                    new_first,
                    new_last,
                    display_name(new_first, new_last, email),
                    sort_name(new_first, new_last, email),
                    contact_id,
                ),
            )
        self._copy(conn, [contact_id])
        return 1

    @contextmanager
    def _writing(self, conn: sa.Connection) -> Iterator[sa.Connection]:
        """A CiviCRM transaction, the copy held shared on ``conn`` meanwhile (no refresh
        merges rows read before this write over it)."""
        mirror.share_mirror(conn)
        with self.engine.begin() as civi:
            yield civi

    def _copy(
        self,
        conn: sa.Connection,
        contact_ids: Sequence[int],
        groups: Sequence[int] = (),
        emails: Sequence[str] = (),
    ) -> None:
        """Bring ``contact_ids`` and the contacts holding ``emails`` up to date in the copy
        (``mirror.copy_contacts``)."""
        ids = set(contact_ids)
        with self.engine.connect() as civi:
            if emails:
                found = civi.exec_driver_sql(
                    "SELECT DISTINCT contact_id FROM civicrm_email "
                    f"WHERE email IN ({_marks(emails)})",
                    tuple(emails),
                )
                ids.update(int(row[0]) for row in found if row[0] is not None)
            mirror.copy_contacts(conn, civi, sorted(ids), groups)


def _not_made_yet(
    civi: sa.Connection,
    changes: Sequence[crm.MembershipChange],
    contacts: Sequence[int],
    tracking: str,
) -> list[crm.MembershipChange]:
    """The changes still to make, in order: not one this run's tracking recorded already,
    nor one to the status the membership has (CiviCRM writes no history for that either,
    and it is how a change made before a kill is found by a run resumed under a new id)."""
    marks = _marks(contacts)
    recorded = {
        (int(cid), int(gid), str(status))
        for cid, gid, status in civi.exec_driver_sql(
            "SELECT contact_id, group_id, status FROM civicrm_subscription_history "
            f"WHERE tracking = %s AND contact_id IN ({marks})",
            (tracking, *contacts),
        )
    }
    status_now = {
        (int(gid), int(cid)): status
        for gid, cid, status in civi.exec_driver_sql(
            "SELECT group_id, contact_id, status FROM civicrm_group_contact "
            f"WHERE contact_id IN ({marks})",
            tuple(contacts),
        )
    }
    todo = []
    for change in changes:
        pair, status = (change.group_id, change.contact_id), change.status.value
        made = (change.contact_id, change.group_id, status) in recorded
        if made or status_now.get(pair) == status:
            continue
        todo.append(change)
        status_now[pair] = status
    return todo


def _marks(values: Sequence[Any]) -> str:
    return ", ".join(["%s"] * len(values))


def _utc(when: datetime) -> datetime:
    """A timezone-aware time as the naive UTC a UTC session of MySQL takes."""
    return when.astimezone(UTC).replace(tzinfo=None)


def _primary(contact: crm.NewContact) -> str | None:
    for email in contact.emails:
        if email.is_primary:
            return email.email
    return contact.emails[0].email if contact.emails else None


def _created_before(
    civi: sa.Connection, contacts: Sequence[crm.NewContact], primaries: list[str | None]
) -> dict[int, int]:
    """Contacts a killed call created already: same source, primary email, not deleted."""
    emails = sorted({p.lower() for p in primaries if p})
    if not emails:
        return {}
    existing: dict[tuple[str, str], int] = {}
    for cid, source, email in civi.exec_driver_sql(
        "SELECT c.id, c.source, e.email FROM civicrm_contact c "
        "JOIN civicrm_email e ON e.contact_id = c.id AND e.is_primary = 1 "
        f"WHERE c.is_deleted = 0 AND e.email IN ({_marks(emails)}) ORDER BY c.id",
        tuple(emails),
    ):
        existing.setdefault((str(source or ""), str(email).lower()), int(cid))
    found: dict[int, int] = {}
    for i, (contact, primary) in enumerate(zip(contacts, primaries, strict=True)):
        if primary and (hit := existing.get((contact.source or "", primary.lower()))) is not None:
            found[i] = hit
    return found


def _contact_values(
    contact: crm.NewContact, primary: str | None, hash_: str, now: datetime
) -> tuple[Any, ...]:
    first, last = crm.clean_name(contact.first_name), crm.clean_name(contact.last_name)
    return (
        contact.contact_type,
        first,
        last,
        display_name(first, last, primary),
        sort_name(first, last, primary),
        contact.source,
        contact.is_deleted,
        hash_,
        now,
        now,
    )


_INSERT_CONTACT = (
    "INSERT INTO civicrm_contact (contact_type, first_name, last_name, display_name, sort_name, "
    "source, is_deleted, hash, created_date, modified_date) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)
_INSERT_EMAIL = (
    "INSERT INTO civicrm_email (contact_id, email, is_primary, is_bulkmail, on_hold) "
    "VALUES (%s, %s, %s, %s, %s)"
)
_INSERT_HISTORY = (
    "INSERT INTO civicrm_subscription_history (contact_id, group_id, date, method, status, "
    "tracking) VALUES (%s, %s, %s, %s, %s, %s)"
)
_UPSERT_MEMBERSHIP = (
    "INSERT INTO civicrm_group_contact (group_id, contact_id, status) VALUES (%s, %s, %s) "
    "ON DUPLICATE KEY UPDATE status = VALUES(status)"
)
_NAMES = (
    "SELECT c.first_name, c.last_name, (SELECT e.email FROM civicrm_email e "
    "WHERE e.contact_id = c.id ORDER BY e.is_primary DESC, e.id LIMIT 1) "
    "FROM civicrm_contact c WHERE c.id = %s FOR UPDATE"
)
_SET_NAMES = (
    "UPDATE civicrm_contact SET first_name = %s, last_name = %s, display_name = %s, "
    "sort_name = %s, modified_date = CURRENT_TIMESTAMP WHERE id = %s"
)
