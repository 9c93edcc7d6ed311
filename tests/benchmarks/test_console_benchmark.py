"""Benchmark: how long the console's pages take on a large audience, beside the admin action
each page runs.

Run with ``pytest -m slow -s tests/benchmarks/test_console_benchmark.py``. One connection
whose audience has MCSYNC_BENCH_CONSOLE_SIZE members (default 1,000,000), seeded in SQL: a
contact, a primary email, a subscription group membership and a history row each, a tenth of
the rows failed with one of three reasons. Each page is asked for five times in process
(TestClient), and the median is printed beside the median of its action alone (the part
that is SQL) and their ratio. Nothing is asserted on time.
"""

from __future__ import annotations

import os
import re
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from asgi_client import TestClient
from fastapi import FastAPI

from common.db import config, crm, stats
from common.settings import Settings
from services.admin import registry
from services.admin.console import app as console
from services.admin.context import AdminContext
from services.admin.params import parse

pytestmark = [pytest.mark.slow, pytest.mark.integration]

SIZE = int(os.environ.get("MCSYNC_BENCH_CONSOLE_SIZE", "1000000"))
TOKEN = "bench-console-token-0123456789"
LIST_ID = "b3nch0l1st"
ROUNDS = 5

SEED = [
    """
    INSERT INTO civicrm_contact (id, first_name, last_name, source)
    SELECT n, 'First' || n, 'Last' || n, 'bench' FROM generate_series(1, :size) AS n
    """,
    """
    INSERT INTO civicrm_email (id, contact_id, email, is_primary, is_bulkmail)
    SELECT n, n, 'person' || n || '@example.org', true, true FROM generate_series(1, :size) AS n
    """,
    """
    INSERT INTO civicrm_group_contact (group_id, contact_id, status)
    SELECT :group_id, n, CASE WHEN n % 7 = 0 THEN 'Removed' ELSE 'Added' END
    FROM generate_series(1, :size) AS n
    """,
    """
    INSERT INTO civicrm_subscription_history (contact_id, group_id, date, method, status)
    SELECT n, :group_id, now() - interval '1 day', 'Admin', 'Added'
    FROM generate_series(1, :size) AS n
    """,
    """
    INSERT INTO civicrm_mailchimpsync_cache (mailchimp_list_id, mailchimp_member_id,
        mailchimp_email, mailchimp_status, mailchimp_updated, civicrm_contact_id, sync_status,
        fail_reason)
    SELECT :list_id, md5(n::text), 'person' || n || '@example.org',
        CASE WHEN n % 10 = 0 THEN 'cleaned' ELSE 'subscribed' END, now(), n,
        CASE WHEN n % 10 = 0 THEN 'fail' ELSE 'ok' END,
        CASE WHEN n % 10 = 0 THEN 'reason ' || (n % 3) END
    FROM generate_series(1, :size) AS n
    """,
]


def test_console_pages_on_a_large_audience(clean_tables: sa.Engine) -> None:
    _seed(clean_tables)
    ctx = AdminContext(
        settings=Settings(admin_token=TOKEN),
        engine=clean_tables,
        mailchimp=_no_mailchimp,
        send=lambda *messages: None,
        clock=lambda: datetime.now(UTC),
    )
    app = FastAPI()
    console.mount(app, ctx)
    with TestClient(app) as client:
        client.post("/signin", data={"token": TOKEN})
        row = re.search(r'href="/cache/(\d+)"', client.get("/cache?sync_status=fail").text)
        assert row is not None
        pages: list[tuple[str, str, dict[str, Any]]] = [
            ("/", "getstatus", {}),
            ("/status/live", "getstatus", {"stats": False}),
            ("/cache", "MailchimpsyncCache.get", {}),
            (
                "/cache?mailchimp_email=person777%40example.org",
                "MailchimpsyncCache.get",
                {"mailchimp_email": "person777@example.org"},
            ),
            (
                "/cache?sync_status=fail&page=100",
                "MailchimpsyncCache.get",
                {"sync_status": "fail", "offset": 2475},
            ),
            (
                "/cache?civicrm_status=Removed",
                "MailchimpsyncCache.get",
                {"civicrm_status": "Removed"},
            ),
            (
                f"/cache/{row.group(1)}",
                "MailchimpsyncCache.get",
                {"id": row.group(1), "troubleshoot": True},
            ),
        ]
        print(f"\nconsole pages, audience of {SIZE:,} members (median of {ROUNDS})")
        print(f"{'page':<48} {'page s':>8} {'action s':>9} {'ratio':>6}")
        for path, action, values in pages:
            page = _median(lambda p=path: _ok(client.get(p)))
            alone = _median(lambda a=action, v=values: _run(ctx, a, v))
            print(f"{path:<48} {page:>8.3f} {alone:>9.3f} {page / alone:>6.2f}")
    _status_statements(clean_tables)


def _status_statements(engine: sa.Engine) -> None:
    """The two statements of the Status page that read the whole audience, each alone."""
    with engine.connect() as conn:
        [connection] = config.load_connections(conn)
        counts = _median(lambda: stats.connection_stats(conn, connection))
        reasons = _median(lambda: stats.fail_reasons(conn, LIST_ID))
    print(f"of /: the statistics {counts:.3f} s, the fail reasons {reasons:.3f} s")


def _seed(engine: sa.Engine) -> None:
    started = time.monotonic()
    with engine.begin() as conn:
        group = crm.create_group(conn, "bench", "Bench")
        account = config.add_account(conn, "Bench", "0" * 32 + "-us1")
        config.add_connection(conn, account, LIST_ID, group, {})
        for statement in SEED:
            conn.execute(sa.text(statement), {"size": SIZE, "group_id": group, "list_id": LIST_ID})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE"))
    print(f"\nseeded {SIZE:,} members in {time.monotonic() - started:.1f} s")


def _median(work: Callable[[], object]) -> float:
    times = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _ok(reply: Any) -> None:
    assert reply.status_code == 200, reply.text[:500]


def _run(ctx: AdminContext, name: str, values: dict[str, Any]) -> None:
    action = registry.ACTIONS[name]
    action.run(ctx, parse(action.params, values))


def _no_mailchimp(api_key: str) -> Any:
    raise AssertionError("the console's pages benchmarked here never call Mailchimp")
