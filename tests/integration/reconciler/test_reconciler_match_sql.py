"""The matching statements (readyToFixContactIds, and a fetched page linking its new rows)
agree with the pure ``match_rows``."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
import sqlalchemy as sa
from reconciler_support import LIST_ID, T0, World

from common.db import cache
from common.vocabulary import GroupStatus
from services.reconciler import stages
from services.reconciler.match import Owner, RowToMatch, match_rows

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("matched_by", ["readyToFixContactIds", "the fetched page"])
def test_the_sql_matching_agrees_with_match_rows_on_a_varied_dataset(
    db: sa.Connection, matched_by: str
) -> None:
    rng = random.Random(20261123)
    w = World(db)
    other_group = w.interest_groups[0] if w.interest_groups else None
    owners: dict[str, list[Owner]] = {}
    for n in range(400):
        address = f"shared{rng.randrange(120)}@example.org"
        shown = address.upper() if rng.random() < 0.2 else address
        deleted = rng.random() < 0.15
        cid = w.contact(f"c{n}", shown, deleted=deleted)
        standing = rng.choice(["added", "removed", "pending", "history", "other", "none"])
        if standing in ("added", "removed", "pending"):
            status = {"added": GroupStatus.ADDED, "removed": GroupStatus.REMOVED}.get(
                standing, GroupStatus.PENDING
            )
            w.history(cid, status, T0)
        elif standing == "history":
            w.history(cid, GroupStatus.ADDED, T0)
            w.history(cid, GroupStatus.REMOVED, T0 + timedelta(hours=1))
        elif standing == "other" and other_group is not None:
            w.history(cid, GroupStatus.ADDED, T0, group=other_group)
        owners.setdefault(address, []).append(
            Owner(
                cid,
                is_deleted=deleted,
                added_to_subscription_group=standing == "added",
                has_history_in_subscription_group=standing
                in ("added", "removed", "pending", "history"),
            )
        )
    rows = []
    for n in range(150):
        email = f"shared{n}@example.org"
        email = email.title() if n % 7 == 0 else email
        rows.append(RowToMatch(n, email))

    if matched_by == "readyToFixContactIds":
        for row in rows:
            w.row(row.email, "subscribed", member_id=f"m{row.cache_id}")
        stages.fix_contact_ids(db, w.sc)
    else:
        fetched = [
            cache.FetchedRow(f"m{row.cache_id}", row.email, "subscribed", T0, {}) for row in rows
        ]
        cache.upsert_fetched(db, LIST_ID, w.group, fetched)

    expected = {f"m{m.cache_id}": m.contact_id for m in match_rows(rows, owners)}
    found = {
        r["mailchimp_member_id"]: r["civicrm_contact_id"]
        for r in w.rows().values()
        if r["civicrm_contact_id"] is not None
    }
    assert found == expected
    phases = {m.phase for m in match_rows(rows, owners)}
    assert len(phases) == 4
