"""Benchmark: audience-webhook intake on this machine's Postgres and RabbitMQ.

Run with ``pytest -m slow -s tests/benchmarks/test_webhook_intake.py``. The webhooks app runs
in its own process under uvicorn (one worker, as ``mcsync serve`` runs it), storing each
event in the test database and publishing ``SyncMember`` to a RabbitMQ vhost of its own
(publisher confirms on). Concurrent httpx clients post MCSYNC_BENCH_WEBHOOKS (default 5000)
subscribe events, once per concurrency in MCSYNC_BENCH_WEBHOOK_CLIENTS (default ``10,50``);
it prints events/s and latency percentiles for each. Nothing is asserted on time.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pika
import pytest
import sqlalchemy as sa
from rabbit_vhosts import isolated_rabbitmq
from server_checks import free_port

from common.db.config import add_account, add_connection, add_webhook_secret
from common.db.schema import webhook_event
from common.messages import RECONCILER
from services.webhooks.app import AUDIENCE_WEBHOOK_PATH

pytestmark = [pytest.mark.slow, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
EVENTS = int(os.environ.get("MCSYNC_BENCH_WEBHOOKS", "5000"))
CLIENTS = [int(c) for c in os.environ.get("MCSYNC_BENCH_WEBHOOK_CLIENTS", "10,50").split(",")]
WARM_UP = 200
VHOST = "mcsync_bench_webhooks"
LIST_ID, SECRET = "ec4689c266", "bench-secret-0123456789"
SERVER = """
import sys
from functools import partial

import uvicorn
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from common.broker import send
from common.db.engine import create_engine
from services.webhooks.app import Deps, create_app

database_url, broker_url, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
broker = RabbitmqBroker(url=broker_url, confirm_delivery=True)
deps = Deps(engine=create_engine(database_url), send=partial(send, broker))
uvicorn.run(create_app(deps), host="127.0.0.1", port=port, log_level="warning", access_log=False)
"""


def _synced_audience(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        account_id = add_account(conn, "Bench Org", "k" * 32)
        add_webhook_secret(conn, account_id, SECRET)
        add_connection(conn, account_id, LIST_ID, subscription_group_id=1)


@contextmanager
def _served(database_url: str, broker_url: str) -> Iterator[str]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, database_url, broker_url, str(port)], cwd=ROOT
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while not _answers(base + "/healthz"):
            assert server.poll() is None and time.monotonic() < deadline, "the app did not start"
            time.sleep(0.1)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _body(n: int) -> str:
    return urlencode(
        {
            "type": "subscribe",
            "fired_at": "2026-11-23 12:00:00",
            "data[id]": f"{n:010x}",
            "data[list_id]": LIST_ID,
            "data[email]": f"person{n}@example.com",
            "data[email_type]": "html",
            "data[merges][EMAIL]": f"person{n}@example.com",
            "data[merges][FNAME]": "Person",
            "data[merges][LNAME]": str(n),
        }
    )


async def _fire(url: str, first: int, count: int, clients: int) -> Fired:
    """Post ``count`` events from ``clients`` concurrent clients, each on its own connection
    (one shared httpx pool is slower than the app at this concurrency)."""
    fired = Fired()
    pending = iter(range(first, first + count))
    headers = {"content-type": "application/x-www-form-urlencoded"}

    async def client() -> None:
        async with httpx.AsyncClient(timeout=30) as http:
            for n in pending:
                started = time.perf_counter()
                try:
                    reply = await http.post(url, content=_body(n), headers=headers)
                except httpx.HTTPError as error:  # counted, so that the figures still print
                    fired.errors.append(repr(error))
                    continue
                fired.latencies.append(time.perf_counter() - started)
                fired.statuses.append(reply.status_code)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    fired.seconds = time.perf_counter() - started
    return fired


@dataclass
class Fired:
    latencies: list[float] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def report(self, clients: int) -> str:
        ms = [1000 * s for s in self.latencies]
        return (
            f"  {clients:3d} clients: {len(ms) / self.seconds:,.0f} events/s"
            f" ({len(ms)} in {self.seconds:.2f} s); latency ms: p50 {_percentile(ms, 0.5):.1f}"
            f"  p90 {_percentile(ms, 0.9):.1f}  p99 {_percentile(ms, 0.99):.1f}"
            f"  max {max(ms):.1f}\n"
            f"               answers {dict(Counter(self.statuses))}"
            f" errors {dict(Counter(self.errors))}"
        )


def _queued(broker_url: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        return int(
            connection.channel().queue_declare(RECONCILER, passive=True).method.message_count
        )
    finally:
        connection.close()


def _published(engine: sa.Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(sa.func.count(), sa.func.count(webhook_event.c.published_at))
        ).one()
    return int(rows[0]), int(rows[1])


def _percentile(values: list[float], share: float) -> float:
    return statistics.quantiles(values, n=1000)[round(share * 1000) - 1]


def test_audience_webhook_intake(clean_tables: sa.Engine, database_url: str) -> None:
    broker_url = isolated_rabbitmq(VHOST)
    _synced_audience(clean_tables)
    runs: list[tuple[int, Fired]] = []
    with _served(database_url, broker_url) as base:
        url = f"{base}{AUDIENCE_WEBHOOK_PATH}?secret={SECRET}"
        asyncio.run(_fire(url, 0, WARM_UP, CLIENTS[0]))
        for n, clients in enumerate(CLIENTS):
            runs.append((clients, asyncio.run(_fire(url, WARM_UP + n * EVENTS, EVENTS, clients))))
        total = WARM_UP + len(CLIENTS) * EVENTS
        deadline = time.monotonic() + 30
        while _published(clean_tables)[1] < total and time.monotonic() < deadline:
            time.sleep(0.1)
        queued = _queued(broker_url)
    stored, published = _published(clean_tables)
    isolated_rabbitmq(VHOST)  # empty the vhost's queues again
    print(
        f"\naudience webhook intake: {EVENTS} subscribe events per run, {os.cpu_count()} CPUs"
        " (shared with the clients), one uvicorn worker, Postgres + RabbitMQ with confirms:"
    )
    for clients, fired in runs:
        print(fired.report(clients))
    print(f"  inbox rows {stored}, published {published}, SyncMember queued {queued}")
    assert all(fired.statuses == [200] * EVENTS for _, fired in runs)
    assert stored == published == queued == total
