"""``mcsync crm check``: is CiviCRM's database reachable, is it CiviCRM, may the sync read and
write what it needs there? One line per problem, exit code 2, never a traceback or a
password."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from civicrm_support import civicrm_database, crm_user

from mcsync import cli

pytestmark = pytest.mark.integration

DATABASE = "mcsync_crm_check_test"
PASSWORD = "s3cret-Crm-pw"
Check = Callable[[str | None], tuple[int, str, str]]
READ_WRITE = {
    "civicrm_contact": "SELECT, INSERT, UPDATE",
    "civicrm_email": "SELECT, INSERT, UPDATE",
    "civicrm_group": "SELECT",
    "civicrm_group_contact": "SELECT, INSERT, UPDATE",
    "civicrm_subscription_history": "SELECT, INSERT",
}


@pytest.fixture
def civicrm() -> Iterator[str]:
    with civicrm_database(DATABASE) as url:
        yield url


@pytest.fixture
def check(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], database_url: str
) -> Check:
    """Run ``mcsync crm check`` with this MCSYNC_CRM_URL (None: unset): code, out, err."""
    monkeypatch.setenv("MCSYNC_DATABASE_URL", database_url)

    def run(crm_url: str | None) -> tuple[int, str, str]:
        if crm_url is None:
            monkeypatch.delenv("MCSYNC_CRM_URL", raising=False)
        else:
            monkeypatch.setenv("MCSYNC_CRM_URL", crm_url)
        code = cli.main(["crm", "check"])
        out, err = capsys.readouterr()
        assert PASSWORD not in out + err and "Traceback" not in err
        return code, out, err

    return run


def test_a_civicrm_the_sync_may_read_and_write_is_fit(civicrm: str, check: Check) -> None:
    with crm_user(DATABASE, "mcsync_rw", PASSWORD, READ_WRITE) as url:
        code, out, err = check(url)

    assert (code, err) == (0, "")
    assert f"CRM: mysql://mcsync_rw:***@127.0.0.1:3306/{DATABASE}" in out
    assert "tables found: civicrm_contact, civicrm_email, civicrm_group," in out
    assert "the sync may read and write what it needs there" in out


def test_a_read_only_user_is_told_what_it_may_not_do(civicrm: str, check: Check) -> None:
    read_only = {table: "SELECT" for table in READ_WRITE}
    with crm_user(DATABASE, "mcsync_ro", PASSWORD, read_only) as url:
        code, _, err = check(url)

    assert code == 2
    assert err.splitlines() == [
        "mcsync crm check: the CRM's user may not INSERT, UPDATE on civicrm_contact",
        "mcsync crm check: the CRM's user may not INSERT, UPDATE on civicrm_email",
        "mcsync crm check: the CRM's user may not INSERT, UPDATE on civicrm_group_contact",
        "mcsync crm check: the CRM's user may not INSERT on civicrm_subscription_history",
    ]


def test_a_database_without_civicrm_says_so(check: Check) -> None:
    with civicrm_database(DATABASE, with_schema=False) as url:
        code, _, err = check(url)

    assert code == 2
    assert "mcsync crm check: no table civicrm_contact: is this CiviCRM's database?" in err


@pytest.mark.parametrize(
    ("url", "said"),
    [
        (f"mysql://root:{PASSWORD}@127.0.0.1:3306/mysql", "refused the login"),
        (f"mysql://civicrm:{PASSWORD}@127.0.0.1:1/civicrm", "does not answer"),
    ],
)
def test_a_crm_that_cannot_be_reached_is_one_line(check: Check, url: str, said: str) -> None:
    code, _, err = check(url)

    assert code == 2
    (line,) = err.splitlines()
    assert line.startswith("mcsync crm check: the CRM at mysql://") and ":***@" in line
    assert said in line


def test_without_a_crm_url_the_crm_is_the_embedded_one(check: Check) -> None:
    code, out, _ = check(None)

    assert code == 0 and out.startswith("CRM: the embedded one")


def test_the_demo_refuses_a_crm_url_as_it_seeds_the_embedded_crm(
    check: Check, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MCSYNC_CRM_URL", f"mysql://civicrm:{PASSWORD}@crm-db/civicrm")

    code = cli.main(["demo"])

    err = capsys.readouterr().err
    assert code == 2 and "the demo seeds the embedded CRM" in err and PASSWORD not in err
