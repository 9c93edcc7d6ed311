"""``mcsync fetchandreconcile --wait`` ends when every run it follows has completed or parked,
and says which audience did not complete and why."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from pipeline_support import World, mixed_world

from common.db import config, crm
from mcsync import cli

pytestmark = pytest.mark.integration

UNKNOWN_AUDIENCE = "0000000000"


@pytest.fixture
def world(clean_tables: sa.Engine) -> Iterator[World]:
    with mixed_world(clean_tables, 60) as seeded:
        yield seeded


@pytest.fixture
def environment(world: World, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCSYNC_DATABASE_URL", database_url)
    monkeypatch.setenv("MCSYNC_MAILCHIMP_API_URL", world.simulator.api_url)
    monkeypatch.delenv("MCSYNC_BROKER_URL", raising=False)


def test_one_audience_mailchimp_refuses_does_not_hold_the_others_and_is_named(
    world: World,
    clean_tables: sa.Engine,
    environment: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with clean_tables.begin() as conn:  # a second audience, unknown to Mailchimp
        group = crm.create_group(conn, "other", "Other")
        account = conn.execute(sa.text("SELECT id FROM mailchimpsync_account")).scalar_one()
        config.add_connection(conn, account, UNKNOWN_AUDIENCE, group, {})

    code = cli.main(["fetchandreconcile", "--max-time", "0", "--wait", "--timeout", "120"])

    out, err = capsys.readouterr()
    assert code == 1
    assert f"[{world.audience.list_id}] CRM: " in out and "Both sides agree." in out
    said = [line for line in err.splitlines() if line.startswith("mcsync ")]  # not log lines
    assert said == [
        f"mcsync fetchandreconcile: audience {UNKNOWN_AUDIENCE} did not complete: "
        "Mailchimp refused to count the members: 404 Resource Not Found: "
        f"The requested resource could not be found."
    ]


def test_a_wait_that_runs_out_of_time_says_the_runs_go_on(
    environment: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MCSYNC_LOG_LEVEL", "WARNING")

    code = cli.main(["fetchandreconcile", "--max-time", "0", "--timeout", "1"])

    err = capsys.readouterr().err
    assert code == 1
    assert "still running after 1 s" in err and "the next fetchandreconcile resumes" in err
