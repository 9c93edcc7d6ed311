"""``mcsync <action>``: arguments generated from the parameter models; refusals exit 2."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from mcsync import admin_cli, cli
from services.admin import registry


def _args(*argv: str) -> argparse.Namespace:
    return cli._parser().parse_args(argv)


def _given(name: str, *argv: str) -> dict[str, Any]:
    return admin_cli._given(registry.ACTIONS[name], _args(name, *argv))


def test_every_action_is_a_command() -> None:
    commands = next(a for a in cli._parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert set(registry.ACTIONS) <= set(commands.choices)


def test_a_list_parameter_takes_the_option_once_per_value() -> None:
    assert _given("includeinsync", "--contact-id", "1", "--contact-id", "2") == {
        "contact_id": ["1", "2"]
    }


def test_a_boolean_parameter_is_a_flag_and_absent_ones_keep_their_default() -> None:
    assert _given("getstatus", "--batches") == {"batches": True}
    assert _given("getstatus") == {}


def test_cache_get_takes_its_filters_as_options() -> None:
    given = _given(
        "MailchimpsyncCache.get", "--civicrm-status", "Added", "--troubleshoot", "--limit", "5"
    )
    assert given == {"civicrm_status": "Added", "troubleshoot": True, "limit": "5"}


def test_a_string_value_starting_with_at_is_read_from_that_file(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text('{"accounts": []}', encoding="utf-8")
    assert _given("updateconfig", "--config", f"@{config}") == {"config": '{"accounts": []}'}


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["includeinsync"], "contact_id: required"),
        (["includeinsync", "--contact-id", "ann"], "contact_id: "),
        (["MailchimpsyncCache.get", "--limit", "0"], "limit: "),
        (["updateconfig", "--config", "@/nonexistent/config.json"], "config: cannot read"),
    ],
)
def test_a_refused_parameter_prints_its_name_on_stderr_and_exits_2(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Refused before any database is touched: a URL that could not be reached proves it.
    monkeypatch.setenv("MCSYNC_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    assert cli.main(argv) == 2
    out = capsys.readouterr()
    assert says in out.err and out.out == ""


def test_the_fetchandreconcile_command_keeps_wait_and_the_id_alias() -> None:
    args = _args("fetchandreconcile", "--id", "7", "--wait", "--max-time", "0")
    assert (args.group_id, args.wait, args.max_time) == (7, True, 0)
