"""``mcsync <action>`` end to end on Postgres: JSON on stdout, refusals on stderr with exit 2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from admin_support import (
    API_KEY,
    LIST_A,
    add_row,
    config_text,
    connection_json,
    make_contact,
    make_groups,
    snapshot,
)

from mcsync import cli

pytestmark = pytest.mark.integration


@pytest.fixture
def mcsync(
    clean_tables: sa.Engine,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Any:
    """Run ``mcsync`` on the test database: (exit code, stdout as JSON or text, stderr)."""
    monkeypatch.setenv("MCSYNC_DATABASE_URL", database_url)
    monkeypatch.delenv("MCSYNC_BROKER_URL", raising=False)

    def run(*argv: str) -> tuple[int, Any, str]:
        code = cli.main(list(argv))
        out = capsys.readouterr()
        return code, json.loads(out.out) if code == 0 else out.out, out.err

    return run


def test_updateconfig_from_a_file_then_getstatus_and_cache_get(
    mcsync: Any, clean_tables: sa.Engine, tmp_path: Path
) -> None:
    group = make_groups(clean_tables, "news")["news"]
    config = tmp_path / "config.json"
    config.write_text(config_text(("Org", API_KEY, [connection_json(LIST_A, group)])))

    code, answer, _ = mcsync("updateconfig", "--config", f"@{config}")
    assert code == 0
    assert answer["config"]["accounts"][0]["connections"][0]["mailchimp_list_id"] == LIST_A

    contact = make_contact(clean_tables, "Ann", "ann@example.org")
    add_row(clean_tables, LIST_A, "ann@example.org", "subscribed", contact)
    assert mcsync("includeinsync", "--contact-id", str(contact))[1] == {"affected": 1}

    code, status, _ = mcsync("getstatus")
    assert status["connections"][0]["stats"]["todo"] == 1

    code, found, _ = mcsync("MailchimpsyncCache.get", "--sync-status", "todo", "--troubleshoot")
    assert found["count"] == 1 and found["values"][0]["contact"]["first_name"] == "Ann"


def test_a_config_naming_a_missing_group_exits_2_and_changes_nothing(
    mcsync: Any, clean_tables: sa.Engine
) -> None:
    before = snapshot(clean_tables)
    text = config_text(("Org", API_KEY, [connection_json(LIST_A, 4242)]))
    code, out, err = mcsync("updateconfig", "--config", text)
    assert (code, out) == (2, "")
    assert "no CRM group has the id 4242" in err
    assert snapshot(clean_tables) == before
