from datetime import UTC, datetime, timedelta

import pytest

from common.runs import (
    Continue,
    Finish,
    InvalidRunParameter,
    Park,
    RunLimits,
    after,
    fetch_since,
    next_step,
    parse_max_time,
    parse_stop_on,
)
from common.vocabulary import Stage

START = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def test_stages_follow_the_seed_order_skipping_data_updates_without_a_data_sync() -> None:
    walked = [Stage.READY_TO_FETCH]
    while (stage := after(walked[-1], data_sync=False)) is not None:
        walked.append(stage)

    assert Stage.READY_TO_CHECK_FOR_DATA_UPDATES not in walked
    assert walked[-1] is Stage.READY_TO_SUBMIT_UPDATES
    assert len(walked) == len(Stage) - 1


def test_a_data_sync_checks_for_data_updates_before_reconciling() -> None:
    assert after(Stage.READY_TO_CHECK_FOR_GROUP_CHANGES, data_sync=True) is (
        Stage.READY_TO_CHECK_FOR_DATA_UPDATES
    )
    assert after(Stage.READY_TO_CHECK_FOR_GROUP_CHANGES, data_sync=False) is (
        Stage.READY_TO_RECONCILE_QUEUE
    )


def test_a_run_finishes_after_submitting_updates() -> None:
    assert next_step(Stage.READY_TO_SUBMIT_UPDATES, RunLimits(START), START) == Finish()


def test_a_run_parks_before_its_stop_on_stage() -> None:
    limits = RunLimits(START, stop_on=Stage.READY_TO_SUBMIT_UPDATES)

    step = next_step(Stage.READY_TO_RECONCILE_QUEUE, limits, START)

    assert step == Park(
        Stage.READY_TO_SUBMIT_UPDATES, "stopped before readyToSubmitUpdates (stop_on)"
    )


def test_a_run_parks_when_its_max_time_is_spent() -> None:
    limits = RunLimits(START, max_time=120)

    assert next_step(Stage.READY_TO_FETCH, limits, START + timedelta(seconds=119)) == Continue(
        Stage.READY_TO_FIX_CONTACT_IDS
    )
    parked = next_step(Stage.READY_TO_FETCH, limits, START + timedelta(seconds=120))
    assert isinstance(parked, Park)
    assert parked.stage is Stage.READY_TO_FIX_CONTACT_IDS


def test_max_time_zero_means_unlimited() -> None:
    limits = RunLimits(START, max_time=0)

    step = next_step(Stage.READY_TO_FETCH, limits, START + timedelta(days=3))

    assert step == Continue(Stage.READY_TO_FIX_CONTACT_IDS)


LAST_SYNC = datetime(2026, 10, 30, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("since", "last_sync", "override", "expected"),
    [
        (None, LAST_SYNC, False, LAST_SYNC - timedelta(hours=2)),
        (None, None, False, None),
        ("ever", LAST_SYNC, False, None),
        ("2019-12-11", LAST_SYNC, False, datetime(2019, 12, 10, 22, 0, tzinfo=UTC)),
        (None, LAST_SYNC, True, None),
    ],
    ids=[
        "missing: since the last sync with a two-hour overlap",
        "never synced: everything",
        "ever: everything",
        "a date: that date with a two-hour overlap",
        "an override forces a full fetch",
    ],
)
def test_fetch_since(
    since: str | None, last_sync: datetime | None, override: bool, expected: datetime | None
) -> None:
    assert fetch_since(since, last_sync, override) == expected


@pytest.mark.parametrize("value", ["yesterday", "2019-13-45", "11/12/2019"])
def test_a_malformed_since_is_refused(value: str) -> None:
    with pytest.raises(InvalidRunParameter, match="since"):
        fetch_since(value, None, False)


def test_stop_on_takes_only_seed_stage_names() -> None:
    assert parse_stop_on("readyToSubmitUpdates") is Stage.READY_TO_SUBMIT_UPDATES
    assert parse_stop_on(None) is None
    with pytest.raises(InvalidRunParameter, match="stop_on"):
        parse_stop_on("readyToParty")


@pytest.mark.parametrize(("value", "expected"), [(None, 300), ("", 300), ("0", 0), (120, 120)])
def test_max_time_defaults_to_five_minutes(value: int | str | None, expected: int) -> None:
    assert parse_max_time(value) == expected


@pytest.mark.parametrize("value", ["-1", "soon", -5])
def test_a_malformed_max_time_is_refused(value: int | str) -> None:
    with pytest.raises(InvalidRunParameter, match="max_time"):
        parse_max_time(value)
