"""``mcsync demo``: the embedded stack, a seeded CRM and simulator audience, then a real sync.

Seeding goes through the same paths production data takes: the CRM gateway for contacts,
groups and history; the simulator's control API for the audience (so a simulator started
separately, named by MCSYNC_MAILCHIMP_API_URL, works too). The sync is the real pipeline:
``fetchandreconcile`` on the configured broker (in-process workers when embedded).
"""

from __future__ import annotations

import dataclasses
import secrets
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TextIO, TypeVar

import requests
import sqlalchemy as sa

from common.crm.writes import EMBEDDED, CrmWrites
from common.db import config, crm, migrate
from common.db.engine import create_engine, database_url
from common.db.schema import metadata
from common.settings import Settings
from common.sync_request import SyncRequest
from common.vocabulary import GroupStatus
from mcsync.demo_data import (
    INTERESTS,
    DemoPlan,
    PlannedContact,
    PlannedMember,
    PlannedMembership,
    plan_demo,
)
from mcsync.sync import fetch_and_reconcile
from sim.mailchimp import Simulator, run_in_thread

SUBSCRIPTION_GROUP = ("mailchimp_newsletter", "Newsletter (Mailchimp)")
IMPORT_CHUNK = 5000
SEED_PAGE = 10_000  # contacts or memberships per CRM write while seeding
T = TypeVar("T")


class DemoRefused(RuntimeError):
    """The demo would overwrite data it does not own."""


@dataclasses.dataclass(frozen=True)
class SeededAudience:
    api_key: str
    list_id: str
    interest_ids: dict[str, str]


@dataclasses.dataclass(frozen=True)
class Console:
    """Where ``--serve`` serves the console once the demo's syncs are done."""

    host: str = "127.0.0.1"
    port: int = 8080


def run(
    settings: Settings,
    size: int,
    seed: int,
    reset: bool,
    out: TextIO = sys.stdout,
    console: Console | None = None,
) -> None:
    """Start the stack, seed both sides, sync them, then sync again to show nothing is left;
    with ``console``, then serve the console on the demo's data until interrupted."""
    url = database_url(settings)
    _describe_stack(settings, url, out)
    migrate.upgrade(url)
    engine = create_engine(url)
    try:
        _make_room(engine, embedded=settings.embedded_database, reset=reset)
        with _mailchimp(settings) as api_url:
            settings = dataclasses.replace(settings, mailchimp_api_url=api_url)
            plan = plan_demo(size, seed)
            audience = seed_both_sides(engine, api_url, plan)
            _show_seeded(plan, audience, out)
            print("\n== first sync: fetch, reconcile, submit ==", file=out)
            fetch_and_reconcile(settings, SyncRequest(max_time=0), wait=True, out=out)
            print("\n== second sync: nothing should be left to do ==", file=out)
            fetch_and_reconcile(settings, SyncRequest(max_time=0), wait=True, out=out)
            if console is None:
                print(f"\n{CONSOLE_HINT}", file=out)
            else:
                _serve(settings, console, out)
    finally:
        engine.dispose()


CONSOLE_HINT = (
    "To see this sync in the web console (Status, Cache, Config), run `mcsync demo --serve` "
    "(or `make demo-serve`) and open the address it prints."
)


def _serve(settings: Settings, console: Console, out: TextIO) -> None:
    """Serve the console (and every worker) on the demo's data until Ctrl-C."""
    from mcsync import serve

    token = settings.admin_token or secrets.token_urlsafe(18)
    settings = dataclasses.replace(settings, admin_token=token)
    shown = "localhost" if console.host in ("127.0.0.1", "0.0.0.0", "::") else console.host
    print(
        f"\n== the console ==\n  open     http://{shown}:{console.port}/\n"
        f"  token    {token}\n  stop     Ctrl-C",
        file=out,
        flush=True,
    )
    serve.run(settings, console.host, console.port)


def _describe_stack(settings: Settings, url: str, out: TextIO) -> None:
    where = sa.engine.make_url(url)
    database = (
        f"embedded PostgreSQL in {settings.data_dir / 'postgres'}"
        if settings.embedded_database
        else f"PostgreSQL at {where.host}:{where.port}/{where.database}"
    )
    broker = (
        "dramatiq stub broker, workers in this process"
        if settings.embedded_broker
        else ("RabbitMQ (run `mcsync worker ...` processes)")
    )
    limiter = "Redis" if settings.redis_url else "in-process connection limit"
    mailchimp = settings.mailchimp_api_url or "the bundled simulator, in this process"
    print("== the stack ==", file=out)
    for name, value in [
        ("database", database),
        ("broker", broker),
        ("rate limits", limiter),
        ("Mailchimp", mailchimp),
    ]:
        print(f"  {name:<12} {value}", file=out)


def _make_room(engine: sa.Engine, embedded: bool, reset: bool) -> None:
    with engine.begin() as conn:
        if not embedded and not reset and crm.contact_count(conn):
            raise DemoRefused(
                "the configured database already holds CRM contacts; the demo only seeds an "
                "empty database (use --reset to empty it first, or unset MCSYNC_DATABASE_URL)"
            )
        tables = ", ".join(table.name for table in metadata.sorted_tables)
        conn.execute(sa.text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@contextmanager
def _mailchimp(settings: Settings) -> Iterator[str]:
    """The Marketing API base URL to use: the configured simulator, or one started here."""
    if settings.mailchimp_api_url:
        control = _control_url(settings.mailchimp_api_url)
        try:
            requests.get(control + "/health", timeout=5).raise_for_status()
        except requests.RequestException as error:
            raise DemoRefused(
                f"MCSYNC_MAILCHIMP_API_URL does not point at the simulator ({error}); "
                "the demo never seeds a real Mailchimp account"
            ) from error
        yield settings.mailchimp_api_url
        return
    with run_in_thread(Simulator()) as running:
        yield running.api_url


def seed_both_sides(
    engine: sa.Engine,
    api_url: str,
    plan: DemoPlan,
    writes: CrmWrites = EMBEDDED,
    create_group: Callable[[sa.Connection, str, str], int] = crm.create_group,
) -> SeededAudience:
    """Seed the simulator's audience and the CRM from a plan, and connect them. The CRM is
    written by ``writes``, its groups made by ``create_group`` (the tests seed CiviCRM so)."""
    audience = _seed_mailchimp(api_url, plan)
    _seed_crm(engine, plan, audience, writes, create_group)
    return audience


def _control_url(api_url: str) -> str:
    return api_url.rstrip("/").removesuffix("/3.0") + "/_sim"


def _seed_mailchimp(api_url: str, plan: DemoPlan) -> SeededAudience:
    control = _control_url(api_url)
    api_key = _post(control + "/accounts", {"name": "Demo Org"})["api_key"]
    created = _post(
        control + "/lists",
        {
            "api_key": api_key,
            "name": "Demo newsletter",
            "interest_categories": [{"title": "Topics", "interests": list(INTERESTS)}],
        },
    )
    interests = {i["name"]: i["id"] for i in created["interest_categories"][0]["interests"]}
    audience = SeededAudience(api_key, created["id"], interests)
    records = [_member_record(member, interests) for member in plan.members]
    for start in range(0, len(records), IMPORT_CHUNK):
        chunk = records[start : start + IMPORT_CHUNK]
        _post(f"{control}/lists/{audience.list_id}/members/import", chunk)
    return audience


def _member_record(member: PlannedMember, interest_ids: dict[str, str]) -> dict[str, Any]:
    record: dict[str, Any] = {
        "email": member.email,
        "status": member.status,
        "merge_fields": {"FNAME": member.first_name, "LNAME": member.last_name},
        "interests": {interest_ids[key]: flag for key, flag in member.interests.items()},
        "last_changed": member.last_changed.isoformat(),
    }
    if member.unsubscribed_by:
        record["unsubscribed_by"] = member.unsubscribed_by
    return record


def _post(url: str, body: Any) -> Any:
    response = requests.post(url, json=body, timeout=120)
    response.raise_for_status()
    return response.json()


def _seed_crm(
    engine: sa.Engine,
    plan: DemoPlan,
    audience: SeededAudience,
    writes: CrmWrites,
    create_group: Callable[[sa.Connection, str, str], int],
) -> None:
    with engine.begin() as conn:
        subscription = create_group(conn, *SUBSCRIPTION_GROUP)
        groups = {key: create_group(conn, f"interest_{key}", key.title()) for key in INTERESTS}
    writes.refresh(engine, [])  # CiviCRM's new groups into the copy
    contacts = [_new_contact(contact) for contact in plan.contacts]
    with engine.begin() as conn:
        ids = [i for page in _pages(contacts) for i in writes.insert_contacts(conn, page)]
        for changes in _pages(list(_memberships(plan.contacts, ids, subscription, groups))):
            writes.set_memberships(conn, changes)
        account_id = config.add_account(conn, "Demo Org", audience.api_key)
        interest_groups = {audience.interest_ids[key]: groups[key] for key in INTERESTS}
        config.add_connection(conn, account_id, audience.list_id, subscription, interest_groups)
    with engine.connect() as conn:
        conn.execute(sa.text("ANALYZE"))  # fresh statistics for the freshly seeded CRM


def _pages(items: Sequence[T]) -> Iterator[Sequence[T]]:
    """``items`` in pages of SEED_PAGE (a CiviCRM statement has a size limit)."""
    for start in range(0, len(items), SEED_PAGE):
        yield items[start : start + SEED_PAGE]


def _new_contact(contact: PlannedContact) -> crm.NewContact:
    emails = tuple(
        crm.NewEmail(email, is_primary=index == 0, is_bulkmail=index == 0, on_hold=int(hold))
        for index, (email, hold) in enumerate(contact.emails)
    )
    return crm.NewContact(
        contact.first_name, contact.last_name, "demo", emails, is_deleted=contact.is_deleted
    )


def _memberships(
    contacts: Sequence[PlannedContact],
    ids: Sequence[int],
    subscription: int,
    groups: dict[str, int],
) -> Iterator[crm.MembershipChange]:
    for contact, contact_id in zip(contacts, ids, strict=True):
        if contact.subscription is not None:
            yield _change(contact_id, subscription, contact.subscription)
        for key, membership in contact.interests.items():
            yield _change(contact_id, groups[key], membership)


def _change(contact_id: int, group_id: int, planned: PlannedMembership) -> crm.MembershipChange:
    status = GroupStatus(planned.status)
    return crm.MembershipChange(contact_id, group_id, status, planned.date, method="Admin")


def _show_seeded(plan: DemoPlan, audience: SeededAudience, out: TextIO) -> None:
    statuses = Counter(member.status for member in plan.members)
    print(f"\n== seeded audience {audience.list_id} and the CRM ==", file=out)
    print(f"  Mailchimp members: {len(plan.members)}  " + _counts(statuses), file=out)
    print(f"  CRM contacts:      {len(plan.contacts)}", file=out)
    print("  cases:", file=out)
    for case, count in plan.cases.most_common():
        print(f"    {count:>7}  {case}", file=out)


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{name} {count}" for name, count in counter.most_common())
