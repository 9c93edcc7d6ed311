"""Benchmark: reading CiviCRM into the copy beside fetching the same audience from Mailchimp.

Run with ``pytest -m slow -s tests/benchmarks/test_civicrm_benchmark.py``. Sizes come from
MCSYNC_BENCH_SIZES (default ``100000``; e.g. ``100000,1000000``). For N contacts, each with
one primary bulk-mail email, Added to one group with one history row, and a simulator
audience of N members with the same emails, it times, side by side in one run:

- ``mirror.refresh`` into an empty copy, then again with nothing changed (rows, read and
  merge seconds per table, WAL written, the process's CPU and peak RSS);
- the fetch of the audience as the fetcher does it, one page of 1000 after another: GET and
  parse through ``MailchimpClient``, then the page merged into the cache (which links each
  member to its contact, read from the copy the refresh just filled).

The bar (issue 18): a full read of 1,000,000 contacts costs less than the fetch of the same
audience. The simulator answers far faster than Mailchimp does, so a read that beats this
fetch beats Mailchimp's. Seeding is timed apart and is not part of any figure compared.
"""

from __future__ import annotations

import io
import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import pymysql
import pytest
import requests
import sqlalchemy as sa
from civicrm_support import HOST, PORT, civicrm_database
from prometheus_client import REGISTRY
from scratch_databases import scratch_database
from server_checks import require_server
from simulator_support import SeededSimulator, seeded_simulator

from common.crm import mirror
from common.crm.civicrm import UTC_SESSION, crm_engine
from common.db import cache, config, crm, migrate, runs
from common.db.engine import create_engine
from common.mailchimp import MailchimpClient
from common.member_data import FetchedMember
from common.settings import Settings
from common.vocabulary import GroupStatus
from mcsync.sync import SyncRequest, fetch_and_reconcile
from services.fetcher.handlers import PAGE_FIELDS, PAGE_SIZE

pytestmark = [pytest.mark.slow, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
SIZES = [int(s) for s in os.environ.get("MCSYNC_BENCH_SIZES", "100000").split(",")]
CRM_DATABASE = "mcsync_civicrm_bench"
PG_DATABASE = "mcsync_civicrm_bench"
GROUP_ID = 1
# CiviCRM's tables that the sync reads; the copy's have the same names.
TABLES = (
    "civicrm_group",
    "civicrm_contact",
    "civicrm_email",
    "civicrm_group_contact",
    "civicrm_subscription_history",
)
# The simulator's --seed-members N makes seed<SEED>.member<n>@example.org, n from 0: contact
# n + 1 of the CRM gets that email, so every member has its contact.
SEED = 1
SEED_ROWS_PER_STATEMENT = 100_000
SEEDED_AT = "2025-01-01 00:00:00"

T = TypeVar("T")


# --- seeding (not measured) -----------------------------------------------------------------

# Each statement fills ids first..last from MariaDB's SEQUENCE engine (seq_<a>_to_<b>), so no
# row crosses the wire; most of the time goes to civicrm_contact's twenty indexes.
SEED_STATEMENTS = (
    "INSERT INTO civicrm_contact (id, contact_type, first_name, last_name, display_name, "
    "sort_name, hash, created_date, modified_date) "
    "SELECT seq, 'Individual', concat('First', seq), concat('Last', seq), "
    "concat('First', seq, ' Last', seq), concat('Last', seq, ', First', seq), md5(seq), "
    "'{at}', '{at}' FROM seq_{first}_to_{last}",
    "INSERT INTO civicrm_email (id, contact_id, location_type_id, email, is_primary, is_bulkmail) "
    "SELECT seq, seq, 1, concat('seed{seed}.member', seq - 1, '@example.org'), 1, 1 "
    "FROM seq_{first}_to_{last}",
    "INSERT INTO civicrm_group_contact (id, group_id, contact_id, status) "
    "SELECT seq, {group}, seq, 'Added' FROM seq_{first}_to_{last}",
    "INSERT INTO civicrm_subscription_history (id, contact_id, group_id, date, method, status) "
    "SELECT seq, seq, {group}, '{at}', 'Admin', 'Added' FROM seq_{first}_to_{last}",
)


def _seed_civicrm(database: str, size: int) -> float:
    """``size`` contacts in CiviCRM, as described above; the seconds it took."""
    started = time.perf_counter()
    connection = pymysql.connect(
        host=HOST, port=PORT, user="root", database=database, init_command=UTC_SESSION
    )
    with connection, connection.cursor() as cursor:
        cursor.execute("SET unique_checks = 0, foreign_key_checks = 0")
        cursor.execute(
            "INSERT INTO civicrm_group (id, name, title, frontend_title) "
            "VALUES (%s, 'newsletter', 'Newsletter', 'Newsletter')",
            (GROUP_ID,),
        )
        for first in range(1, size + 1, SEED_ROWS_PER_STATEMENT):
            last = min(size, first + SEED_ROWS_PER_STATEMENT - 1)
            for statement in SEED_STATEMENTS:
                cursor.execute(
                    statement.format(
                        first=first, last=last, at=SEEDED_AT, seed=SEED, group=GROUP_ID
                    )
                )
            connection.commit()
        cursor.execute("ANALYZE TABLE " + ", ".join(TABLES))
        cursor.fetchall()
    return time.perf_counter() - started


# --- measuring --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cost:
    """What one measured step cost: wall and this process's CPU seconds, the process's peak
    RSS during the step, and the WAL our Postgres wrote meanwhile."""

    seconds: float
    cpu_seconds: float
    peak_rss_mb: float
    wal_mb: float


def _rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def _reset_peak_rss() -> None:
    """Start VmHWM afresh from the current RSS (Linux: ``5`` to ``/proc/self/clear_refs``),
    so a step's peak is its own, not the seeding's."""
    Path("/proc/self/clear_refs").write_text("5")


def _wal_bytes(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        lsn = conn.execute(sa.text("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')"))
        return int(lsn.scalar_one())


def _measured(engine: sa.Engine, step: Callable[[], T]) -> tuple[T, Cost]:
    _reset_peak_rss()
    wal = _wal_bytes(engine)
    clock, cpu = time.perf_counter(), time.process_time()
    result = step()
    seconds, cpu_seconds = time.perf_counter() - clock, time.process_time() - cpu
    wal_mb = (_wal_bytes(engine) - wal) / 2**20
    return result, Cost(seconds, cpu_seconds, _rss_mb("VmHWM"), wal_mb)


@dataclass(frozen=True)
class Fetched:
    """The audience fetched page by page: seconds getting and parsing pages, and merging
    them into the cache (both within the fetch's Cost)."""

    members: int
    pages: int
    get_seconds: float
    merge_seconds: float


def _fetch(engine: sa.Engine, simulator: SeededSimulator) -> Fetched:
    """Every page of the audience, as ``services.fetcher.handlers.fetch_page`` asks for and
    merges it (the run's bookkeeping aside), one page after another."""
    client = MailchimpClient(simulator.api_key, base_url=simulator.api_url)
    fetched, pages, got, merged = 0, 0, 0.0, 0.0
    try:
        for members, seconds in _pages(client, simulator.list_id):
            fetched, pages, got = fetched + len(members), pages + 1, got + seconds
            clock = time.perf_counter()
            with engine.begin() as conn:
                cache.merge_fetched(conn, simulator.list_id, GROUP_ID, members)
            with engine.begin() as conn:
                cache.refresh_statistics_if_outgrown(conn, simulator.list_id, fetched)
            merged += time.perf_counter() - clock
    finally:
        client.close()
    return Fetched(fetched, pages, got, merged)


def _pages(client: MailchimpClient, list_id: str) -> Iterator[tuple[list[FetchedMember], float]]:
    """Each page of the audience, parsed, with the seconds getting and parsing it took."""
    path = f"/lists/{list_id}/members"
    # The fetcher's query (its _page_query): a fixed window, sorted by last change.
    query = {
        "count": PAGE_SIZE,
        "fields": PAGE_FIELDS,
        "sort_field": "last_changed",
        "sort_dir": "ASC",
    }
    offset, total = 0, 1
    while offset < total:
        clock = time.perf_counter()
        page = client.get(path, query | {"offset": offset})
        members = [FetchedMember.from_api(member) for member in page["members"]]
        yield members, time.perf_counter() - clock
        total, offset = int(page["total_items"]), offset + PAGE_SIZE


# --- the benchmark ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figures:
    size: int
    seeding: tuple[float, float]  # seconds seeding CiviCRM, the simulator (not compared)
    rss_before_mb: float
    first: tuple[mirror.RefreshReport, Cost]
    second: tuple[mirror.RefreshReport, Cost]
    fetch: tuple[Fetched, Cost]
    server_settings: str


def _analyze_the_copy(engine: sa.Engine) -> None:
    """Statistics on the copy, as autovacuum has long made them when a later run fetches: the
    refresh leaves the tables it filled unanalyzed, and planned without statistics, the
    fetch's lookup of each member's contact took over twice as long."""
    with engine.connect() as conn:
        conn.execute(sa.text("ANALYZE " + ", ".join(TABLES)))
        conn.commit()


# The settings that shape the figures most: the servers' memory, Postgres's WAL room.
PG_SETTINGS = ("shared_buffers", "max_wal_size", "work_mem")
MARIADB_SETTINGS = ("innodb_buffer_pool_size",)


def _server_settings(pg: sa.Engine, civicrm: sa.Engine) -> str:
    with pg.connect() as conn:
        shown = [f"{n} {conn.execute(sa.text(f'SHOW {n}')).scalar_one()}" for n in PG_SETTINGS]
    with civicrm.connect() as conn:
        for name in MARIADB_SETTINGS:
            size = int(conn.execute(sa.text(f"SELECT @@{name}")).scalar_one())
            shown.append(f"{name} {size // 2**20}MB")
    return ", ".join(shown)


def _bench(size: int, database_url: str) -> Figures:
    with (
        civicrm_database(CRM_DATABASE) as crm_url,
        seeded_simulator(size, SEED) as simulator,
        scratch_database(database_url, PG_DATABASE) as pg_url,
    ):
        crm_seconds = _seed_civicrm(CRM_DATABASE, size)
        migrate.upgrade(pg_url)
        pg, civicrm = create_engine(pg_url), crm_engine(crm_url)
        try:
            rss_before = _rss_mb("VmRSS")
            first = _measured(pg, lambda: mirror.refresh(pg, civicrm, [GROUP_ID]))
            second = _measured(pg, lambda: mirror.refresh(pg, civicrm, [GROUP_ID]))
            _analyze_the_copy(pg)
            fetch = _measured(pg, lambda: _fetch(pg, simulator))
            settings = _server_settings(pg, civicrm)
        finally:
            pg.dispose()
            civicrm.dispose()
    seeding = (crm_seconds, simulator.seed_seconds)
    return Figures(size, seeding, rss_before, first, second, fetch, settings)


def _print_refresh(title: str, report: mirror.RefreshReport, cost: Cost) -> None:
    print(
        f"{title}: {cost.seconds:7.1f} s (CPU of this process {cost.cpu_seconds:.1f} s), "
        f"peak RSS {cost.peak_rss_mb:,.0f} MB, WAL {cost.wal_mb:,.0f} MB"
    )
    print(f"  {'table':30} {'rows':>10} {'read s':>8} {'merge s':>8} {'changed':>10} {'rows/s':>9}")
    for t in report.tables:
        spent = t.read_seconds + t.merge_seconds
        rate = f"{t.rows / spent:9,.0f}" if spent else ""
        print(
            f"  {t.table:30} {t.rows:10,} {t.read_seconds:8.2f} {t.merge_seconds:8.2f} "
            f"{t.changed:10,} {rate}"
        )


def _report(figures: Figures) -> None:
    (first, first_cost), (second, second_cost) = figures.first, figures.second
    fetched, fetch_cost = figures.fetch
    crm_seeding, simulator_seeding = figures.seeding
    print(f"\n=== CiviCRM read beside Mailchimp fetch, {figures.size:,} contacts / members ===")
    print(
        f"seeding (not compared): CiviCRM {crm_seeding:.1f} s, simulator {simulator_seeding:.1f} s;"
        f" this process's RSS before the refreshes {figures.rss_before_mb:,.0f} MB"
    )
    print(f"servers: {figures.server_settings}")
    _print_refresh("refresh into an empty copy", first, first_cost)
    _print_refresh("refresh again, nothing changed", second, second_cost)
    print(
        f"fetch of {fetched.members:,} members in {fetched.pages:,} pages: "
        f"{fetch_cost.seconds:7.1f} s (CPU of this process {fetch_cost.cpu_seconds:.1f} s), "
        f"peak RSS {fetch_cost.peak_rss_mb:,.0f} MB, WAL {fetch_cost.wal_mb:,.0f} MB"
    )
    print(f"  GET + parse pages:     {fetched.get_seconds:7.1f} s")
    print(f"  merge into the cache:  {fetched.merge_seconds:7.1f} s")
    print("ratio refresh / fetch (below 1: the read costs less than the fetch):")
    for name, cost in (("first refresh", first_cost), ("second refresh", second_cost)):
        print(
            f"  {name:15} / whole fetch {cost.seconds / fetch_cost.seconds:5.2f}, "
            f"/ GET + parse only {cost.seconds / fetched.get_seconds:5.2f}"
        )


@pytest.mark.parametrize("size", SIZES)
def test_reading_civicrm_beside_fetching_the_audience(size: int, database_url: str) -> None:
    require_server(HOST, PORT, "MariaDB")
    figures = _bench(size, database_url)
    _report(figures)
    assert figures.fetch[0].members == size
    assert {t.table: t.rows for t in figures.first[0].tables}["civicrm_contact"] == size


# --- a whole sync with CiviCRM as the CRM, beside one with the embedded CRM -------------------

SYNC_SIZE = int(os.environ.get("MCSYNC_BENCH_SYNC_SIZE", "100000"))
FOLLOW_POLL = 1.0  # seconds between the follower's looks at the run (it counts the queue)


@dataclass(frozen=True)
class Synced:
    """A first sync and an incremental one (after changes to 1% of the members, half at
    Mailchimp and half in the CRM), each with its time per stage from the status log."""

    crm: str
    initial: float
    incremental: float
    initial_stages: list[tuple[str, float]]
    incremental_stages: list[tuple[str, float]]
    initial_crm: dict[str, tuple[float, float]]  # operation -> (seconds, calls) on CiviCRM
    incremental_crm: dict[str, tuple[float, float]]


def _sync_bench(civicrm_as_crm: bool, size: int, database_url: str) -> Synced:
    """The same CRM (CiviCRM's, or read into our Postgres's tables by a refresh) and the same
    audience, synced with every worker in this process (the embedded broker)."""
    crm = "CiviCRM (MariaDB)" if civicrm_as_crm else "embedded (our Postgres)"
    with (
        civicrm_database(CRM_DATABASE) as crm_url,
        seeded_simulator(size, SEED) as simulator,
        scratch_database(database_url, PG_DATABASE) as pg_url,
    ):
        _seed_civicrm(CRM_DATABASE, size)
        migrate.upgrade(pg_url)
        pg = create_engine(pg_url)
        try:
            if not civicrm_as_crm:
                _crm_into_our_tables(pg, crm_url)
            _connect(pg, simulator)
            settings = Settings(
                database_url=pg_url,
                crm_url=crm_url if civicrm_as_crm else "",
                mailchimp_api_url=simulator.api_url,
            )
            initial = _timed_sync(settings, pg, simulator.list_id)
            _change_one_percent(pg, simulator, size, civicrm_as_crm)
            incremental = _timed_sync(settings, pg, simulator.list_id)
        finally:
            pg.dispose()
    return Synced(
        crm, initial[0], incremental[0], initial[1], incremental[1], initial[2], incremental[2]
    )


def _crm_into_our_tables(pg: sa.Engine, crm_url: str) -> None:
    """The seeded CiviCRM as the embedded CRM: read into our tables, each table's id sequence
    then moved past the ids read (the embedded CRM takes its new ids from them)."""
    civicrm = crm_engine(crm_url)
    mirror.refresh(pg, civicrm, [GROUP_ID])
    civicrm.dispose()
    with pg.begin() as conn:
        for table in TABLES:
            conn.execute(
                sa.text(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT max(id) FROM {table}))"
                )
            )
    _analyze_the_copy(pg)


def _connect(pg: sa.Engine, simulator: SeededSimulator) -> None:
    with pg.begin() as conn:
        account = config.add_account(conn, "Bench Org", simulator.api_key)
        config.add_connection(conn, account, simulator.list_id, GROUP_ID, {})


def _timed_sync(
    settings: Settings, pg: sa.Engine, list_id: str
) -> tuple[float, list[tuple[str, float]], dict[str, tuple[float, float]]]:
    started, clock, before = datetime.now(UTC), time.perf_counter(), _crm_seconds()
    followed = fetch_and_reconcile(
        settings, SyncRequest(max_time=0), True, io.StringIO(), FOLLOW_POLL
    )
    seconds = time.perf_counter() - clock
    assert not followed.unfinished, followed.unfinished
    after = _crm_seconds()
    spent = {
        op: (after[op][0] - before[op][0], after[op][1] - before[op][1])
        for op in after
        if after[op][1] > before[op][1]
    }
    return seconds, _stage_times(pg, list_id, started), spent


CRM_OPERATIONS = (
    "refresh",
    "insert_contacts",
    "set_memberships",
    "put_emails_on_hold",
    "add_emails",
    "set_contact_names",
    "freshen",
)


def _crm_seconds() -> dict[str, tuple[float, float]]:
    """Seconds and calls per CiviCRM operation so far in this process (mcsync_crm_seconds)."""
    found = {}
    for op in CRM_OPERATIONS:
        labels = {"operation": op}
        seconds = REGISTRY.get_sample_value("mcsync_crm_seconds_sum", labels) or 0.0
        calls = REGISTRY.get_sample_value("mcsync_crm_seconds_count", labels) or 0.0
        found[op] = (seconds, calls)
    return found


def _stage_times(pg: sa.Engine, list_id: str, since: datetime) -> list[tuple[str, float]]:
    """The run's status log lines since ``since``, each with the seconds since the line before."""
    with pg.connect() as conn:
        log = runs.read_log(conn, list_id)
    times, previous = [], since
    for entry in log:
        at = datetime.fromisoformat(entry["at"])
        if at >= since:
            times.append((entry["message"], (at - previous).total_seconds()))
            previous = at
    return times


def _change_one_percent(
    pg: sa.Engine, simulator: SeededSimulator, size: int, civicrm_as_crm: bool
) -> None:
    """Half a percent of the members unsubscribe at Mailchimp, and half a percent of the
    contacts are removed from the group in the CRM (the same ones whichever the CRM)."""
    rng = random.Random(size)
    control = simulator.api_url.removesuffix("/3.0") + f"/_sim/lists/{simulator.list_id}/members"
    listed = requests.get(control, timeout=300).json()["members"]
    subscribed = [m["email_address"] for m in listed if m["status"] == "subscribed"]
    for email in rng.sample(sorted(subscribed), size // 200):
        unsubscribe = f"{control}/{email}/actions/unsubscribe"
        requests.post(unsubscribe, json={"source": "user"}, timeout=30).raise_for_status()
    removed = rng.sample(range(1, size + 1), size // 200)
    if civicrm_as_crm:
        _remove_in_civicrm(removed)
    else:
        now = datetime.now(UTC)
        changes = [
            crm.MembershipChange(c, GROUP_ID, GroupStatus.REMOVED, now, "Admin") for c in removed
        ]
        with pg.begin() as conn:
            crm.set_memberships(conn, changes)


def _remove_in_civicrm(contact_ids: list[int]) -> None:
    """As CiviCRM removes contacts from a group: the membership, and a history row each."""
    listed = ", ".join(map(str, contact_ids))
    connection = pymysql.connect(
        host=HOST, port=PORT, user="root", database=CRM_DATABASE, init_command=UTC_SESSION
    )
    with connection, connection.cursor() as cursor:
        cursor.execute(
            "UPDATE civicrm_group_contact SET status = 'Removed' "
            f"WHERE group_id = {GROUP_ID} AND contact_id IN ({listed})"
        )
        cursor.execute(
            "INSERT INTO civicrm_subscription_history (contact_id, group_id, date, method, status) "
            "SELECT contact_id, group_id, NOW(), 'Admin', 'Removed' "
            f"FROM civicrm_group_contact WHERE group_id = {GROUP_ID} AND contact_id IN ({listed})"
        )
        connection.commit()


def _report_syncs(results: list[Synced], size: int) -> None:
    print(f"\n=== a whole sync of {size:,} members / contacts, by CRM (workers in one process) ===")
    for synced in results:
        print(
            f"{synced.crm}: first sync {synced.initial:7.1f} s, "
            f"incremental after 1% changes {synced.incremental:7.1f} s"
        )
    for synced in results:
        for title, stages in (
            ("first sync", synced.initial_stages),
            ("incremental sync", synced.incremental_stages),
        ):
            print(f"time per stage, {title}, {synced.crm}:")
            for message, seconds in stages:
                print(f"  {seconds:7.1f} s  {message}")
        for title, spent in (
            ("first sync", synced.initial_crm),
            ("incremental sync", synced.incremental_crm),
        ):
            if spent:
                print(f"time on CiviCRM's database, {title} (reads and writes, by operation):")
                for op, (seconds, calls) in spent.items():
                    print(f"  {seconds:7.1f} s  {op} ({calls:.0f} calls)")


def test_a_sync_with_civicrm_beside_one_with_the_embedded_crm(database_url: str) -> None:
    require_server(HOST, PORT, "MariaDB")
    synced = [_sync_bench(civicrm, SYNC_SIZE, database_url) for civicrm in (False, True)]
    _report_syncs(synced, SYNC_SIZE)
    assert all(s.initial > 0 for s in synced)
