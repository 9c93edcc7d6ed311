"""A message that keeps failing is dead-lettered, and its audience's status log says so."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator

import dramatiq
import psycopg
import pytest
import sqlalchemy as sa
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import Retries

from common import logs
from common.actors import DeadLetterLog, declare
from common.db import runs
from common.limits import LocalConnectionLimiter
from common.mailchimp import MailchimpTransientError
from common.messages import CheckBatches, FetchPage, Message
from common.runtime import Runtime
from common.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture
def runtime(clean_tables: sa.Engine) -> Iterator[Runtime]:
    broker = StubBroker()
    broker.emit_after("process_boot")
    runtime = Runtime(Settings(), clean_tables, broker, LocalConnectionLimiter())
    broker.add_middleware(DeadLetterLog(runtime), before=Retries)
    yield runtime
    broker.close()


def _run_until_done(runtime: Runtime, queue: str, enqueue: Callable[[], None]) -> None:
    """Enqueue, then let a worker process the queue (retries included) until it is empty."""
    worker = dramatiq.Worker(runtime.broker, worker_timeout=50)
    worker.start()
    try:
        enqueue()
        runtime.broker.join(queue, fail_fast=False)
        worker.join()
    finally:
        worker.stop()


def _always_failing(message: FetchPage) -> list[Message]:
    raise ConnectionError(f"Mailchimp unreachable for page {message.offset}")


def test_a_message_that_keeps_failing_is_dead_lettered_and_logged(runtime: Runtime) -> None:
    declare(runtime, FetchPage, _always_failing, max_retries=1, min_backoff_ms=1, max_backoff_ms=2)
    page = FetchPage(list_id="a1b2c3d4e5", run_id="run-1", offset=3000)
    _run_until_done(runtime, FetchPage.queue, lambda: runtime.send(page))

    assert len(runtime.broker.dead_letters) == 1
    with runtime.engine.connect() as conn:
        (line,) = [entry["message"] for entry in runs.read_log(conn, "a1b2c3d4e5")]
    assert line.startswith("fetch_page gave up after 2 tries")
    assert "Mailchimp unreachable for page 3000" in line


def test_a_malformed_message_is_not_retried(runtime: Runtime) -> None:
    handled: list[FetchPage] = []

    def record(message: FetchPage) -> list[Message]:
        handled.append(message)
        return []

    declare(runtime, FetchPage, record, max_retries=5)
    malformed = dramatiq.Message(
        queue_name=FetchPage.queue,
        actor_name=FetchPage.actor,
        args=(),
        kwargs={"list_id": "a1b2c3d4e5", "offset": "not a number"},
        options={},
    )
    _run_until_done(runtime, FetchPage.queue, lambda: runtime.broker.enqueue(malformed))

    assert handled == []
    assert len(runtime.broker.dead_letters) == 1


def test_mailchimp_still_failing_is_retried_with_a_warning_and_dead_lettered_with_its_reason(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    tries: list[int] = []

    def mailchimp_down(message: FetchPage) -> list[Message]:
        tries.append(message.offset)
        raise MailchimpTransientError("GET /lists/a1b2c3d4e5/members: 503 Service Unavailable")

    declare(runtime, FetchPage, mailchimp_down, max_retries=2, min_backoff_ms=1, max_backoff_ms=2)
    page = FetchPage(list_id="a1b2c3d4e5", run_id="run-1", offset=0)
    _run_until_done(runtime, FetchPage.queue, lambda: runtime.send(page))

    assert tries == [0, 0, 0]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("503 Service Unavailable; the message is retried later" in w for w in warnings) == 3
    # No traceback per try: the only ERROR is the dead-lettering, which names the cause.
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.name for r in errors] == ["common.actors"]
    with runtime.engine.connect() as conn:
        (line,) = [entry["message"] for entry in runs.read_log(conn, "a1b2c3d4e5")]
    assert line == (
        "fetch_page gave up after 3 tries: MailchimpTransientError: "
        "GET /lists/a1b2c3d4e5/members: 503 Service Unavailable"
    )


def _database_down() -> sa.exc.OperationalError:
    refused = psycopg.OperationalError("connection failed: Connection refused")
    return sa.exc.OperationalError("SELECT 1", {}, refused)


def test_a_poll_during_a_database_outage_is_dropped_with_one_warning_per_outage(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    database = {"down": True}

    def check(message: CheckBatches) -> list[Message]:
        if database["down"]:
            raise _database_down()
        return []

    declare(runtime, CheckBatches, check, max_retries=0, repeated=True)
    caplog.set_level(logging.INFO, logger="common.actors")
    for _ in range(3):  # three ticks of the poller while Postgres is away
        _run_until_done(runtime, CheckBatches.queue, lambda: runtime.send(CheckBatches()))
    database["down"] = False
    _run_until_done(runtime, CheckBatches.queue, lambda: runtime.send(CheckBatches()))

    assert runtime.broker.dead_letters == []
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "common.actors"]
    assert [level for level, _ in lines] == ["WARNING", "INFO"]
    assert lines[0][1].startswith("check_batches failed: the database does not answer")
    assert lines[1][1].startswith("check_batches works again, after 3 failed tries")


def test_a_message_meeting_a_database_outage_is_retried_with_a_warning_not_a_traceback(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    tries: list[int] = []

    def fetch(message: FetchPage) -> list[Message]:
        tries.append(message.offset)
        if len(tries) < 3:
            raise _database_down()
        return []

    declare(runtime, FetchPage, fetch, max_retries=5, min_backoff_ms=1, max_backoff_ms=2)
    page = FetchPage(list_id="a1b2c3d4e5", run_id="run-1", offset=0)
    _run_until_done(runtime, FetchPage.queue, lambda: runtime.send(page))

    assert tries == [0, 0, 0] and runtime.broker.dead_letters == []
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert all(r.exc_info in (None, False) for r in caplog.records if r.name == "common.actors")


def test_a_handlers_log_lines_carry_its_messages_audience_run_and_stage(
    runtime: Runtime,
) -> None:
    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.addFilter(logs.BoundFields())
    handler.setFormatter(logs.JsonLines())
    logging.getLogger("test.handler").addHandler(handler)

    def fetch(message: FetchPage) -> list[Message]:
        logging.getLogger("test.handler").warning("page at %d fetched", message.offset)
        return []

    declare(runtime, FetchPage, fetch)
    page = FetchPage(list_id="a1b2c3d4e5", run_id="run-1", offset=2000)
    _run_until_done(runtime, FetchPage.queue, lambda: runtime.send(page))
    logging.getLogger("test.handler").removeHandler(handler)

    entry = json.loads(lines.getvalue())
    assert (entry["message"], entry["audience_id"], entry["run_id"], entry["stage"]) == (
        "page at 2000 fetched",
        "a1b2c3d4e5",
        "run-1",
        "readyToFetch",
    )
