"""Stages 2-8 timed on a 100,000-row audience (``-m slow``; figures printed, not asserted)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

import pytest
import sqlalchemy as sa
from reconciler_support import LIST_ID, T0, World, planned_chunks

from common.db import cache
from common.vocabulary import SyncStatus
from services.reconciler import chunk, stages
from services.reconciler.example_plugins import ContactNamesPlugin

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N = 100_000


def audience(w: World, n: int) -> None:
    """``n`` contacts (half Added to the group, with history) and ``n`` Mailchimp rows:
    80% of them the contacts' emails (unmatched), 20% new subscribed addresses; plus
    ``n / 10`` Added contacts that Mailchimp has never heard of."""
    w.conn.execute(
        sa.text("""
        WITH people AS (
            INSERT INTO civicrm_contact (first_name, last_name, source)
            SELECT 'P' || g, 'Tester', 'bench' FROM generate_series(1, :n + :n / 10) g
            RETURNING id
        ), mails AS (
            INSERT INTO civicrm_email (contact_id, email, is_primary, is_bulkmail)
            SELECT id, 'p' || id || '@example.org', true, true FROM people
        ), hist AS (
            INSERT INTO civicrm_subscription_history (contact_id, group_id, status, date, method)
            SELECT id, :g, 'Added', :t0, 'Admin' FROM people WHERE id % 2 = 0
        )
        INSERT INTO civicrm_group_contact (contact_id, group_id, status)
        SELECT id, :g, 'Added' FROM people WHERE id % 2 = 0
        """),
        {"n": n, "g": w.group, "t0": T0},
    )
    w.conn.execute(
        sa.text("""
        INSERT INTO civicrm_mailchimpsync_cache (mailchimp_list_id, mailchimp_member_id,
            mailchimp_email, mailchimp_status, mailchimp_updated, mailchimp_data, sync_status)
        SELECT :list_id, md5(e), e, s, :t1,
            jsonb_build_object('status', s, 'status@', CAST(:t1s AS text),
                'first_name', 'F', 'last_name', 'L'),
            'todo'
        FROM (SELECT CASE WHEN g % 5 = 0 THEN 'new' || g || '@example.org'
                          ELSE 'p' || ((SELECT min(id) FROM civicrm_contact) + g - 1)
                               || '@example.org' END AS e,
                     CASE WHEN g % 3 = 0 THEN 'unsubscribed' ELSE 'subscribed' END AS s
              FROM generate_series(1, :n) g) AS m
        """),
        {
            "n": n,
            "list_id": LIST_ID,
            "t1": T0 + timedelta(hours=1),
            "t1s": (T0 + timedelta(hours=1)).isoformat(),
        },
    )
    w.conn.execute(sa.text("ANALYZE"))


def timed(label: str, run: Callable[[], object], figures: dict[str, float]) -> object:
    started = time.perf_counter()
    result = run()
    figures[label] = time.perf_counter() - started
    print(f"{label:28s} {figures[label]:7.2f}s  {result}")
    return result


def test_time_every_stage_on_100000_rows(db: sa.Connection) -> None:
    w = World(db, data_sync=True)
    audience(w, N)
    figures: dict[str, float] = {}
    sc = w.sc
    timed("fix_contact_ids", lambda: stages.fix_contact_ids(db, sc), figures)
    timed("create_new_contacts", lambda: stages.create_new_contacts_from_mailchimp(db, sc), figures)
    timed("clean_up_duplicates", lambda: stages.clean_up_duplicates(db, sc), figures)
    timed("add_civi_only", lambda: stages.add_civi_only(db, sc), figures)
    timed("check_for_group_changes", lambda: stages.check_for_group_changes(db, sc, None), figures)
    timed(
        "check_for_data_updates",
        lambda: stages.check_for_data_updates(db, sc, [ContactNamesPlugin()]),
        figures,
    )

    def reconcile() -> dict[str, int]:
        totals: dict[str, int] = {}
        for row_ids in planned_chunks(db):
            for key, n in chunk.reconcile_chunk(
                db, sc, row_ids, T0 + timedelta(days=1)
            ).counts.items():
                totals[key] = totals.get(key, 0) + n
        return totals

    timed("reconcile (1000-row chunks)", reconcile, figures)
    print(f"{'total':28s} {sum(figures.values()):7.2f}s")
    assert cache.status_counts(db, LIST_ID)[SyncStatus.TODO] == 0
