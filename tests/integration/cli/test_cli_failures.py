"""The command line meets a server that does not answer, or a database not migrated: one
line naming what and where (the password masked), exit code 2, never a traceback, never a
password."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from scratch_databases import scratch_database

from mcsync import cli

pytestmark = pytest.mark.integration

PASSWORD = "hunter2-sEcReT"
SCRATCH = "mcsync_cli_unmigrated"


def _run(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture, *argv: str
) -> tuple[int, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert PASSWORD not in out + err + logged
    assert "Traceback" not in err
    return code, err


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch, database_url: str) -> pytest.MonkeyPatch:
    for name in ("MCSYNC_BROKER_URL", "MCSYNC_REDIS_URL", "MCSYNC_MAILCHIMP_API_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MCSYNC_DATABASE_URL", database_url)
    return monkeypatch


def test_a_database_that_does_not_answer_is_one_line_naming_it(
    environment: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    environment.setenv("MCSYNC_DATABASE_URL", f"postgresql://sync:{PASSWORD}@127.0.0.1:1/sync")

    code, err = _run(capsys, caplog, "getstatus")

    assert code == 2
    assert err.startswith(
        "mcsync: the database at postgresql://sync:***@127.0.0.1:1/sync does not answer"
    )
    assert len(err.strip().splitlines()) == 1


def test_a_broker_that_does_not_answer_is_one_line_naming_it(
    environment: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    clean_tables: sa.Engine,
) -> None:
    environment.setenv("MCSYNC_BROKER_URL", f"amqp://guest:{PASSWORD}@127.0.0.1:1/")
    with clean_tables.begin() as conn:  # something to sync
        conn.execute(sa.text("INSERT INTO civicrm_group (name, title) VALUES ('n', 'N')"))
        conn.execute(
            sa.text("INSERT INTO mailchimpsync_account (name, api_key) VALUES ('A', :k)"),
            {"k": "0" * 32 + "-us1"},
        )
        conn.execute(
            sa.text(
                "INSERT INTO mailchimpsync_connection (account_id, mailchimp_list_id, "
                "subscription_group_id) SELECT a.id, 'a1b2c3d4e5', g.id "
                "FROM mailchimpsync_account a, civicrm_group g"
            )
        )

    code, err = _run(capsys, caplog, "fetchandreconcile")

    assert code == 2
    assert err.startswith("mcsync: the broker at amqp://guest:***@127.0.0.1:1/ does not answer")
    assert len(err.strip().splitlines()) == 1
    assert [r.name for r in caplog.records if r.levelno >= logging.ERROR] == []  # not pika's


@pytest.fixture
def unmigrated_url(database_url: str, test_run_lock: None) -> Iterator[str]:
    with scratch_database(database_url, SCRATCH) as url:
        yield url


def test_a_database_not_migrated_says_to_migrate(
    environment: pytest.MonkeyPatch,
    unmigrated_url: str,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    environment.setenv("MCSYNC_DATABASE_URL", unmigrated_url)

    code, err = _run(capsys, caplog, "getstatus")

    assert code == 2
    assert "is not migrated" in err and "mcsync migrate" in err
    assert len(err.strip().splitlines()) == 1


def test_a_malformed_url_is_refused_without_showing_its_password(
    environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    environment.setenv("MCSYNC_DATABASE_URL", f"mysql://civicrm:{PASSWORD}@crm-db/civicrm")

    with pytest.raises(SystemExit) as exited:
        cli.main(["getstatus"])

    err = capsys.readouterr().err
    assert exited.value.code == 2
    assert "MCSYNC_DATABASE_URL" in err and PASSWORD not in err
