"""The stage machine of one audience's sync, as pure functions over plain data.

A run walks the seed's stages in order. After each unit of work the machine says what comes
next: go on to a stage, park (``stop_on`` reached or ``max_time`` spent; the next trigger
resumes from the parked stage), or finish (the audience returns to ``readyToFetch``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from common.vocabulary import Stage

OVERLAP = timedelta(hours=2)
"""Mailchimp's ``since_last_changed`` is strictly after and its clocks drift: look back."""

STAGE_ORDER: tuple[Stage, ...] = tuple(Stage)


class Service(StrEnum):
    FETCHER = "fetcher"
    RECONCILER = "reconciler"
    SUBMITTER = "submitter"


STAGE_SERVICE: dict[Stage, Service] = {stage: Service.RECONCILER for stage in STAGE_ORDER} | {
    Stage.READY_TO_FETCH: Service.FETCHER,
    Stage.READY_TO_SUBMIT_UPDATES: Service.SUBMITTER,
}


class InvalidRunParameter(ValueError):
    """A ``fetchandreconcile`` parameter is malformed; the message names it."""


@dataclass(frozen=True)
class RunLimits:
    """What bounds a run: the seed's ``stop_on``, ``max_time`` (0 = unlimited) and data sync."""

    started_at: datetime
    max_time: int = 300
    stop_on: Stage | None = None
    data_sync: bool = False


@dataclass(frozen=True)
class Continue:
    stage: Stage


@dataclass(frozen=True)
class Park:
    stage: Stage
    reason: str


@dataclass(frozen=True)
class Finish:
    pass


Step = Continue | Park | Finish


def parse_stop_on(value: str | None) -> Stage | None:
    if not value:
        return None
    try:
        return Stage(value)
    except ValueError:
        names = ", ".join(stage.value for stage in STAGE_ORDER)
        raise InvalidRunParameter(f"stop_on must be one of {names}; got {value!r}") from None


def parse_max_time(value: int | str | None) -> int:
    if value is None or value == "":
        return 300
    try:
        seconds = int(value)
    except (TypeError, ValueError):
        seconds = -1
    if seconds < 0:
        raise InvalidRunParameter(f"max_time must be a whole number of seconds >= 0; got {value!r}")
    return seconds


def after(stage: Stage, data_sync: bool) -> Stage | None:
    """The stage that follows ``stage`` in this run, or None when the run is complete."""
    index = STAGE_ORDER.index(stage) + 1
    if index == len(STAGE_ORDER):
        return None
    following = STAGE_ORDER[index]
    if following is Stage.READY_TO_CHECK_FOR_DATA_UPDATES and not data_sync:
        return after(following, data_sync)
    return following


STOPPED_AS_ASKED = "(stop_on)"
CRM_UNFIT = "the CRM cannot be synced: "  # a parked reason's start: CiviCRM's problems follow


def stopped_as_asked(parked_reason: str) -> bool:
    """The run was parked because ``stop_on`` asked for it, not for want of something."""
    return parked_reason.endswith(STOPPED_AS_ASKED)


def next_step(completed: Stage, limits: RunLimits, now: datetime) -> Step:
    """What to do once ``completed`` has been done."""
    following = after(completed, limits.data_sync)
    if following is None:
        return Finish()
    if following is limits.stop_on:
        return Park(following, f"stopped before {following.value} {STOPPED_AS_ASKED}")
    if out_of_time(limits, now):
        return Park(following, f"max_time of {limits.max_time} s reached")
    return Continue(following)


def out_of_time(limits: RunLimits, now: datetime) -> bool:
    """True when a bounded run has spent its ``max_time``; 0 means unlimited."""
    return limits.max_time > 0 and now - limits.started_at >= timedelta(seconds=limits.max_time)


def fetch_since(
    since: str | None, last_sync: datetime | None, override_set: bool
) -> datetime | None:
    """The ``since_last_changed`` to fetch with; None means fetch every member.

    Missing: the last sync minus the overlap (never synced: everything). A date: that date
    minus the overlap. ``ever``: everything (a very old date hangs Mailchimp's API). An
    override forces a full fetch, since every row has to be decided again.
    """
    if override_set or since == "ever":
        return None
    if not since:
        return None if last_sync is None else last_sync - OVERLAP
    return parse_since(since) - OVERLAP


def parse_since(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidRunParameter(
            f"since must be 'ever' or a date such as 2019-12-11; got {value!r}"
        ) from None
    # A bare date or time without an offset is read as UTC, the clock Mailchimp reports in.
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
