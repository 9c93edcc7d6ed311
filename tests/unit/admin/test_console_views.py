"""What the Status page and the Cache browser show, from the actions' answers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.admin.console import views

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
IDLE_PROGRESS = dict.fromkeys(
    ("pages_total", "pages_fetched", "rows_planned", "rows_decided", "unsubmitted"), 0
)


def status(**changes: Any) -> dict[str, Any]:
    return {
        "mailchimp_list_id": "a1b2c3d4e5",
        "group_id": 7,
        "group_title": "Newsletter",
        "stage": "readyToFetch",
        "lock": None,
        "last_sync": "2026-12-07T10:00:00+00:00",
        "last_sync_finished_at": "2026-12-07T10:03:05+00:00",
        "progress": {**IDLE_PROGRESS, "batches_open": 0},
        "batches": [],
        "log": [],
        **changes,
    }


def lock(parked: str | None = None, stale: bool = False) -> dict[str, Any]:
    return {"run_id": "r", "heartbeat_at": None, "parked_reason": parked, "stale": stale}


@pytest.mark.parametrize(
    ("changes", "state", "words"),
    [
        ({}, "idle", "Idle"),
        ({"lock": lock()}, "running", "Running"),
        ({"lock": lock("out of time")}, "parked", "Paused: out of time"),
        ({"lock": lock(stale=True)}, "stale", "Stalled"),
        (
            {"progress": {**IDLE_PROGRESS, "batches_open": 2}},
            "sending",
            "Mailchimp is applying the changes",
        ),
    ],
)
def test_a_card_says_its_state_in_words(changes: dict[str, Any], state: str, words: str) -> None:
    card = views.status_card(status(**changes), NOW)
    assert card.state == state and card.state_text.startswith(words)
    assert card.active is (state in ("running", "sending", "stale"))


def test_a_running_card_shows_its_stage_and_a_bar_per_kind_of_work() -> None:
    progress = {
        "pages_total": 10,
        "pages_fetched": 4,
        "rows_planned": 0,
        "rows_decided": 0,
        "unsubmitted": 0,
        "batches_open": 1,
    }
    batch = {
        "mailchimp_batch_id": "b1",
        "status": "started",
        "submitted_at": "2026-12-07T11:00:00+00:00",
        "finished_operations": 250,
        "errored_operations": 3,
        "total_operations": 1000,
        "stalled": True,
    }
    card = views.status_card(
        status(lock=lock(), stage="readyToFetch", progress=progress, batches=[batch]), NOW
    )
    assert (card.step, card.steps, card.stage_label) == (1, 9, "Fetching members from Mailchimp")
    assert [(b.what, b.done, b.total, b.percent) for b in card.bars] == [
        ("pages fetched", 4, 10, 40),
        ("changes done by Mailchimp", 250, 1000, 25),
    ]
    assert card.batches[0].age == "1 h 00 min" and card.batches[0].stalled


def test_the_counts_say_how_many_agree_and_flag_only_what_needs_a_look() -> None:
    stats = {
        "cache_rows": 100,
        "to_add_to_mailchimp": 3,
        "to_remove_from_mailchimp": 2,
        "failed": 5,
        "updates_unsubmitted": 1,
        "updates_pending": 4,
        "weird": 0,
    }
    card = views.status_card(status(stats=stats, fail_reasons=[[None, 5]]), NOW)
    counts = {c.label: (c.value, c.alert) for c in card.counts}
    assert counts["In sync"] == (90, False)
    assert counts["Cannot sync"] == (5, True)
    assert "Marked in sync, yet apart" not in counts
    assert card.fail_reasons == [("no reason kept", 5)]
    assert card.took == "3 min 05 s" and card.last_sync == "2026-12-07 10:03:05 UTC"
    weird = views.status_card(status(stats={**stats, "weird": 1}), NOW)
    flagged = [(c.label, c.value, c.alert) for c in weird.counts]
    assert ("Marked in sync, yet apart", 1, True) in flagged


def test_the_log_shows_the_newest_lines_first() -> None:
    log = [{"at": f"2026-12-07T10:00:{n:02d}+00:00", "message": f"line {n}"} for n in range(20)]
    card = views.status_card(status(log=log), NOW)
    assert [message for _, message in card.log] == [f"line {n}" for n in range(19, 11, -1)]


@pytest.mark.parametrize(
    ("span", "said"),
    [
        (timedelta(0), "under a second"),
        (timedelta(seconds=12), "12 s"),
        (timedelta(minutes=4, seconds=10), "4 min 10 s"),
        (timedelta(hours=3, minutes=5), "3 h 05 min"),
        (timedelta(seconds=-5), "under a second"),
    ],
)
def test_durations_read_as_people_say_them(span: timedelta, said: str) -> None:
    assert views.duration(span) == said


def test_a_failed_row_is_explained_with_its_reason_and_what_else_stands_out() -> None:
    row = {
        "sync_status": "fail",
        "fail_reason": "cleaned at Mailchimp",
        "civicrm_contact_id": 5,
        "contact": {"is_deleted": True},
        "emails": [{"email": "a@example.org", "on_hold": 1}, {"email": "b@example.org"}],
        "open_updates": [{"id": 1}],
    }
    assert views.explain(row) == [
        "Cannot sync: cleaned at Mailchimp.",
        "Its CRM contact is in the trash.",
        "On hold in the CRM: a@example.org.",
        "1 change(s) on their way to Mailchimp.",
    ]
    assert views.explain({"sync_status": "todo", "civicrm_contact_id": None}) == [
        "Waiting for the next sync to compare both sides.",
        "No CRM contact is matched to this member yet.",
    ]


def test_pages_and_masked_keys() -> None:
    assert views.pages(0, 25, 0) == (1, 1)
    assert views.pages(51, 25, 50) == (3, 3)
    assert views.mask("0123456789abcdef0123456789abcdef-us1") == "••••cdef-us1"
    assert views.mask("short") == "••••"


def test_the_chart_scales_each_run_to_the_largest_shown() -> None:
    runs = [
        {
            "started_at": "2026-12-07T10:00:00+00:00",
            "finished_at": "2026-12-07T10:02:00+00:00",
            "contacts_created": 5,
            "crm_added": 10,
            "crm_removed": 5,
            "mailchimp_updates": 40,
        },
        {
            "started_at": "2026-12-07T11:00:00+00:00",
            "finished_at": "2026-12-07T11:01:00+00:00",
            "contacts_created": 0,
            "crm_added": 0,
            "crm_removed": 0,
            "mailchimp_updates": 0,
        },
    ]
    first, second = views.run_chart(runs)
    assert (first.took, first.crm, first.mailchimp) == ("2 min 00 s", 20, 40)
    assert (first.time_share, first.crm_share, first.mailchimp_share) == (1.0, 0.5, 1.0)
    assert (second.time_share, second.crm_share, second.mailchimp_share) == (0.5, 0.0, 0.0)
    assert views.run_chart([]) == []
