"""JSON log lines carry the audience, run and stage of the message being handled."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from common import logs
from common.settings import Settings


def _record(message: str, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise KeyError("oops")
        except KeyError:
            exc_info = sys.exc_info()
    record = logging.LogRecord("svc", logging.WARNING, __file__, 1, message, (), exc_info)
    logs.BoundFields().filter(record)
    return record


def test_a_json_line_carries_the_bound_audience_run_and_stage() -> None:
    with logs.bound(audience_id="a1b2c3d4e5", run_id="run-1", stage="readyToFetch"):
        line = logs.JsonLines().format(_record("page 3 fetched"))

    entry = json.loads(line)
    assert "\n" not in line
    assert entry | {"time": "t"} == {
        "time": "t",
        "level": "WARNING",
        "logger": "svc",
        "message": "page 3 fetched",
        "audience_id": "a1b2c3d4e5",
        "run_id": "run-1",
        "stage": "readyToFetch",
    }


def test_outside_a_message_nothing_is_bound_and_a_bug_keeps_its_traceback() -> None:
    entry = json.loads(logs.JsonLines().format(_record("boom", exc=True)))

    assert not {"audience_id", "run_id", "stage"} & set(entry)
    assert "KeyError: 'oops'" in entry["exception"]


@pytest.mark.parametrize("value", ["json", "JSON"])
def test_the_format_is_chosen_by_mcsync_log_format(value: str) -> None:
    assert Settings.from_env({"MCSYNC_LOG_FORMAT": value}).log_format == "json"
    assert Settings.from_env({}).log_format == "text"
