"""A run decides every row on the CRM as it found it: never on a change the same run made.

One contact can have several rows in an audience (one per email). The rows of a run are
decided in chunks, in any order and by several workers; a CRM change made for one row of a
contact (adding it to the group because one email is subscribed) must not change how the
contact's other rows are decided, whatever chunk they fall in.
"""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reconciler_support import LIST_ID, T0, World

from common.db import runs
from common.vocabulary import GroupStatus
from services.reconciler import chunk

pytestmark = pytest.mark.integration

NOW = T0 + timedelta(days=10)
H = timedelta(hours=1)
MAILCHIMP_STATUSES = ("subscribed", "pending", "unsubscribed", "cleaned", "archived", None)


def filler_rows(w: World, n: int) -> None:
    """``n`` todo rows of nobody, neither at Mailchimp nor in the CRM, between others."""
    sql = """
        INSERT INTO civicrm_mailchimpsync_cache (mailchimp_list_id, sync_status)
        SELECT :list_id, 'todo' FROM generate_series(1, :n)
    """
    w.conn.execute(sa.text(sql), {"list_id": LIST_ID, "n": n})


def decide_run(w: World, size: int, order: random.Random | str = "forward") -> None:
    """Plan the run's chunks of ``size`` rows and decide them in ``order`` (a shuffle when a
    ``random.Random`` is given), as workers taking the chunks' messages would."""
    planned = runs.plan_chunks(w.conn, LIST_ID, "a-run", size)
    if order == "reverse":
        planned.reverse()
    elif isinstance(order, random.Random):
        order.shuffle(planned)
    for c in planned:
        row_ids = runs.take_chunk(w.conn, LIST_ID, "a-run", c.first_id, NOW)
        chunk.reconcile_chunk(w.conn, w.sc, row_ids or [], NOW)


def outcome(w: World) -> dict[str, Any]:
    """Everything a run decides, by names and row positions: not by ids, which differ from
    one build of the same world to the next, nor by anything the chunks' order changes."""
    groups = dict(w.conn.execute(sa.text("SELECT id::text, name FROM civicrm_group")).all())
    position = {row_id: n for n, row_id in enumerate(w.rows())}

    def named(snapshot: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if snapshot is None else {groups[g]: v for g, v in snapshot.items()}

    def rows(sql: str) -> list[tuple[Any, ...]]:
        return sorted(tuple(r) for r in w.conn.execute(sa.text(sql)))

    return {
        "memberships": rows(
            "SELECT k.first_name, g.name, gc.status FROM civicrm_group_contact gc "
            "JOIN civicrm_contact k ON k.id = gc.contact_id "
            "JOIN civicrm_group g ON g.id = gc.group_id"
        ),
        "history": rows(
            "SELECT k.first_name, g.name, h.status, h.date, h.method "
            "FROM civicrm_subscription_history h JOIN civicrm_contact k ON k.id = h.contact_id "
            "JOIN civicrm_group g ON g.id = h.group_id"
        ),
        "updates": sorted(
            (position[u.mailchimpsync_cache_id], repr(u.data), u.completed, u.error_response)
            for u in w.conn.execute(sa.text("SELECT * FROM civicrm_mailchimpsync_update"))
        ),
        "rows": [
            (r["sync_status"], r["fail_reason"], named(r["civicrm_groups"]))
            for r in w.rows().values()
        ],
    }


@pytest.mark.parametrize("order", ["forward", "reverse"])
def test_a_contacts_rows_far_apart_are_decided_on_the_crm_the_run_found(
    world: World, order: str
) -> None:
    # Ann left the newsletter long ago. Since then she subscribed one address at Mailchimp
    # and unsubscribed the other: she is to be added to the group, and her unsubscribed
    # address stays unsubscribed, however the run's chunks fall.
    ann = world.contact("Ann", "ann@example.org", "ann.work@example.org")
    world.history(ann, GroupStatus.REMOVED, T0)
    subscribed = world.row("ann@example.org", "subscribed", ann, at=T0 + H, sync_status="todo")
    filler_rows(world, 3000)
    unsubscribed = world.row(
        "ann.work@example.org", "unsubscribed", ann, at=T0 + H, sync_status="todo"
    )

    decide_run(world, 100, order)

    rows = world.rows()
    assert outcome(world)["memberships"] == [("Ann", "newsletter", "Added")]
    assert world.updates() == []  # nothing for Mailchimp: neither address changes there
    assert rows[subscribed]["sync_status"] == rows[unsubscribed]["sync_status"] == "ok"


# --- any chunk size, any order ------------------------------------------------------------

person = st.fixed_dictionaries(
    {
        "history": st.sampled_from([None, "Added", "Removed"]),
        "history_hours": st.integers(0, 4),
        "interest_history": st.sampled_from([None, "Added", "Removed"]),
        "rows": st.lists(
            st.fixed_dictionaries(
                {
                    "status": st.sampled_from(MAILCHIMP_STATUSES),
                    "hours": st.integers(0, 4),
                    "interest": st.sampled_from([None, True, False]),
                    "gap": st.integers(0, 40),
                }
            ),
            min_size=1,
            max_size=3,
        ),
    }
)


def build(w: World, people: list[dict[str, Any]]) -> None:
    """The people, their CRM history in both groups and their rows, spread over the audience."""
    interest = w.interest_groups[0]
    rows = []
    for n, p in enumerate(people):
        emails = [f"p{n}.{k}@example.org" for k in range(len(p["rows"]))]
        cid = w.contact(f"p{n}", *emails)
        if p["history"]:
            w.history(cid, GroupStatus(p["history"]), T0 + p["history_hours"] * H)
        if p["interest_history"]:
            w.history(cid, GroupStatus(p["interest_history"]), T0, group=interest)
        rows += [(cid, email, r) for email, r in zip(emails, p["rows"], strict=True)]
    random.Random(len(rows)).shuffle(rows)  # a contact's rows land anywhere in the audience
    for cid, email, r in rows:
        filler_rows(w, r["gap"])
        at = T0 + r["hours"] * H
        data: dict[str, Any] = {"status": r["status"], "status@": at.isoformat()}
        if r["interest"] is not None:
            data["interests"] = {"int0": r["interest"]}
            data["interest-int0"] = r["interest"]
        w.row(email, r["status"], cid, at=at, data=data, sync_status="todo")


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    people=st.lists(person, min_size=1, max_size=6),
    size=st.integers(1, 12),
    shuffle=st.randoms(use_true_random=False),
)
def test_no_chunk_size_or_order_changes_any_outcome(
    db: sa.Connection, people: list[dict[str, Any]], size: int, shuffle: random.Random
) -> None:
    savepoint = db.begin_nested()
    try:
        w = World(db, interests=1)
        build(w, people)
        decide_run(w, 100_000)  # the whole run in one chunk: one read of the CRM
        whole = outcome(w)
    finally:
        savepoint.rollback()

    savepoint = db.begin_nested()
    try:
        w = World(db, interests=1)
        build(w, people)
        decide_run(w, size, shuffle)
        chunked = outcome(w)
    finally:
        savepoint.rollback()

    assert chunked == whole
