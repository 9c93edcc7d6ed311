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

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pymysql
import pytest
import requests
import sqlalchemy as sa
from civicrm_support import HOST, PORT, civicrm_database
from scratch_databases import scratch_database
from server_checks import require_server

from common.crm import mirror
from common.crm.civicrm import crm_engine
from common.db import cache, migrate
from common.db.engine import create_engine
from common.mailchimp import MailchimpClient
from common.member_data import FetchedMember
from services.fetcher.handlers import PAGE_FIELDS, PAGE_SIZE

pytestmark = [pytest.mark.slow, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
SIZES = [int(s) for s in os.environ.get("MCSYNC_BENCH_SIZES", "100000").split(",")]
CRM_DATABASE = "mcsync_civicrm_bench"
PG_DATABASE = "mcsync_civicrm_bench"
GROUP_ID = 1
# The simulator's --seed-members N makes seed<SEED>.member<n>@example.org, n from 0: contact
# n + 1 of the CRM gets that email, so every member has its contact.
SEED = 1
SEED_ROWS_PER_STATEMENT = 100_000
SEEDED_AT = "2025-01-01 00:00:00"

T = TypeVar("T")


# --- seeding (not measured) -----------------------------------------------------------------

# Each statement fills ids first..last from MariaDB's SEQUENCE engine (seq_<a>_to_<b>): no rows
# cross the wire, so a million contacts take seconds rather than minutes of INSERTs.
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
    connection = pymysql.connect(host=HOST, port=PORT, user="root", database=database)
    with connection, connection.cursor() as cursor:
        cursor.execute("SET time_zone = '+00:00', unique_checks = 0, foreign_key_checks = 0")
        cursor.execute(
            "INSERT INTO civicrm_group (id, name, title, frontend_title) "
            "VALUES (%s, 'newsletter', 'Newsletter', 'Newsletter')",
            (GROUP_ID,),
        )
        for first in range(1, size + 1, SEED_ROWS_PER_STATEMENT):
            last = min(size, first + SEED_ROWS_PER_STATEMENT - 1)
            for statement in SEED_STATEMENTS:
                cursor.execute(
                    statement.format(first=first, last=last, at=SEEDED_AT, seed=SEED, group=GROUP_ID)
                )
            connection.commit()
        for table in ("civicrm_contact", "civicrm_email", "civicrm_group_contact"):
            cursor.execute(f"ANALYZE TABLE {table}")
            cursor.fetchall()
    return time.perf_counter() - started


@dataclass(frozen=True)
class Simulator:
    process: subprocess.Popen[str]
    api_url: str
    api_key: str
    list_id: str
    seed_seconds: float


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def _simulator(size: int) -> Iterator[Simulator]:
    """The simulator in a process of its own, its audience seeded with ``size`` members."""
    started = time.perf_counter()
    port = str(_free_port())
    process = subprocess.Popen(
        [sys.executable, "-m", "sim.mailchimp", "--port", port, "--seed-members", str(size)]
        + ["--seed", str(SEED)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        said = _settings_printed(process)
        _wait_until_answering(said["api_url"], said["api_key"])
        seconds = time.perf_counter() - started
        yield Simulator(process, said["api_url"], said["api_key"], said["list_id"], seconds)
    finally:
        process.terminate()
        process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()


def _settings_printed(process: subprocess.Popen[str]) -> dict[str, str]:
    said: dict[str, str] = {}
    assert process.stdout is not None
    while "api_url" not in said:
        line = process.stdout.readline()
        if not line:
            raise RuntimeError("the simulator exited before printing its settings")
        key, _, value = line.strip().partition("=")
        said[key] = value
    return said


def _wait_until_answering(api_url: str, api_key: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if requests.get(api_url + "/ping", auth=("bench", api_key), timeout=2).ok:
                return
        except requests.ConnectionError:
            time.sleep(0.1)
    raise RuntimeError("the simulator did not come up")


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


def _fetch(engine: sa.Engine, simulator: Simulator) -> Fetched:
    """Every page of the audience, as ``services.fetcher.handlers.fetch_page`` asks for and
    merges it (the run's bookkeeping aside), one page after another."""
    client = MailchimpClient(simulator.api_key, base_url=simulator.api_url)
    path = f"/lists/{simulator.list_id}/members"
    query = {"count": PAGE_SIZE, "fields": PAGE_FIELDS, "sort_field": "last_changed"}
    offset, total, got, merged = 0, 1, 0.0, 0.0
    fetched = 0
    try:
        while offset < total:
            clock = time.perf_counter()
            page = client.get(path, query | {"sort_dir": "ASC", "offset": offset})
            members = [FetchedMember.from_api(member) for member in page["members"]]
            got += time.perf_counter() - clock
            total, offset, fetched = int(page["total_items"]), offset + PAGE_SIZE, fetched + len(members)
            clock = time.perf_counter()
            with engine.begin() as conn:
                cache.merge_fetched(conn, simulator.list_id, GROUP_ID, members)
            with engine.begin() as conn:
                cache.refresh_statistics_if_outgrown(conn, simulator.list_id, fetched)
            merged += time.perf_counter() - clock
    finally:
        client.close()
    return Fetched(fetched, offset // PAGE_SIZE, got, merged)


# --- the benchmark ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figures:
    size: int
    seeding: tuple[float, float]  # seconds seeding CiviCRM, the simulator (not compared)
    rss_before_mb: float
    first: tuple[mirror.RefreshReport, Cost]
    second: tuple[mirror.RefreshReport, Cost]
    fetch: tuple[Fetched, Cost]


def _bench(size: int, database_url: str) -> Figures:
    with (
        civicrm_database(CRM_DATABASE) as crm_url,
        _simulator(size) as simulator,
        scratch_database(database_url, PG_DATABASE) as pg_url,
    ):
        crm_seconds = _seed_civicrm(CRM_DATABASE, size)
        migrate.upgrade(pg_url)
        pg, civicrm = create_engine(pg_url), crm_engine(crm_url)
        try:
            rss_before = _rss_mb("VmRSS")
            first = _measured(pg, lambda: mirror.refresh(pg, civicrm, [GROUP_ID]))
            second = _measured(pg, lambda: mirror.refresh(pg, civicrm, [GROUP_ID]))
            fetch = _measured(pg, lambda: _fetch(pg, simulator))
        finally:
            pg.dispose()
            civicrm.dispose()
    return Figures(
        size, (crm_seconds, simulator.seed_seconds), rss_before, first, second, fetch
    )


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
    assert fetched_all(figures) == size
    assert {t.table: t.rows for t in figures.first[0].tables}["civicrm_contact"] == size


def fetched_all(figures: Figures) -> int:
    return figures.fetch[0].members
