"""Benchmark: a full initial sync, then an incremental one, on Postgres + RabbitMQ + Redis.

Run with ``make bench`` (or ``pytest -m slow -s tests/benchmarks/test_sync_benchmark.py``).
Sizes come from MCSYNC_BENCH_SIZES (default ``100000``; e.g. ``100000,1000000``). Each size
gets its own database, a simulator process, a worker process per service (two for the
fetcher and the reconciler) and ``mcsync serve`` with the account's batch webhook registered
(as in production: results are processed when Mailchimp says a batch finished, not when the
poller next looks); it prints the time per stage, rows/s, Mailchimp requests by kind, peak
RSS per process, and a floor measured in the same run: paging every member out of the
simulator and COPYing it into Postgres, which no sync can beat.
"""

from __future__ import annotations

import io
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families
from rabbit_vhosts import isolated_rabbitmq
from server_checks import require_server

from common.db import crm, migrate, runs
from common.db.engine import create_engine
from common.settings import Settings
from common.vocabulary import GroupStatus
from mcsync.demo import SUBSCRIPTION_GROUP, seed_both_sides
from mcsync.demo_data import plan_demo
from mcsync.sync import SyncRequest, fetch_and_reconcile

pytestmark = [pytest.mark.slow, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
REDIS = "redis://127.0.0.1:6379/0"
SIZES = [int(s) for s in os.environ.get("MCSYNC_BENCH_SIZES", "100000").split(",")]
# How often --wait's progress query runs: it counts the audience's todo rows, so polling it
# five times a second took most of a core from the sync it was watching.
FOLLOW_POLL = 1.0
# Fixed work timed before and after the runs: this machine's speed varies with its neighbours
# (the same 100k sync took 26 s, then 40 s an hour later), so runs are compared alongside it.
CALIBRATION_ROWS = 500_000
CALIBRATION_QUERY = "SELECT count(*) FROM generate_series(1, 3000000)"
FIELDS = "members.id,members.email_address,members.status,members.last_changed,total_items"


def _cpu_seconds(pid: int, reaped_children: bool = False) -> float:
    """User plus system CPU time of ``pid``; with ``reaped_children``, also of its children
    that have exited and been waited for (a Postgres backend's time moves there)."""
    fields = _stat_fields(Path(f"/proc/{pid}"))
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    if reaped_children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def _postgres_cpu_seconds(postmaster: int) -> float:
    """CPU time of the whole Postgres cluster: the postmaster, the backends it reaped, and
    the ones still running."""
    live = (
        int(p.name)
        for p in Path("/proc").iterdir()
        if p.name.isdigit() and _parent_pid(p) == postmaster
    )
    return _cpu_seconds(postmaster, reaped_children=True) + sum(map(_cpu_seconds_or_zero, live))


def _stat_fields(proc: Path) -> list[str]:
    """The fields of ``/proc/<pid>/stat`` after the command name (which may hold spaces)."""
    return (proc / "stat").read_text().rsplit(")", 1)[1].split()


def _parent_pid(proc: Path) -> int:
    try:
        return int(_stat_fields(proc)[1])
    except (FileNotFoundError, ProcessLookupError):
        return 0


def _cpu_seconds_or_zero(pid: int) -> float:
    try:
        return _cpu_seconds(pid)
    except (FileNotFoundError, ProcessLookupError):  # exited since it was listed
        return 0.0


def _postmaster_pid(engine: sa.Engine) -> int | None:
    """The Postgres server's process, when this user may read its pid file."""
    with engine.connect() as conn:
        data_directory = conn.execute(sa.text("SHOW data_directory")).scalar_one()
    try:
        return int((Path(data_directory) / "postmaster.pid").read_text().split()[0])
    except OSError:
        return None


def _cpu_by_process(processes: dict[str, list[int]], postmaster: int | None) -> dict[str, float]:
    seconds = {name: sum(map(_cpu_seconds, pids)) for name, pids in processes.items()}
    if postmaster is not None:
        seconds["postgres (all backends)"] = _postgres_cpu_seconds(postmaster)
    return seconds


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


@contextmanager
def _database(name: str) -> Iterator[str]:
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    migrate.upgrade(url)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


@contextmanager
def _process(*args: str, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        args, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, text=True
    )
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        if process.stdout:
            process.stdout.close()


def _wait_until_answering(url: str) -> None:
    """Up to ten seconds for a process just started to answer on ``url``."""
    for _ in range(100):
        try:
            requests.get(url, timeout=1)
            return
        except requests.ConnectionError:
            time.sleep(0.1)


@contextmanager
def _simulator(port: int) -> Iterator[tuple[subprocess.Popen[str], str]]:
    with _process(sys.executable, "-m", "sim.mailchimp", "--port", str(port)) as sim:
        base = f"http://127.0.0.1:{port}"
        _wait_until_answering(base + "/_sim/health")
        yield sim, base + "/3.0"


def _floor(engine: sa.Engine, api_url: str, api_key: str, list_id: str) -> float:
    """Page every member out and COPY it into Postgres: the least a sync must do."""
    started = time.perf_counter()
    session = requests.Session()
    session.auth = ("bench", api_key)
    with engine.connect() as conn:
        conn.execute(sa.text("CREATE TEMP TABLE floor (id text, email text, status text, lc text)"))
        raw = conn.connection.driver_connection
        assert raw is not None
        offset, total = 0, 1
        with raw.cursor() as cursor:
            while offset < total:
                page = session.get(
                    f"{api_url}/lists/{list_id}/members",
                    params={"count": 1000, "offset": offset, "fields": FIELDS},
                    timeout=60,
                ).json()
                total = page["total_items"]
                with cursor.copy("COPY floor FROM STDIN") as copy:
                    for m in page["members"]:
                        copy.write_row(
                            (m["id"], m["email_address"], m["status"], m["last_changed"])
                        )
                offset += 1000
        conn.commit()
    return time.perf_counter() - started


def _stage_times(engine: sa.Engine, list_id: str, since: datetime) -> list[tuple[str, float]]:
    with engine.connect() as conn:
        lines = [
            e for e in runs.read_log(conn, list_id) if datetime.fromisoformat(e["at"]) >= since
        ]
    times, previous = [], since
    for entry in lines:
        at = datetime.fromisoformat(entry["at"])
        times.append((entry["message"][:60], (at - previous).total_seconds()))
        previous = at
    return times


@dataclass(frozen=True)
class WalPosition:
    """How much the server has written to its write-ahead log, and checkpointed, so far."""

    wal_bytes: int
    checkpoints: int

    @classmethod
    def now(cls, engine: sa.Engine) -> WalPosition:
        with engine.connect() as conn:
            written, checkpoints = conn.execute(
                sa.text(
                    "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0'), "
                    "checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter"
                )
            ).one()
        return cls(int(written), int(checkpoints))

    def since(self, earlier: WalPosition) -> WalPosition:
        return WalPosition(
            self.wal_bytes - earlier.wal_bytes, self.checkpoints - earlier.checkpoints
        )


# The server settings that shape the figures most: WAL room and checkpoints decide how many
# full-page images a run writes, shared_buffers how much of a big audience stays in memory.
SERVER_SETTINGS = ("shared_buffers", "max_wal_size", "checkpoint_timeout", "work_mem")


def _server_settings(engine: sa.Engine) -> dict[str, str]:
    with engine.connect() as conn:
        return {
            name: conn.execute(sa.text(f"SHOW {name}")).scalar_one() for name in SERVER_SETTINGS
        }


@dataclass
class Figures:
    size: int
    floor: float
    initial: float
    incremental: float
    stages: list[tuple[str, float]]
    incremental_stages: list[tuple[str, float]]
    requests: dict[str, int]
    rss: dict[str, float]
    cpu: dict[str, float]
    wal: WalPosition  # written during the initial sync
    server_settings: dict[str, str]
    speed: tuple[MachineSpeed, MachineSpeed]  # before the floor, after the incremental sync
    metrics: dict[str, dict[str, float]]  # each process's /metrics after the initial sync


@dataclass(frozen=True)
class MachineSpeed:
    """Seconds this machine took for fixed work: building and formatting half a million small
    rows in Python (allocation-heavy, like a page or a chunk), and a query."""

    python: float
    postgres: float

    @classmethod
    def measure(cls, engine: sa.Engine) -> MachineSpeed:
        clock = time.perf_counter()
        total = 0
        for i in range(CALIBRATION_ROWS):
            total += len(repr({"id": i, "email": f"user{i}@example.org", "status": "subscribed"}))
        python = time.perf_counter() - clock
        with engine.connect() as conn:
            clock = time.perf_counter()
            conn.execute(sa.text(CALIBRATION_QUERY)).scalar_one()
            postgres = time.perf_counter() - clock
        return cls(python, postgres)


@contextmanager
def _serving(
    mcsync: str, port: int, env: dict[str, str], api_key: str
) -> Iterator[subprocess.Popen[str]]:
    """``mcsync serve`` on ``port``, with the account's batch webhook pointing at it."""
    base = f"http://127.0.0.1:{port}"
    # No schedule: the benchmark times the syncs it triggers, and no other.
    env = {**env, "MCSYNC_WEBHOOK_BASE_URL": base, "MCSYNC_SYNC_SCHEDULE": ""}
    with _process(mcsync, "serve", "--host", "127.0.0.1", "--port", str(port), env=env) as serve:
        _wait_until_answering(base + "/healthz")
        registered = subprocess.run(
            [mcsync, "updatewebhook", "--api-key", api_key, "--process", "add_batch_webhook"],
            cwd=ROOT,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            check=False,
        )
        assert registered.returncode == 0, registered.stderr
        yield serve


def _change_one_percent(engine: sa.Engine, sim_base: str, list_id: str, size: int) -> None:
    rng = random.Random(size)
    members = requests.get(f"{sim_base}/_sim/lists/{list_id}/members", timeout=300).json()
    subscribed = [m["email_address"] for m in members["members"] if m["status"] == "subscribed"]
    for email in rng.sample(subscribed, size // 200):
        requests.post(
            f"{sim_base}/_sim/lists/{list_id}/members/{email}/actions/unsubscribe",
            json={"source": "user"},
            timeout=30,
        )
    with engine.begin() as conn:
        group = conn.execute(
            sa.text("SELECT id FROM civicrm_group WHERE name = :n"), {"n": SUBSCRIPTION_GROUP[0]}
        ).scalar_one()
        added = (
            conn.execute(
                sa.text(
                    "SELECT contact_id FROM civicrm_group_contact "
                    "WHERE group_id = :g AND status = 'Added'"
                ),
                {"g": group},
            )
            .scalars()
            .all()
        )
        now = datetime.now(UTC)
        changes = [
            crm.MembershipChange(c, group, GroupStatus.REMOVED, now, method="Admin")
            for c in rng.sample(list(added), size // 200)
        ]
        crm.set_memberships(conn, changes)


def _bench(size: int, port: int) -> Figures:
    with _database(f"mcsync_bench_{size}") as url, _simulator(port) as (sim, api_url):
        engine = create_engine(url)
        postmaster = _postmaster_pid(engine)
        plan = plan_demo(size, seed=11)
        audience = seed_both_sides(engine, api_url, plan)
        with engine.connect() as conn:
            conn.execute(sa.text("ANALYZE"))
            conn.commit()
        speed_before = MachineSpeed.measure(engine)
        floor = _floor(engine, api_url, audience.api_key, audience.list_id)
        rabbitmq = isolated_rabbitmq("mcsync_bench")
        settings = Settings(
            database_url=url, broker_url=rabbitmq, redis_url=REDIS, mailchimp_api_url=api_url
        )
        env = {
            "MCSYNC_DATABASE_URL": url,
            "MCSYNC_BROKER_URL": rabbitmq,
            "MCSYNC_REDIS_URL": REDIS,
            "MCSYNC_MAILCHIMP_API_URL": api_url,
            "MCSYNC_LOG_LEVEL": "WARNING",
        }
        mcsync = str(ROOT / ".venv" / "bin" / "mcsync")

        def probes(offset: int) -> dict[str, str]:
            """The worker's environment, with its probes and metrics on a port of its own."""
            return {**env, "MCSYNC_METRICS_PORT": str(port + offset)}

        with (
            # Two fetchers and two reconcilers: parsing and merging a page, and deciding a
            # chunk, are Python-bound, so threads of one process queue for its GIL while
            # their SQL leaves a core idle.
            _process(mcsync, "worker", "fetcher", "--threads", "4", env=probes(2)) as fetcher,
            _process(mcsync, "worker", "fetcher", "--threads", "4", env=probes(3)) as fetcher2,
            _process(mcsync, "worker", "reconciler", "--threads", "2", env=probes(4)) as reconciler,
            _process(
                mcsync, "worker", "reconciler", "--threads", "2", env=probes(5)
            ) as reconciler2,
            _process(mcsync, "worker", "submitter", "--threads", "4", env=probes(6)) as submitter,
            _serving(mcsync, port + 1, env, audience.api_key) as serve,
        ):
            processes = {
                "fetchers": [fetcher.pid, fetcher2.pid],
                "reconcilers": [reconciler.pid, reconciler2.pid],
                "submitter": [submitter.pid],
                "webhooks (mcsync serve)": [serve.pid],
                "simulator": [sim.pid],
                "benchmark (follows the run)": [os.getpid()],
            }
            requests.delete(api_url.removesuffix("/3.0") + "/_sim/requests", timeout=10)
            cpu_before = _cpu_by_process(processes, postmaster)
            wal_before = WalPosition.now(engine)
            started, clock = datetime.now(UTC), time.perf_counter()
            fetch_and_reconcile(settings, SyncRequest(max_time=0), True, io.StringIO(), FOLLOW_POLL)
            initial = time.perf_counter() - clock
            wal = WalPosition.now(engine).since(wal_before)
            cpu = {
                name: seconds - cpu_before[name]
                for name, seconds in _cpu_by_process(processes, postmaster).items()
            }
            stages = _stage_times(engine, audience.list_id, started)
            counts = requests.get(api_url.removesuffix("/3.0") + "/_sim/requests", timeout=10)
            scraped = {
                name: _scrape(f"http://127.0.0.1:{port + offset}/metrics")
                for name, offset in METRICS_PORTS.items()
            }
            _change_one_percent(engine, api_url.removesuffix("/3.0"), audience.list_id, size)
            started, clock = datetime.now(UTC), time.perf_counter()
            fetch_and_reconcile(settings, SyncRequest(max_time=0), True, io.StringIO(), FOLLOW_POLL)
            incremental = time.perf_counter() - clock
            incremental_stages = _stage_times(engine, audience.list_id, started)
            speed_after = MachineSpeed.measure(engine)
            rss = {
                "fetcher": max(_peak_rss_mb(fetcher.pid), _peak_rss_mb(fetcher2.pid)),
                "reconciler": max(_peak_rss_mb(reconciler.pid), _peak_rss_mb(reconciler2.pid)),
                "submitter": _peak_rss_mb(submitter.pid),
                "simulator": _peak_rss_mb(sim.pid),
            }
        server_settings = _server_settings(engine)
        engine.dispose()
        return Figures(
            size,
            floor,
            initial,
            incremental,
            stages,
            incremental_stages,
            counts.json()["counts"],
            rss,
            cpu,
            wal,
            server_settings,
            (speed_before, speed_after),
            scraped,
        )


def _print_stages(stages: list[tuple[str, float]], total: float) -> None:
    for message, seconds in stages:
        print(f"  {seconds:7.1f} s  {message}")
    # The run is done when the results of its last batches are processed, after its log ends.
    print(f"  {total - sum(seconds for _, seconds in stages):7.1f} s  (the last batches' results)")


def _report(figures: Figures) -> None:
    print(f"\n=== full sync of {figures.size:,} members / CRM contacts ===")
    before, after = figures.speed
    print(
        "machine speed, fixed work before / after the runs: "
        f"Python rows {before.python:.2f} / {after.python:.2f} s, "
        f"Postgres query {before.postgres:.2f} / {after.postgres:.2f} s"
    )
    print(f"floor (page out + COPY into Postgres): {figures.floor:7.1f} s")
    print(
        f"initial sync:                          {figures.initial:7.1f} s "
        f"({figures.size / figures.initial:,.0f} rows/s)"
    )
    print(f"incremental sync after 1% changes:     {figures.incremental:7.1f} s")
    print("time per stage, initial sync (from the audience's status log):")
    _print_stages(figures.stages, figures.initial)
    print("time per stage, incremental sync:")
    _print_stages(figures.incremental_stages, figures.incremental)
    print("Mailchimp requests by kind (initial sync):")
    for kind, count in sorted(figures.requests.items()):
        print(f"  {count:7d}  {kind}")
    print(f"CPU time per process during the initial sync (the machine has {os.cpu_count()} cores):")
    for name, seconds in figures.cpu.items():
        print(f"  {seconds:7.1f} s  {name}")
    # The sync is CPU-bound: a run can be no shorter than its CPU time spread over every core.
    available = figures.initial * (os.cpu_count() or 1)
    used = sum(figures.cpu.values())
    print(
        f"  {used:7.1f} s  in all, of the {available:.1f} s the cores had ({used / available:.0%})"
    )
    print(
        f"Postgres during the initial sync: {figures.wal.wal_bytes / 2**20:,.0f} MB of WAL, "
        f"{figures.wal.checkpoints} checkpoints; settings: "
        + ", ".join(f"{name} {value}" for name, value in figures.server_settings.items())
    )
    print("peak RSS per process (MB):")
    for name, mb in figures.rss.items():
        print(f"  {mb:7.0f}  {name}")
    print("each process's /metrics after the initial sync (counters summed over their labels):")
    for name, samples in figures.metrics.items():
        shown = ", ".join(f"{metric} {value:,.0f}" for metric, value in sorted(samples.items()))
        print(f"  {name}: {shown}")


# Where each process serves /metrics: an offset from the benchmark's port (serve: its own).
METRICS_PORTS = {
    "fetcher": 2,
    "fetcher 2": 3,
    "reconciler": 4,
    "reconciler 2": 5,
    "submitter": 6,
    "mcsync serve": 1,
}
SHOWN_METRICS = (
    "mcsync_messages_total",
    "mcsync_mailchimp_requests_total",
    "mcsync_members_fetched_total",
    "mcsync_rows_decided_total",
    "mcsync_updates_queued_total",
    "mcsync_updates_submitted_total",
    "mcsync_update_results_total",
    "mcsync_open_batches",
    "mcsync_last_sync_duration_seconds",
)


def _scrape(url: str) -> dict[str, float]:
    """The metrics of ``SHOWN_METRICS`` a process serves, each summed over its labels."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(requests.get(url, timeout=10).text):
        for sample in family.samples:
            if sample.name in SHOWN_METRICS:
                found[sample.name] = found.get(sample.name, 0.0) + sample.value
    return found


@pytest.mark.parametrize("size", SIZES)
def test_full_then_incremental_sync_benchmark(size: int) -> None:
    for port in (5432, 5672, 6379):
        require_server("127.0.0.1", port)
    figures = _bench(size, 18000 + size % 1000)
    _report(figures)
    assert figures.initial > 0
