"""Liveness, readiness and metrics, as Kubernetes and Prometheus ask for them."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from asgi_client import TestClient
from dramatiq.brokers.stub import StubBroker

from common.db import config, crm
from common.db.engine import create_engine
from common.db.migrate import head
from common.limits import LocalConnectionLimiter
from common.runtime import Runtime
from common.settings import Settings
from mcsync import workers
from mcsync.probes import ProbeServer
from mcsync.serve import build_app

pytestmark = pytest.mark.integration

LIST_ID = "a1b2c3d4e5"


def _runtime(engine: sa.Engine, **settings: str) -> Runtime:
    return Runtime(Settings(**settings), engine, StubBroker(), LocalConnectionLimiter(10))


def _audience_with_an_open_batch(engine: sa.Engine, age: timedelta) -> None:
    with engine.begin() as conn:
        group = crm.create_group(conn, "n", "N")
        config.add_connection(
            conn, config.add_account(conn, "A", "0" * 32 + "-us1"), LIST_ID, group, {}
        )
        conn.execute(
            sa.text(
                "INSERT INTO civicrm_mailchimpsync_batch (mailchimp_list_id, mailchimp_batch_id, "
                "status, submitted_at) VALUES (:l, '0123456789', 'started', :at)"
            ),
            {"l": LIST_ID, "at": datetime.now(UTC) - age},
        )


def test_the_web_service_is_live_ready_and_shows_each_audiences_figures(
    clean_tables: sa.Engine,
) -> None:
    _audience_with_an_open_batch(clean_tables, timedelta(minutes=10))

    with TestClient(build_app(_runtime(clean_tables))) as served:
        live, ready, metrics = (served.get(p) for p in ("/livez", "/readyz", "/metrics"))

    assert (live.status_code, ready.status_code, ready.json()) == (200, 200, {"ok": True})
    text = metrics.text
    assert f'mcsync_open_batches{{audience="{LIST_ID}"}} 1.0' in text
    age = next(
        line for line in text.splitlines() if line.startswith("mcsync_oldest_open_batch_age")
    )
    assert 590 < float(age.rsplit(" ", 1)[1]) < 900
    assert "# TYPE mcsync_messages_total counter" in text


def test_a_database_that_does_not_answer_makes_the_web_service_not_ready(
    clean_tables: sa.Engine,
) -> None:
    nowhere = create_engine("postgresql+psycopg://sync:pw@127.0.0.1:1/none")

    with TestClient(build_app(_runtime(nowhere))) as served:
        ready = served.get("/readyz")

    assert ready.status_code == 503
    (problem,) = ready.json()["problems"]
    assert problem.startswith("the database at postgresql+psycopg://sync:***@127.0.0.1:1/none:")
    assert "does not answer" in problem


def _get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_a_workers_probes_on_a_port_of_their_own() -> None:
    problems: list[str] = []
    server = ProbeServer("127.0.0.1", 0, lambda: list(problems))
    server.start()
    try:
        assert _get(server.port, "/livez")[0] == 200
        assert _get(server.port, "/readyz") == (200, b'{"ok": true}')
        problems.append("the broker at amqp://guest:***@rabbit:5672/ does not answer")
        status, body = _get(server.port, "/readyz")
        assert (status, json.loads(body)["problems"]) == (503, problems)
        assert b"mcsync_mailchimp_requests_total" in _get(server.port, "/metrics")[1]
    finally:
        server.stop()


def test_a_worker_waits_for_the_migrations_not_ready_meanwhile(
    database_url: str, test_run_lock: None, clean_tables: sa.Engine
) -> None:
    with clean_tables.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0011_batch_poll_times'"))
    running = workers.build(Settings(database_url=database_url), ["submitter"])
    stopping = threading.Event()
    try:
        (problem,) = running.problems()
        assert "is at revision 0011_batch_poll_times, the code needs" in problem
        waiter = threading.Thread(target=workers._schema_current, args=(running, stopping))
        waiter.start()
        waiter.join(0.5)
        assert waiter.is_alive()  # not consuming
        stopping.set()
        waiter.join(15)
        assert not waiter.is_alive()
    finally:
        with clean_tables.begin() as conn:
            conn.execute(sa.text("UPDATE alembic_version SET version_num = :v"), {"v": head()})
        running.stop()
