"""Periodic work outlives its failures: tried again with backoff, logged once per outage."""

from __future__ import annotations

import logging
import threading
import time

import pytest
import redis.exceptions

from common.periodic import Periodic


class Flaky:
    """Work that fails while ``down`` is set, counting its tries."""

    def __init__(self) -> None:
        self.down = True
        self.tries = 0
        self.worked = threading.Event()

    def __call__(self) -> None:
        self.tries += 1
        if self.down:
            raise redis.exceptions.ConnectionError("Connection refused")
        self.worked.set()


def test_an_outage_is_logged_once_and_the_work_goes_on_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    work = Flaky()
    periodic = Periodic("poller", work, every_seconds=0.01, max_backoff_seconds=0.02, at_once=True)
    caplog.set_level(logging.INFO, logger="common.periodic")
    periodic.start()
    try:
        deadline = time.monotonic() + 5
        while work.tries < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not periodic.healthy
        work.down = False
        assert work.worked.wait(5)
        time.sleep(0.05)
        assert periodic.healthy
    finally:
        periodic.stop()

    messages = [(r.levelname, r.getMessage()) for r in caplog.records]
    warnings = [m for level, m in messages if level == "WARNING"]
    assert warnings == [
        "poller failed: Redis does not answer (Connection refused); "
        "trying again, logged again once it works"
    ]
    assert any(m.startswith("poller works again, after ") for level, m in messages)
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []  # an outage: no traceback


def test_a_bug_keeps_its_traceback_and_does_not_end_the_thread(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[int] = []

    def buggy() -> None:
        calls.append(1)
        raise KeyError("oops")

    periodic = Periodic("poller", buggy, every_seconds=0.01, max_backoff_seconds=0.01, at_once=True)
    periodic.start()
    time.sleep(0.1)
    periodic.stop()

    assert len(calls) > 2
    (record,) = [r for r in caplog.records if r.levelname == "WARNING"]
    assert record.exc_info is not None


def test_the_pause_doubles_after_each_failure_up_to_the_cap() -> None:
    periodic = Periodic("poller", lambda: None, every_seconds=15, max_backoff_seconds=60)
    pauses = []
    for failures in range(5):
        periodic.failure_log.failures = failures
        pauses.append(periodic.pause())
    assert pauses == [15, 15, 30, 60, 60]


def test_a_long_period_still_stops_at_once() -> None:
    periodic = Periodic("poller", lambda: None, every_seconds=60)
    periodic.start()
    started = time.monotonic()
    periodic.stop()
    assert time.monotonic() - started < 1
