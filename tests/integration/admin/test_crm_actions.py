"""The database-side admin actions against a real Postgres (and the simulator for batches)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from admin_support import (
    API_KEY,
    LIST_A,
    LIST_B,
    NOW,
    OTHER_KEY,
    Sent,
    add_row,
    config_text,
    connection_json,
    make_contact,
    make_context,
    make_groups,
    set_membership,
    snapshot,
)
from civicrm_support import CiviCrmTables, civicrm_database

from common.db import config, runs
from common.db.schema import (
    account,
    batch,
    cache,
    connection,
    fetch_page,
    status,
    update,
    webhook_event,
    webhook_secret,
)
from common.mailchimp import MailchimpClient
from common.messages import StartSync
from common.settings import Settings
from common.vocabulary import GroupStatus, Stage
from services.admin import crm_actions
from services.admin.config_shape import parse_config
from services.admin.context import AdminContext, Conflict, NotFound, ParamError
from services.admin.params import parse
from sim.mailchimp import RunningSimulator, Simulator, run_in_thread

pytestmark = pytest.mark.integration


def call(ctx: AdminContext, name: str, **params: Any) -> dict[str, Any]:
    """Run an action as both front ends do: validate the parameters, then run it."""
    action = next(a for a in crm_actions.ACTIONS if a.name == name)
    return action.run(ctx, parse(action.params, params))


@pytest.fixture
def groups(clean_tables: sa.Engine) -> dict[str, int]:
    return make_groups(clean_tables, "news", "events", "offers", "other")


@pytest.fixture
def configured(clean_tables: sa.Engine, groups: dict[str, int]) -> dict[str, Any]:
    """Two audiences of one account: A <-> news (interest -> events), B <-> offers."""
    text = config_text(
        (
            "Org",
            API_KEY,
            [
                connection_json(LIST_A, groups["news"], {"int1": groups["events"]}),
                connection_json(LIST_B, groups["offers"]),
            ],
        )
    )
    return call(make_context(clean_tables), "updateconfig", config=text)


# --- fetchandreconcile ------------------------------------------------------------------------


def test_fetchandreconcile_enqueues_a_start_sync_per_connection_with_the_parameters(
    clean_tables: sa.Engine, configured: dict[str, Any]
) -> None:
    sent = Sent()
    answer = call(
        make_context(clean_tables, sent),
        "fetchandreconcile",
        since="2019-12-11",
        max_time=0,
        stop_on="readyToSubmitUpdates",
        with_data=True,
    )
    expected = [
        StartSync(
            list_id=list_id,
            since="2019-12-11",
            max_time=0,
            stop_on="readyToSubmitUpdates",
            with_data=True,
        )
        for list_id in (LIST_A, LIST_B)
    ]
    assert sent.messages == expected
    assert [e["mailchimp_list_id"] for e in answer["enqueued"]] == [LIST_A, LIST_B]


@pytest.mark.parametrize("key", ["group_id", "id"])
def test_fetchandreconcile_of_one_group_enqueues_only_its_audience(
    clean_tables: sa.Engine, configured: dict[str, Any], groups: dict[str, int], key: str
) -> None:
    sent = Sent()
    call(make_context(clean_tables, sent), "fetchandreconcile", **{key: groups["offers"]})
    assert sent.messages == [StartSync(list_id=LIST_B)]


def test_fetchandreconcile_of_a_group_without_a_connection_is_not_found_naming_group_id(
    clean_tables: sa.Engine, configured: dict[str, Any], groups: dict[str, int]
) -> None:
    sent = Sent()
    with pytest.raises(NotFound) as refused:
        call(make_context(clean_tables, sent), "fetchandreconcile", group_id=groups["other"])
    assert refused.value.param == "group_id"
    assert sent.messages == []


def test_fetchandreconcile_without_any_connection_is_a_conflict(clean_tables: sa.Engine) -> None:
    with pytest.raises(Conflict):
        call(make_context(clean_tables), "fetchandreconcile")


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"stop_on": "readyToNap"}, "stop_on"),
        ({"since": "last tuesday"}, "since"),
        ({"max_time": -1}, "max_time"),
        ({"group_id": "seven"}, "group_id"),
        ({"force_restart": "perhaps"}, "force_restart"),
        ({"group": 1}, "group"),
    ],
)
def test_fetchandreconcile_refuses_a_bad_parameter_by_name_and_sends_nothing(
    params: dict[str, Any], param: str
) -> None:
    with pytest.raises(ParamError) as refused:
        parse(crm_actions.FetchAndReconcileParams, params)
    assert refused.value.param == param


# --- includeinsync ----------------------------------------------------------------------------


def test_includeinsync_marks_every_row_of_the_contacts_in_every_audience_todo(
    clean_tables: sa.Engine, configured: dict[str, Any]
) -> None:
    ann = make_contact(clean_tables, "Ann", "ann@example.org")
    bob = make_contact(clean_tables, "Bob", "bob@example.org")
    cy = make_contact(clean_tables, "Cy", "cy@example.org")
    rows = {
        add_row(clean_tables, LIST_A, "ann@example.org", "subscribed", ann),
        add_row(clean_tables, LIST_B, "ann@example.org", "subscribed", ann, "fail"),
        add_row(clean_tables, LIST_A, "bob@example.org", "unsubscribed", bob),
    }
    untouched = add_row(clean_tables, LIST_A, "cy@example.org", "subscribed", cy)

    answer = call(make_context(clean_tables), "includeinsync", contact_id=[ann, bob])

    assert answer == {"affected": 3}
    with clean_tables.connect() as conn:
        found = dict(conn.execute(sa.select(cache.c.id, cache.c.sync_status)).all())
    assert {found[r] for r in rows} == {"todo"}
    assert found[untouched] == "ok"


def test_includeinsync_takes_a_single_contact_id_and_counts_rows_not_contacts(
    clean_tables: sa.Engine, configured: dict[str, Any]
) -> None:
    ann = make_contact(clean_tables, "Ann", "ann@example.org")
    add_row(clean_tables, LIST_A, "ann@example.org", "subscribed", ann)
    add_row(clean_tables, LIST_B, "ann@example.org", "subscribed", ann)
    assert call(make_context(clean_tables), "includeinsync", contact_id=ann) == {"affected": 2}
    assert call(make_context(clean_tables), "includeinsync", contact_id=[999]) == {"affected": 0}


@pytest.mark.parametrize("value", [[], "ann", [1, "x"], 0, -3, 2**31, None, {"a": 1}])
def test_includeinsync_refuses_a_malformed_contact_id(value: Any) -> None:
    with pytest.raises(ParamError) as refused:
        parse(crm_actions.IncludeInSyncParams, {"contact_id": value})
    assert refused.value.param == "contact_id"


# --- updateconfig -----------------------------------------------------------------------------


def test_updateconfig_stores_the_posted_config_and_answers_it(
    clean_tables: sa.Engine, groups: dict[str, int]
) -> None:
    posted = {
        "accounts": [
            {
                "name": "Org",
                "api_key": API_KEY,
                "connections": [
                    {
                        "mailchimp_list_id": LIST_A,
                        "subscription_group_id": groups["news"],
                        "data_sync": True,
                        "trust_override": "Mailchimp",
                        "interests": [
                            {
                                "interest_id": "9f8e7d6c5b",
                                "group_id": groups["events"],
                                "trust_override": "CiviCRM",
                            }
                        ],
                    }
                ],
            },
            {"name": "Other", "api_key": OTHER_KEY, "connections": []},
        ]
    }
    answer = call(make_context(clean_tables), "updateconfig", config=json.dumps(posted))
    assert answer == {"config": posted, "removed_audiences": []}
    with clean_tables.connect() as conn:
        (stored,) = config.load_connections(conn)
    assert stored.data_sync and stored.trust_override == "Mailchimp"
    assert stored.interests == (config.InterestMapping("9f8e7d6c5b", groups["events"], "CiviCRM"),)


def test_updateconfig_keeps_ids_secrets_and_webhook_ids_of_what_stays(
    clean_tables: sa.Engine, configured: dict[str, Any], groups: dict[str, int]
) -> None:
    with clean_tables.begin() as conn:
        account_id = conn.execute(sa.select(account.c.id)).scalar_one()
        config.add_webhook_secret(conn, account_id, "kept-secret")
        conn.execute(sa.update(account).values(batch_webhook_id="bw1"))
        conn.execute(sa.update(connection).values(webhook_id="aw1"))
        query = sa.select(connection.c.mailchimp_list_id, connection.c.id)
        before = {list_id: connection_id for list_id, connection_id in conn.execute(query)}
    text = config_text(
        (
            "Org renamed",
            API_KEY,
            [
                connection_json(LIST_A, groups["news"]),
                connection_json(LIST_B, groups["offers"], data_sync=True),
            ],
        )
    )
    call(make_context(clean_tables), "updateconfig", config=text)
    with clean_tables.connect() as conn:
        assert conn.execute(
            sa.select(account.c.id, account.c.name, account.c.batch_webhook_id)
        ).all() == [(account_id, "Org renamed", "bw1")]
        assert conn.execute(sa.select(webhook_secret.c.secret)).scalars().all() == ["kept-secret"]
        after = conn.execute(
            sa.select(connection.c.mailchimp_list_id, connection.c.id, connection.c.webhook_id)
        ).all()
    assert sorted(after) == sorted((lid, cid, "aw1") for lid, cid in before.items())


def _fill_audience(engine: sa.Engine, list_id: str) -> None:
    """A cache row with an update, a batch, a status row with a fetch page, an inbox event."""
    row = add_row(engine, list_id, f"x@{list_id}.org", "subscribed", None)
    with engine.begin() as conn:
        batch_id = conn.execute(
            sa.insert(batch).values(mailchimp_list_id=list_id).returning(batch.c.id)
        ).scalar_one()
        conn.execute(
            sa.insert(update).values(
                mailchimpsync_cache_id=row, mailchimpsync_batch_id=batch_id, data={}
            )
        )
        runs.log(conn, list_id, "hello", NOW)
        runs.add_pages(conn, list_id, "run-1", [0])
        conn.execute(
            sa.insert(webhook_event).values(
                mailchimp_list_id=list_id, event_type="subscribe", data={"email": "x"}
            )
        )


def _rows_of(engine: sa.Engine, list_id: str) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            "cache": conn.scalar(
                sa.select(sa.func.count()).where(cache.c.mailchimp_list_id == list_id)
            ),
            "batch": conn.scalar(
                sa.select(sa.func.count()).where(batch.c.mailchimp_list_id == list_id)
            ),
            "status": conn.scalar(sa.select(sa.func.count()).where(status.c.list_id == list_id)),
            "fetch_page": conn.scalar(
                sa.select(sa.func.count()).where(fetch_page.c.list_id == list_id)
            ),
            "webhook_event": conn.scalar(
                sa.select(sa.func.count()).where(webhook_event.c.mailchimp_list_id == list_id)
            ),
        }


def test_removing_a_connection_deletes_its_rows_from_our_tables_and_keeps_the_others(
    clean_tables: sa.Engine, configured: dict[str, Any], groups: dict[str, int]
) -> None:
    _fill_audience(clean_tables, LIST_A)
    _fill_audience(clean_tables, LIST_B)
    text = config_text(("Org", API_KEY, [connection_json(LIST_B, groups["offers"])]))

    answer = call(make_context(clean_tables), "updateconfig", config=text)

    assert answer["removed_audiences"] == [LIST_A]
    assert set(_rows_of(clean_tables, LIST_A).values()) == {0}
    assert set(_rows_of(clean_tables, LIST_B).values()) == {1}
    with clean_tables.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(update)) == 1
        assert [c.list_id for c in config.load_connections(conn)] == [LIST_B]


def test_removing_an_account_deletes_its_connections_secrets_and_audience_rows(
    clean_tables: sa.Engine, configured: dict[str, Any], groups: dict[str, int]
) -> None:
    _fill_audience(clean_tables, LIST_A)
    with clean_tables.begin() as conn:
        config.add_webhook_secret(conn, conn.execute(sa.select(account.c.id)).scalar_one(), "s")
    text = config_text(("Other", OTHER_KEY, []))

    answer = call(make_context(clean_tables), "updateconfig", config=text)

    assert answer["removed_audiences"] == [LIST_A, LIST_B]
    assert set(_rows_of(clean_tables, LIST_A).values()) == {0}
    with clean_tables.connect() as conn:
        assert conn.execute(sa.select(account.c.api_key)).scalars().all() == [OTHER_KEY]
        assert conn.scalar(sa.select(sa.func.count()).select_from(webhook_secret)) == 0
        assert conn.scalar(sa.select(sa.func.count()).select_from(connection)) == 0


def test_two_connections_can_swap_their_subscription_groups_in_one_update(
    clean_tables: sa.Engine, configured: dict[str, Any], groups: dict[str, int]
) -> None:
    text = config_text(
        (
            "Org",
            API_KEY,
            [
                connection_json(LIST_A, groups["offers"]),
                connection_json(LIST_B, groups["news"]),
            ],
        )
    )
    call(make_context(clean_tables), "updateconfig", config=text)
    with clean_tables.connect() as conn:
        stored = {c.list_id: c.subscription_group_id for c in config.load_connections(conn)}
    assert stored == {LIST_A: groups["offers"], LIST_B: groups["news"]}


def test_a_connection_moved_to_another_account_keeps_its_id_and_rows(
    clean_tables: sa.Engine, configured: dict[str, Any], groups: dict[str, int]
) -> None:
    _fill_audience(clean_tables, LIST_A)
    with clean_tables.connect() as conn:
        before = conn.scalar(
            sa.select(connection.c.id).where(connection.c.mailchimp_list_id == LIST_A)
        )
    text = config_text(("Other", OTHER_KEY, [connection_json(LIST_A, groups["news"])]))
    answer = call(make_context(clean_tables), "updateconfig", config=text)
    assert answer["removed_audiences"] == [LIST_B]
    with clean_tables.connect() as conn:
        (moved,) = config.load_connections(conn)
    assert (moved.id, moved.api_key) == (before, OTHER_KEY)
    assert _rows_of(clean_tables, LIST_A)["cache"] == 1


@pytest.mark.parametrize(
    ("config_value", "says"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "valid dictionary"),
        ('{"accounts": [{"name": "x", "api_key": "nope"}]}', "accounts[0].api_key"),
        ('{"accounts": [], "extra": 1}', "extra"),
        ("nested", "not valid JSON"),
    ],
)
def test_a_malformed_config_is_refused_and_changes_nothing(
    clean_tables: sa.Engine, configured: dict[str, Any], config_value: str, says: str
) -> None:
    before = snapshot(clean_tables)
    with pytest.raises(ParamError) as refused:
        call(make_context(clean_tables), "updateconfig", config=config_value)
    assert refused.value.param == "config"
    assert says in refused.value.message
    assert snapshot(clean_tables) == before


def test_a_config_naming_a_missing_group_is_refused_and_changes_nothing(
    clean_tables: sa.Engine, configured: dict[str, Any], groups: dict[str, int]
) -> None:
    _fill_audience(clean_tables, LIST_A)
    before = snapshot(clean_tables)
    text = config_text(("Other", OTHER_KEY, [connection_json(LIST_B, 4242)]))
    with pytest.raises(ParamError) as refused:
        call(make_context(clean_tables), "updateconfig", config=text)
    assert "4242" in refused.value.message
    assert snapshot(clean_tables) == before


@pytest.mark.parametrize(
    "connections",
    [
        [connection_json(LIST_A, 1), connection_json(LIST_A, 2)],
        [connection_json(LIST_A, 1), connection_json(LIST_B, 1)],
        [connection_json(LIST_A, 1, {"i1": 1})],
        [connection_json(LIST_A, 1, {"i1": 2, "i2": 2})],
    ],
)
def test_a_config_using_an_audience_or_group_twice_is_refused(
    connections: list[dict[str, Any]],
) -> None:
    with pytest.raises(ParamError):
        parse_config(config_text(("Org", API_KEY, connections)))


def test_two_accounts_with_one_api_key_are_refused() -> None:
    with pytest.raises(ParamError, match="api_key"):
        parse_config(config_text(("A", API_KEY, []), ("B", API_KEY, [])))


# --- getstatus --------------------------------------------------------------------------------


@pytest.fixture
def audience_a(clean_tables: sa.Engine, configured: dict[str, Any], groups: dict[str, int]) -> None:
    """Audience A with one row of each kind the statistics count."""
    news = groups["news"]
    people = {
        name: make_contact(clean_tables, name, f"{name}@example.org")
        for name in ("both", "crm", "mc", "cleaned", "weird", "todo", "other")
    }
    for name in ("both", "crm", "cleaned", "weird"):
        set_membership(clean_tables, people[name], news, GroupStatus.ADDED)
    set_membership(clean_tables, people["mc"], news, GroupStatus.REMOVED)
    add_row(clean_tables, LIST_A, "both@example.org", "subscribed", people["both"])
    add_row(clean_tables, LIST_A, None, None, people["crm"], "live")
    add_row(clean_tables, LIST_A, "mc@example.org", "subscribed", people["mc"], "todo")
    add_row(clean_tables, LIST_A, "cleaned@example.org", "cleaned", people["cleaned"], "fail")
    add_row(clean_tables, LIST_A, "weird@example.org", "unsubscribed", people["weird"])
    add_row(clean_tables, LIST_A, "other@example.org", "subscribed", people["other"], "fail")
    add_row(clean_tables, LIST_A, "todo@example.org", "pending", None, "redo")
    with clean_tables.begin() as conn:
        rows = conn.execute(sa.select(cache.c.id).order_by(cache.c.id)).scalars().all()
        batch_id = conn.execute(
            sa.insert(batch)
            .values(
                mailchimp_list_id=LIST_A,
                mailchimp_batch_id="0123456789",
                status="started",
                checked_at=datetime(2026, 11, 23, 12, 5, tzinfo=UTC),
                progressed_at=datetime(2026, 11, 23, 12, 1, tzinfo=UTC),
            )
            .returning(batch.c.id)
        ).scalar_one()
        updates = [(rows[1], None, False), (rows[1], batch_id, False), (rows[0], None, True)]
        conn.execute(
            sa.insert(update),
            [
                {
                    "mailchimpsync_cache_id": row,
                    "mailchimpsync_batch_id": in_batch,
                    "data": {"status": "subscribed"},
                    "completed": completed,
                }
                for row, in_batch, completed in updates
            ],
        )
        state = runs.lock(conn, LIST_A)
        runs.start(conn, state, runs.RunParams(), False, NOW)
        runs.log(conn, LIST_A, "started", NOW)


def _status_of(answer: dict[str, Any], list_id: str) -> dict[str, Any]:
    return next(c for c in answer["connections"] if c["mailchimp_list_id"] == list_id)


def test_getstatus_counts_each_statistic_of_a_connection(
    clean_tables: sa.Engine, audience_a: None
) -> None:
    found = _status_of(call(make_context(clean_tables), "getstatus"), LIST_A)
    assert found["stats"] == {
        "cache_rows": 7,
        "subscribed_at_mailchimp": 4,  # both, mc, other, and the pending one
        "subscribed_at_civicrm": 4,
        "to_add_to_mailchimp": 2,  # crm (not at Mailchimp yet), weird (unsubscribed there)
        "to_remove_from_mailchimp": 2,  # mc; the pending row without a contact
        "failed": 2,
        "cannot_subscribe": 1,  # cleaned
        "other_fails": 1,
        "todo": 1,
        "live": 1,
        "redo": 1,
        "weird": 1,  # marked ok, yet Added in the CRM and unsubscribed at Mailchimp
        "updates_pending": 1,
        "updates_unsubmitted": 1,
    }


def test_getstatus_reports_stage_lock_log_and_open_batches(
    clean_tables: sa.Engine, audience_a: None
) -> None:
    answer = call(make_context(clean_tables), "getstatus")
    found = _status_of(answer, LIST_A)
    assert found["stage"] == Stage.READY_TO_FETCH.value
    assert found["lock"]["run_id"] and found["lock"]["stale"] is False
    assert found["lock"]["parked_reason"] is None
    assert [line["message"] for line in found["log"]] == ["started"]
    assert [b["mailchimp_batch_id"] for b in found["batches"]] == ["0123456789"]
    assert "mailchimp" not in found["batches"][0]
    read, moved = found["batches"][0]["checked_at"], found["batches"][0]["progressed_at"]
    assert (read, moved) == ("2026-11-23T12:05:00+00:00", "2026-11-23T12:01:00+00:00")
    other = _status_of(answer, LIST_B)
    assert other["lock"] is None and other["stats"]["cache_rows"] == 0
    json.dumps(answer)  # JSON-safe as it is


def test_getstatus_names_the_group_and_shows_progress_fail_reasons_and_stalled_batches(
    clean_tables: sa.Engine, audience_a: None
) -> None:
    with clean_tables.begin() as conn:
        conn.execute(
            sa.update(cache).where(cache.c.sync_status == "fail").values(fail_reason="cleaned")
        )
    later = dataclasses.replace(make_context(clean_tables), clock=lambda: STALLED_AT)
    found = _status_of(call(later, "getstatus"), LIST_A)
    assert found["group_title"] == "News"
    assert found["progress"] == {
        "pages_total": 0,
        "pages_fetched": 0,
        "rows_planned": 0,
        "rows_decided": 0,
        "unsubmitted": 1,
        "batches_open": 1,
    }
    assert found["fail_reasons"] == [["cleaned", 2]]
    assert [b["stalled"] for b in found["batches"]] == [True]


def test_getstatus_without_stats_leaves_out_what_reads_the_whole_audience(
    clean_tables: sa.Engine, audience_a: None
) -> None:
    found = _status_of(call(make_context(clean_tables), "getstatus", stats=False), LIST_A)
    assert "stats" not in found and "fail_reasons" not in found
    assert found["progress"]["unsubmitted"] == 1 and found["stage"] == "readyToFetch"
    assert [b["stalled"] for b in found["batches"]] == [False]


STALLED_AT = datetime(2026, 11, 23, 13, 2, tzinfo=UTC)  # an hour after the batch last moved


@pytest.fixture(scope="module")
def simulator() -> Iterator[RunningSimulator]:
    with run_in_thread(Simulator()) as running:
        yield running


def test_getstatus_with_batches_fetches_their_live_status_from_mailchimp(
    clean_tables: sa.Engine, configured: dict[str, Any], simulator: RunningSimulator
) -> None:
    simulator.simulator.create_account("Org", api_key=API_KEY)
    client = MailchimpClient(API_KEY, base_url=simulator.api_url)
    posted = client.post("/batches", {"operations": [{"method": "GET", "path": "/ping"}]})
    with clean_tables.begin() as conn:
        conn.execute(
            sa.insert(batch),
            [
                {"mailchimp_list_id": LIST_A, "mailchimp_batch_id": posted["id"]},
                {"mailchimp_list_id": LIST_A, "mailchimp_batch_id": "ffffffffff"},
            ],
        )
    try:
        ctx = make_context(clean_tables, mailchimp=lambda key: client)
        found = _status_of(call(ctx, "getstatus", batches=True), LIST_A)
    finally:
        client.close()
    live, lost = (b["mailchimp"] for b in found["batches"])
    assert live["status"] in {"pending", "started", "finished"}
    assert live["total_operations"] == 1
    assert "404" in lost["error"]


# --- MailchimpsyncCache.get -------------------------------------------------------------------


@pytest.fixture
def cache_rows(
    clean_tables: sa.Engine, configured: dict[str, Any], groups: dict[str, int]
) -> dict[str, int]:
    ann = make_contact(clean_tables, "Ann", "ann@example.org", held=True)
    bob = make_contact(clean_tables, "Bob", "bob@example.org")
    set_membership(clean_tables, ann, groups["news"], GroupStatus.ADDED)
    set_membership(clean_tables, ann, groups["events"], GroupStatus.REMOVED)
    set_membership(clean_tables, bob, groups["news"], GroupStatus.REMOVED)
    rows = {
        "ann": add_row(clean_tables, LIST_A, "Ann@Example.org", "subscribed", ann),
        "bob": add_row(clean_tables, LIST_A, "bob@example.org", "unsubscribed", bob, "todo"),
        "ann_b": add_row(clean_tables, LIST_B, "ann@example.org", "cleaned", ann, "fail"),
        "nobody": add_row(clean_tables, LIST_A, "x@example.org", "subscribed", None),
    }
    with clean_tables.begin() as conn:
        conn.execute(
            sa.insert(update).values(mailchimpsync_cache_id=rows["ann"], data={"status": "x"})
        )
    return rows


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, ["ann", "bob", "ann_b", "nobody"]),
        ({"mailchimp_list_id": LIST_B}, ["ann_b"]),
        ({"mailchimp_email": "ANN@example.org"}, ["ann", "ann_b"]),
        ({"mailchimp_status": "unsubscribed"}, ["bob"]),
        ({"sync_status": "fail"}, ["ann_b"]),
        ({"civicrm_status": "Added"}, ["ann"]),
        ({"civicrm_status": "Removed"}, ["bob"]),
        ({"civicrm_status": "Added", "mailchimp_list_id": LIST_B}, []),
        ({"mailchimp_member_id": "m-bob@example.org"}, ["bob"]),
    ],
)
def test_cache_get_filters_on_fields_and_on_the_crm_status(
    clean_tables: sa.Engine, cache_rows: dict[str, int], params: dict[str, Any], expected: list[str]
) -> None:
    answer = call(make_context(clean_tables), "MailchimpsyncCache.get", **params)
    assert [v["id"] for v in answer["values"]] == [cache_rows[name] for name in expected]
    assert answer["count"] == len(expected)


def test_cache_get_filters_on_id_and_contact(
    clean_tables: sa.Engine, cache_rows: dict[str, int]
) -> None:
    ctx = make_context(clean_tables)
    by_id = call(ctx, "MailchimpsyncCache.get", id=cache_rows["bob"])
    assert [v["mailchimp_email"] for v in by_id["values"]] == ["bob@example.org"]
    contact = by_id["values"][0]["civicrm_contact_id"]
    assert call(ctx, "MailchimpsyncCache.get", civicrm_contact_id=contact)["count"] == 1


def test_cache_get_pages_and_counts_every_match(
    clean_tables: sa.Engine, cache_rows: dict[str, int]
) -> None:
    answer = call(make_context(clean_tables), "MailchimpsyncCache.get", limit=2, offset=1)
    assert answer["count"] == 4
    assert [v["id"] for v in answer["values"]] == [cache_rows["bob"], cache_rows["ann_b"]]


def test_cache_get_troubleshoot_adds_contact_emails_history_and_open_updates(
    clean_tables: sa.Engine, cache_rows: dict[str, int], groups: dict[str, int]
) -> None:
    plain = call(make_context(clean_tables), "MailchimpsyncCache.get", id=cache_rows["ann"])
    assert "emails" not in plain["values"][0]
    answer = call(
        make_context(clean_tables), "MailchimpsyncCache.get", id=cache_rows["ann"], troubleshoot=1
    )
    (row,) = answer["values"]
    assert row["civicrm_status"] == "Added"
    assert row["contact"]["first_name"] == "Ann"
    assert row["emails"] == [
        {"email": "ann@example.org", "is_primary": True, "is_bulkmail": False, "on_hold": 1}
    ]
    history = {(h["group_id"], h["status"]) for h in row["subscription_history"]}
    assert history == {(groups["news"], "Added"), (groups["events"], "Removed")}
    assert [u["data"] for u in row["open_updates"]] == [{"status": "x"}]
    json.dumps(answer)


def test_cache_get_troubleshoot_of_a_row_without_contact_has_empty_related_data(
    clean_tables: sa.Engine, cache_rows: dict[str, int]
) -> None:
    ctx = make_context(clean_tables)
    (row,) = call(ctx, "MailchimpsyncCache.get", id=cache_rows["nobody"], troubleshoot=True)[
        "values"
    ]
    assert (row["contact"], row["emails"], row["subscription_history"]) == (None, [], [])


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"offset": -1}, "offset"),
        ({"civicrm_status": "Pending"}, "civicrm_status"),
        ({"sync_status": "busy"}, "sync_status"),
        ({"mailchimp_email": "a\x00b"}, "mailchimp_email"),
        ({"id": 2**63}, "id"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_cache_get_refuses_a_bad_parameter_by_name(params: dict[str, Any], param: str) -> None:
    with pytest.raises(ParamError) as refused:
        parse(crm_actions.CacheGetParams, params)
    assert refused.value.param == param


def test_includeinsync_takes_the_largest_list_allowed_in_one_statement(
    clean_tables: sa.Engine, configured: dict[str, Any]
) -> None:
    ann = make_contact(clean_tables, "Ann", "ann@example.org")
    add_row(clean_tables, LIST_A, "ann@example.org", "subscribed", ann)
    ids = [ann, *range(10_000_000, 10_000_000 + crm_actions.MAX_CONTACTS - 1)]
    assert call(make_context(clean_tables), "includeinsync", contact_id=ids) == {"affected": 1}


def test_updateconfig_with_civicrm_as_the_crm_takes_civicrms_groups_only(
    clean_tables: sa.Engine,
) -> None:
    with civicrm_database("mcsync_updateconfig_test") as url:
        newsletter = CiviCrmTables("mcsync_updateconfig_test").group("newsletter")
        ctx = dataclasses.replace(make_context(clean_tables), settings=Settings(crm_url=url))

        stored = call(
            ctx,
            "updateconfig",
            config=config_text(("Org", API_KEY, [connection_json(LIST_A, newsletter)])),
        )
        with pytest.raises(ParamError) as refused:
            call(
                ctx,
                "updateconfig",
                config=config_text(("Org", API_KEY, [connection_json(LIST_A, newsletter + 41)])),
            )

    connections = stored["config"]["accounts"][0]["connections"]
    assert connections[0]["subscription_group_id"] == newsletter
    assert refused.value.message == f"config: no CRM group has the id {newsletter + 41}"


def test_the_groups_offered_for_a_connection_are_civicrms_active_groups_that_hold_members(
    clean_tables: sa.Engine,
) -> None:
    database = "mcsync_crm_groups_test"
    with civicrm_database(database) as url:
        civi = CiviCrmTables(database)
        news, events = civi.group("zebra_news"), civi.group("events")
        retired, smart = civi.group("retired"), civi.group("smart")
        civi.execute("UPDATE civicrm_group SET is_active = 0 WHERE id = %s", retired)
        search = civi.execute("INSERT INTO civicrm_saved_search (name) VALUES ('smart')")
        civi.execute("UPDATE civicrm_group SET saved_search_id = %s WHERE id = %s", search, smart)
        ctx = dataclasses.replace(make_context(clean_tables), settings=Settings(crm_url=url))

        offered = crm_actions.crm_groups(ctx)

    assert offered == [(events, "Events"), (news, "Zebra_News")]


def test_the_groups_offered_with_the_embedded_crm_are_its_groups_by_title(
    clean_tables: sa.Engine,
) -> None:
    groups = make_groups(clean_tables, "offers", "news")
    assert crm_actions.crm_groups(make_context(clean_tables)) == [
        (groups["news"], "News"),
        (groups["offers"], "Offers"),
    ]
