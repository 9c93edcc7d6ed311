"""The fetch stage: start (or resume) a run, split the audience into pages, merge each page.

Pages are fetched in parallel by as many fetcher processes as ops run, each page merged into
the cache in one bulk statement; the last page to land moves the run on. Every handler is
safe to run twice: a page already fetched is merged again to the same result, and a message
for a run or stage that is no longer current finds nothing to do.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from common.db import cache, config, runs
from common.db.config import SyncConnection
from common.db.runs import RunParams, RunState
from common.mailchimp import MailchimpClient, MailchimpError
from common.member_data import MEMBER_FIELDS, FetchedMember
from common.messages import FetchPage, Message, StartSync
from common.metrics import MEMBERS_FETCHED
from common.progress import after_stage, messages_for, park_refused, unit_of_stage
from common.runs import parse_max_time, parse_since, parse_stop_on
from common.vocabulary import Stage

log = logging.getLogger(__name__)

PAGE_SIZE = 1000
PAGE_FIELDS = ",".join([*(f"members.{name}" for name in MEMBER_FIELDS), "total_items"])
FETCH = Stage.READY_TO_FETCH


@dataclass(frozen=True)
class Deps:
    """What the fetch handlers need from their process."""

    engine: sa.Engine
    mailchimp: Callable[[str], MailchimpClient]
    clock: Callable[[], datetime]
    stale_after: timedelta = runs.STALE_AFTER


def validate(message: StartSync) -> RunParams:
    """The run's parameters, refused with a clear error before anything is written."""
    parse_stop_on(message.stop_on)
    parse_max_time(message.max_time)
    if message.since and message.since != "ever":
        parse_since(message.since)
    return RunParams(
        message.since, message.max_time, message.stop_on, message.with_data, message.trigger_id
    )


def start_sync(deps: Deps, message: StartSync) -> list[Message]:
    """Start a run, resume a parked or abandoned one, or log that one is already active."""
    params = validate(message)
    with deps.engine.begin() as conn:
        outcome = _begin(conn, message, params, deps.clock(), deps.stale_after)
    if isinstance(outcome, list):
        return outcome
    try:
        return plan_fetch(deps, *outcome)
    except MailchimpError as error:
        return park_refused(
            deps.engine, outcome[1], FETCH, "to count the members", error, deps.clock
        )


ToPlan = tuple[SyncConnection, RunState]


def _begin(
    conn: sa.Connection,
    message: StartSync,
    params: RunParams,
    now: datetime,
    stale_after: timedelta,
) -> list[Message] | ToPlan:
    connection = config.connection_for(conn, message.list_id)
    if connection is None:
        log.warning("audience %s has no sync connection; ignored", message.list_id)
        return []
    state = runs.lock(conn, message.list_id)
    if state.active and state.params.trigger_id == message.trigger_id:
        return _carry_on(conn, connection, state, now)
    if message.force_restart:
        state = runs.reset(conn, message.list_id, now)
    if state.active and not state.stale(now, stale_after):
        runs.log(conn, state.list_id, f"already running ({state.stage}); trigger ignored", now)
        return []
    if state.run_id is not None:
        return _resume(conn, connection, state, params, now)
    state = runs.start(conn, state, params, connection.override_set, now)
    runs.forget_pages(conn, state.list_id, keep_run=state.run_id)
    runs.log(conn, state.list_id, _started(state), now)
    return connection, state


def _resume(
    conn: sa.Connection,
    connection: SyncConnection,
    state: RunState,
    params: RunParams,
    now: datetime,
) -> list[Message] | ToPlan:
    why = "parked" if state.parked else "abandoned (no heartbeat)"
    old_run = state.run_id
    state = runs.resume(conn, state, params, now)
    assert old_run is not None and state.run_id is not None
    runs.move_pages(conn, state.list_id, old_run, state.run_id)
    runs.log(conn, state.list_id, f"resuming a run {why} at {state.stage}", now)
    if state.stage is not FETCH:
        return messages_for(state)
    return _fetch_from(conn, connection, state, now)


def _carry_on(
    conn: sa.Connection, connection: SyncConnection, state: RunState, now: datetime
) -> list[Message] | ToPlan:
    """The trigger that started the active run, delivered again (its worker died, or it
    failed and is retried): the fetch goes on from where it stands; a run past its fetch
    was started by it in full, and its own messages carry it on."""
    runs.log(conn, state.list_id, f"trigger delivered again: its run goes on at {state.stage}", now)
    if state.stage is not FETCH:
        return []
    return _fetch_from(conn, connection, state, now)


def _fetch_from(
    conn: sa.Connection, connection: SyncConnection, state: RunState, now: datetime
) -> list[Message] | ToPlan:
    """The fetch of the (locked) run from where it stands: its pages still to fetch, the
    next stage when all are fetched, or the pages to plan when none was planned."""
    assert state.run_id is not None
    pending = runs.pages_of(conn, state.list_id, state.run_id, fetched=False)
    if pending:
        return _page_messages(state, pending)
    if runs.pages_of(conn, state.list_id, state.run_id, fetched=True):
        return _fetched_all(conn, connection, state, now)
    return connection, state


def plan_fetch(deps: Deps, connection: SyncConnection, state: RunState) -> list[Message]:
    """Count the members to fetch, record one page per 1000, and send a message per page."""
    first = deps.mailchimp(connection.api_key).get(
        f"/lists/{state.list_id}/members", _page_query(state.fetch_since, 0, count=1)
    )
    offsets = list(range(0, int(first["total_items"]), PAGE_SIZE))
    with deps.engine.begin() as conn:
        state = runs.lock(conn, state.list_id)
        if state.run_id is None or not state.current(state.run_id, FETCH):
            return []
        runs.add_pages(conn, state.list_id, state.run_id, offsets)
        runs.log(conn, state.list_id, f"fetching {first['total_items']} members", deps.clock())
        if not offsets:
            return _fetched_all(conn, connection, state, deps.clock())
    return _page_messages(state, offsets)


def fetch_page(deps: Deps, message: FetchPage) -> list[Message]:
    """Fetch one page and merge it into the cache; the last page moves the run on."""
    unit = unit_of_stage(deps.engine, message.list_id, message.run_id, FETCH, deps.clock)
    if unit is None:
        return []
    state, connection = unit
    try:
        page = deps.mailchimp(connection.api_key).get(
            f"/lists/{message.list_id}/members", _page_query(state.fetch_since, message.offset)
        )
    except MailchimpError as error:
        doing = f"the page of members at {message.offset}"
        return park_refused(deps.engine, state, FETCH, doing, error, deps.clock)
    members = [FetchedMember.from_api(member) for member in page["members"]]
    MEMBERS_FETCHED.labels(message.list_id).inc(len(members))
    with deps.engine.begin() as conn:
        if not runs.share(conn, message.list_id, message.run_id, FETCH):
            return []
        cache.merge_fetched(conn, message.list_id, connection.subscription_group_id, members)
        runs.mark_fetched(
            conn, message.list_id, message.run_id, message.offset, len(members), deps.clock()
        )
    # Not inside the page's transaction: that one shares the status row with other pages.
    with deps.engine.begin() as conn:
        runs.heartbeat(conn, message.list_id, message.run_id, deps.clock())
    with deps.engine.begin() as conn:
        fetched = runs.members_fetched(conn, message.list_id, message.run_id)
        cache.refresh_statistics_if_outgrown(conn, message.list_id, fetched)
    return _finish_fetch_if_done(deps, connection, message)


def _finish_fetch_if_done(
    deps: Deps, connection: SyncConnection, message: FetchPage
) -> list[Message]:
    with deps.engine.begin() as conn:
        if runs.pages_of(conn, message.list_id, message.run_id, fetched=False):
            return []
        state = runs.lock(conn, message.list_id)
        if not state.current(message.run_id, FETCH):
            return []
        return _fetched_all(conn, connection, state, deps.clock())


def _fetched_all(
    conn: sa.Connection, connection: SyncConnection, state: RunState, now: datetime
) -> list[Message]:
    assert state.run_id is not None
    fetched = runs.pages_of(conn, state.list_id, state.run_id, fetched=True)
    runs.log(conn, state.list_id, f"fetched {len(fetched)} pages", now)
    cache.refresh_statistics(conn)
    return after_stage(conn, state, FETCH, connection.data_sync, now)


def _page_messages(state: RunState, offsets: list[int]) -> list[Message]:
    assert state.run_id is not None
    return [FetchPage(list_id=state.list_id, run_id=state.run_id, offset=o) for o in offsets]


def _page_query(since: datetime | None, offset: int, count: int = PAGE_SIZE) -> dict[str, Any]:
    # A fixed window sorted by last change: members changed during the fetch move to the
    # end instead of shifting the pages before them.
    query: dict[str, Any] = {
        "count": count,
        "offset": offset,
        "fields": PAGE_FIELDS,
        "sort_field": "last_changed",
        "sort_dir": "ASC",
    }
    if since is not None:
        query["since_last_changed"] = since.isoformat()
    return query


def _started(state: RunState) -> str:
    window = "all members" if state.fetch_since is None else f"since {state.fetch_since}"
    return f"sync started ({window})"
