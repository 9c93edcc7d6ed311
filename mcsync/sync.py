"""``mcsync fetchandreconcile``: enqueue a sync of each connection, optionally follow it.

With a broker URL the command only enqueues (and, with ``--wait``, watches Postgres while
the workers do the rest). With the embedded default it runs every service's workers in its
own process until the runs are done and their batches' results processed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TextIO

import sqlalchemy as sa

from common.broker import build_broker, send
from common.db import runs, stats
from common.db.config import SyncConnection
from common.db.engine import create_engine, database_url
from common.runs import stopped_as_asked
from common.settings import Settings
from common.sync_request import SyncRequest as SyncRequest  # re-exported: callers build one
from common.sync_request import select_connections
from mcsync import workers


class StillRunning(TimeoutError):
    """``--wait`` gave up following the runs; they carry on without us."""


@dataclass(frozen=True)
class Followed:
    """What following the runs saw: each audience's changes, and the audiences whose run did
    not complete (parked: refused by Mailchimp, out of ``max_time``; not one stopped where
    ``stop_on`` asked) with why."""

    changes: list[stats.Changes]
    unfinished: dict[str, str]


def fetch_and_reconcile(
    settings: Settings,
    request: SyncRequest,
    wait: bool,
    out: TextIO,
    poll: float = 1.0,
    give_up_after: float | None = None,
) -> Followed:
    """Enqueue a run per connection; with ``wait`` (always when embedded) follow them until
    each has completed or parked.

    ``give_up_after`` seconds of following raise ``StillRunning`` (None: follow to the end).
    """
    request.validate()
    follow = _Follow(out, poll, give_up_after)
    if settings.embedded_broker:
        return _run_embedded(settings, request, follow)
    engine = create_engine(database_url(settings))
    try:
        connections, before = _prepare(engine, request)
        broker = build_broker(settings)
        send(broker, *(request.message(c.list_id) for c in connections))
        broker.close()
        print(f"enqueued a sync of {len(connections)} audience(s)", file=out)
        return follow(engine, connections, before) if wait else Followed([], {})
    finally:
        engine.dispose()


def _run_embedded(settings: Settings, request: SyncRequest, follow: _Follow) -> Followed:
    running = workers.build(settings, workers.SERVICES, poll_seconds=1.0)
    running.start()
    try:
        engine = running.runtime.engine
        connections, before = _prepare(engine, request)
        running.runtime.send(*(request.message(c.list_id) for c in connections))
        return follow(engine, connections, before)
    finally:
        running.stop()


@dataclass(frozen=True)
class _Before:
    started_at: datetime
    marks: dict[str, tuple[str | None, datetime | None, str | None]]


def _mark(conn: sa.Connection, list_id: str) -> tuple[str | None, datetime | None, str | None]:
    state = runs.read(conn, list_id)
    return (
        (None, None, None)
        if state is None
        else (
            state.run_id,
            state.last_sync_at,
            state.parked_reason,
        )
    )


def _prepare(engine: sa.Engine, request: SyncRequest) -> tuple[list[SyncConnection], _Before]:
    with engine.connect() as conn:
        connections = select_connections(conn, request.group_id)
        marks = {c.list_id: _mark(conn, c.list_id) for c in connections}
    return connections, _Before(datetime.now(UTC), marks)


@dataclass(frozen=True)
class _Follow:
    out: TextIO
    poll: float
    give_up_after: float | None

    def __call__(
        self, engine: sa.Engine, connections: Sequence[SyncConnection], before: _Before
    ) -> Followed:
        shown: dict[str, str] = {}
        unfinished: dict[str, str] = {}
        waiting = {c.list_id for c in connections}
        deadline = None if self.give_up_after is None else time.monotonic() + self.give_up_after
        while waiting:
            if deadline is not None and time.monotonic() > deadline:
                still = ", ".join(sorted(waiting))
                raise StillRunning(f"still running after {self.give_up_after:.0f} s: {still}")
            time.sleep(self.poll)
            with engine.connect() as conn:
                for list_id in sorted(waiting):
                    line, ended = _look(conn, list_id, before)
                    if shown.get(list_id) != line:
                        print(f"[{list_id}] {line}", file=self.out, flush=True)
                        shown[list_id] = line
                    if ended is not None:
                        waiting.discard(list_id)
                        if ended:
                            unfinished[list_id] = ended
        with engine.connect() as conn:
            changes = [_summary(conn, c, before.started_at, self.out) for c in connections]
        return Followed(changes, unfinished)


def _look(conn: sa.Connection, list_id: str, before: _Before) -> tuple[str, str | None]:
    """The line to show for the audience's run, and whether it has ended: None while it
    goes on, "" once completed and settled, else why it stopped (parked)."""
    now = stats.progress(conn, list_id)
    if now is None:
        return "waiting for the run to start", None
    moved = _mark(conn, list_id) != before.marks[list_id]
    line = f"{now.stage:<38} {_stage_bar(now)}".rstrip()
    if now.parked_reason:
        line += f"  (parked: {now.parked_reason})"
    if not moved:
        return line, None
    if now.parked_reason is not None:
        return line, "" if stopped_as_asked(now.parked_reason) else now.parked_reason
    return line, "" if now.settled else None


def _stage_bar(now: stats.Progress) -> str:
    """A bar for the work of the stage at hand (the CRM stages are single statements)."""
    if now.stage == "readyToFetch" and now.active:
        if not now.pages_total:
            return "counting the members at Mailchimp"
        return _bar(now.pages_fetched, now.pages_total, "pages")
    if now.stage == "readyToReconcileQueue":
        return _bar(now.rows_decided, now.rows_planned, "rows decided")
    if now.unsubmitted or now.batches_open:
        return f"{now.unsubmitted} updates to submit, {now.batches_open} batches at Mailchimp"
    return ""


def _bar(done: int, total: int, what: str, width: int = 24) -> str:
    filled = width * done // total if total else width
    return f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {what}"


def _summary(
    conn: sa.Connection, connection: SyncConnection, since: datetime, out: TextIO
) -> stats.Changes:
    changes = stats.changes_since(conn, connection, since)
    now = stats.agreement(conn, connection)
    print(
        f"[{connection.list_id}] CRM: {changes.contacts_created} contacts created, "
        f"{changes.crm_added} added to and {changes.crm_removed} removed from groups. "
        f"Mailchimp: {changes.mailchimp_done} changes made, {changes.mailchimp_failed} refused. "
        f"{now.cannot_sync} cannot sync. "
        + (
            "Both sides agree."
            if now.disagreements == 0
            else f"{now.disagreements} rows still differ."
        ),
        file=out,
    )
    for reason, rows in now.fail_reasons:
        why = reason or "no reason kept"
        print(f"[{connection.list_id}]   {rows} cannot sync: {why}", file=out)
    return changes
