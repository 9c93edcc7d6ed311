"""An outage is told from a bug by the error, whatever wraps it."""

from __future__ import annotations

import dramatiq.errors
import psycopg
import pytest
import redis.exceptions
import sqlalchemy as sa
import sqlalchemy.exc

from common.outages import BROKER, DATABASE, REDIS, outage


def _database_error(sqlstate: str | None) -> sqlalchemy.exc.OperationalError:
    original = psycopg.OperationalError("server closed the connection unexpectedly")
    if sqlstate is not None:
        original = psycopg.errors.lookup(sqlstate)("refused")
    return sqlalchemy.exc.OperationalError("SELECT 1", {}, original)


@pytest.mark.parametrize(
    ("error", "what"),
    [
        (_database_error(None), DATABASE),
        (_database_error("57P01"), DATABASE),  # the server was shut down
        (_database_error("08006"), DATABASE),
        (_database_error("40P01"), None),  # a deadlock is no outage
        (sa.exc.ProgrammingError("SELECT x", {}, Exception("no such column")), None),
        (dramatiq.errors.ConnectionClosed(Exception("gone")), BROKER),
        (redis.exceptions.ConnectionError("refused"), REDIS),
        (ValueError("a bug"), None),
    ],
)
def test_what_does_not_answer(error: BaseException, what: str | None) -> None:
    assert outage(error) == what


def test_an_outage_is_found_behind_the_error_it_caused() -> None:
    try:
        try:
            raise redis.exceptions.ConnectionError("refused")
        except redis.exceptions.ConnectionError as cause:
            raise RuntimeError("releasing the slot failed") from cause
    except RuntimeError as error:
        assert outage(error) == REDIS
