"""The run's CRM facts from CiviCRM (``common.crm.mirror.refresh``): the copy in our Postgres
holds what CiviCRM holds after each refresh, and a refresh with nothing new rewrites
nothing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from civicrm_support import CiviCrmTables, civicrm_database

from common.crm import mirror
from common.crm.civicrm import crm_engine

pytestmark = pytest.mark.integration

DATABASE = "mcsync_civicrm_mirror_test"


@pytest.fixture
def civi() -> Iterator[CiviCrmTables]:
    with civicrm_database(DATABASE):
        yield CiviCrmTables(DATABASE)


@pytest.fixture
def engine(civi: CiviCrmTables) -> Iterator[sa.Engine]:
    engine = crm_engine(f"mysql://root@127.0.0.1:3306/{civi.database}")
    yield engine
    engine.dispose()


def _copy(pg: sa.Engine, table: str, columns: str) -> list[tuple[object, ...]]:
    with pg.connect() as conn:
        return [
            tuple(r) for r in conn.execute(sa.text(f"SELECT {columns} FROM {table} ORDER BY 1"))
        ]


def _changed(report: mirror.RefreshReport) -> dict[str, int]:
    return {t.table: t.changed for t in report.tables}


def test_a_refresh_copies_what_the_sync_reads_and_a_second_changes_nothing(
    civi: CiviCrmTables, engine: sa.Engine, clean_tables: sa.Engine
) -> None:
    group, other = civi.group("newsletter"), civi.group("staff")
    ann = civi.contact("Ann", "Archer", "ann@example.org", "ann@work.example.org")
    bob = civi.contact("Bob", "Builder", "bob@example.org")
    civi.execute("UPDATE civicrm_contact SET is_deleted = 1 WHERE id = %s", bob)
    civi.execute(
        "UPDATE civicrm_email SET on_hold = 1, hold_date = '2026-01-02 03:04:05' WHERE email = %s",
        "ann@work.example.org",
    )
    civi.join(ann, group, "Added", "2025-01-01 00:00:00")
    civi.join(bob, other, "Added", "2025-01-01 00:00:00")  # not the run's group

    first = mirror.refresh(clean_tables, engine, [group])

    assert _copy(clean_tables, "civicrm_group", "id, name, title") == [
        (group, "newsletter", "Newsletter"),
        (other, "staff", "Staff"),
    ]
    assert _copy(clean_tables, "civicrm_contact", "id, first_name, last_name, is_deleted") == [
        (ann, "Ann", "Archer", False),
        (bob, "Bob", "Builder", True),
    ]
    assert _copy(
        clean_tables, "civicrm_email", "email, is_primary, is_bulkmail, on_hold, hold_date"
    ) == [
        ("ann@example.org", True, True, 0, None),
        ("ann@work.example.org", False, False, 1, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("bob@example.org", True, True, 0, None),
    ]
    assert _copy(clean_tables, "civicrm_group_contact", "contact_id, group_id, status") == [
        (ann, group, "Added")
    ]
    assert _copy(clean_tables, "civicrm_subscription_history", "contact_id, status, date") == [
        (ann, "Added", datetime(2025, 1, 1, tzinfo=UTC))
    ]
    assert _changed(first)["civicrm_contact"] == 2

    second = mirror.refresh(clean_tables, engine, [group])

    assert set(_changed(second).values()) == {0}


def test_changes_in_civicrm_reach_the_copy_at_the_next_refresh(
    civi: CiviCrmTables, engine: sa.Engine, clean_tables: sa.Engine
) -> None:
    group = civi.group("newsletter")
    ann = civi.contact("Ann", "Archer", "ann@example.org")
    bob = civi.contact("Bob", "Builder", "bob@example.org")
    civi.join(ann, group, "Added", "2025-01-01 00:00:00")
    civi.join(bob, group, "Added", "2025-01-01 00:00:00")
    mirror.refresh(clean_tables, engine, [group])

    civi.execute("DELETE FROM civicrm_contact WHERE id = %s", bob)
    civi.execute("UPDATE civicrm_contact SET first_name = 'Anna' WHERE id = %s", ann)
    civi.join(ann, group, "Removed", "2026-02-01 00:00:00")
    cat = civi.contact("Cat", "Cooper", "cat@example.org")
    mirror.refresh(clean_tables, engine, [group])

    assert _copy(clean_tables, "civicrm_contact", "id, first_name") == [(ann, "Anna"), (cat, "Cat")]
    assert _copy(clean_tables, "civicrm_group_contact", "contact_id, status") == [(ann, "Removed")]
    assert _copy(clean_tables, "civicrm_subscription_history", "contact_id, status") == [
        (ann, "Added"),
        (ann, "Removed"),
    ]


def test_history_is_read_from_where_the_last_read_stopped_and_a_new_group_from_its_start(
    civi: CiviCrmTables, engine: sa.Engine, clean_tables: sa.Engine
) -> None:
    group, interest = civi.group("newsletter"), civi.group("interest")
    ann = civi.contact("Ann", "Archer", "ann@example.org")
    civi.join(ann, group, "Added", "2025-01-01 00:00:00")
    civi.join(ann, interest, "Added", "2025-01-01 00:00:00")
    first = mirror.refresh(clean_tables, engine, [group])
    civi.join(ann, group, "Removed", "2026-02-01 00:00:00")

    again = {t.table: t.rows for t in mirror.refresh(clean_tables, engine, [group]).tables}
    with_interest = mirror.refresh(clean_tables, engine, [group, interest])

    assert {t.table: t.rows for t in first.tables}["civicrm_subscription_history"] == 1
    assert again["civicrm_subscription_history"] == 2  # read again from the overlap back
    assert _changed(with_interest)["civicrm_subscription_history"] == 1
    assert len(_copy(clean_tables, "civicrm_subscription_history", "id")) == 3


def test_a_crm_that_does_not_answer_leaves_the_copy_as_it_was(
    clean_tables: sa.Engine,
) -> None:
    gone = crm_engine("mysql://root@127.0.0.1:1/civicrm")

    with pytest.raises(sa.exc.OperationalError):
        mirror.refresh(clean_tables, gone, [1])

    assert _copy(clean_tables, "civicrm_contact", "id") == []


def test_a_refresh_that_finds_nothing_new_leaves_the_copys_rows_untouched(
    civi: CiviCrmTables, engine: sa.Engine, clean_tables: sa.Engine
) -> None:
    group = civi.group("newsletter")
    for n in range(3):
        contact = civi.contact(f"P{n}", "Tester", f"p{n}@example.org")
        civi.join(contact, group, "Added", "2025-01-01 00:00:00")
    mirror.refresh(clean_tables, engine, [group])
    before = _versions(clean_tables)

    mirror.refresh(clean_tables, engine, [group])

    # A row written, or only locked (an upsert that matched it), has a new xmin or xmax: a
    # write to the table and to the WAL.
    assert _versions(clean_tables) == before


def _versions(pg: sa.Engine) -> dict[str, list[tuple[object, ...]]]:
    tables = ("civicrm_group", "civicrm_contact", "civicrm_email", "civicrm_group_contact")
    return {t: _copy(pg, t, "id, xmin::text, xmax::text") for t in tables}


def test_a_refresh_that_changed_much_of_a_table_leaves_it_analyzed_for_the_stages(
    civi: CiviCrmTables, engine: sa.Engine, clean_tables: sa.Engine
) -> None:
    for n in range(3):
        civi.contact(f"P{n}", "Tester", f"p{n}@example.org")

    mirror.refresh(clean_tables, engine, [])

    with clean_tables.connect() as conn:
        planned = conn.execute(
            sa.text(
                "SELECT reltuples FROM pg_class "
                "WHERE relname IN ('civicrm_contact', 'civicrm_email')"
            )
        ).scalars()
        assert set(planned) == {3}


@pytest.mark.parametrize(
    "name", ["tab\there", "new\nline", "back\\slash", "\\N", "cr\rlf", "😀 Zoë", "", None]
)
def test_any_text_crosses_to_the_copy_as_civicrm_holds_it(
    civi: CiviCrmTables, engine: sa.Engine, clean_tables: sa.Engine, name: str | None
) -> None:
    ann = civi.contact("Ann", "Archer", "ann@example.org")
    civi.execute("UPDATE civicrm_contact SET last_name = %s WHERE id = %s", name, ann)

    mirror.refresh(clean_tables, engine, [])

    assert _copy(clean_tables, "civicrm_contact", "id, first_name, last_name") == [
        (ann, "Ann", name)
    ]
