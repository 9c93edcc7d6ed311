"""SQL for submitting updates to Mailchimp in batches and applying the batches' results.

The submitter's handlers call these; every statement is set-based (one statement per kind of
change, never one per update row). The life of a batch row (``civicrm_mailchimpsync_batch``):

- *posting*: ``mailchimp_batch_id`` NULL, ``status`` NULL, ``submitted_at`` set. Born so, in the
  transaction that claims its updates: ``submitted_at`` is the moment the POST was about to
  be sent, so a row in this state may or may not exist at Mailchimp.
- *posted*: ``mailchimp_batch_id`` and Mailchimp's ``status`` recorded; results not processed.
- *processing* / *processed*: ``response_processed`` 1 / 2.
- *aborted*: ``status = 'aborted'`` and ``response_processed = 2``: the batch was never created
  at Mailchimp (or was lost there); its updates were released or completed.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from common.db.params import json_rows
from common.db.schema import batch, cache, update
from common.vocabulary import PLUGIN_DATA_SENT, BatchStatus, ResponseProcessed, SyncStatus

STALL_AFTER = timedelta(hours=1)
"""A batch whose status and finished operations have not changed for this long is stalled:
logged by the poller, marked on the Status page."""


class _Moves(Protocol):
    @property
    def progressed_at(self) -> datetime | None: ...
    @property
    def submitted_at(self) -> datetime | None: ...


def last_progress(row: _Moves) -> datetime | None:
    """When the batch last moved on: its status or finished operations changed, or it was
    submitted."""
    return row.progressed_at or row.submitted_at


_CLAIM_LOCK_NAMESPACE = "mailchimpsync-submit"
_POLL_LOCK = "hashtext('mailchimpsync-poll')"
# An update and the Mailchimp identity of its cache row: what claiming and result handling
# both read (the update joined to its row).
_UPDATE_AND_ROW = (
    update.c.id,
    update.c.mailchimpsync_cache_id,
    update.c.data,
    cache.c.mailchimp_member_id,
    cache.c.mailchimp_email,
)


@dataclass(frozen=True)
class ClaimedUpdate:
    """One open, unsubmitted update with the Mailchimp identity of its cache row."""

    update_id: int
    cache_id: int
    list_id: str
    member_id: str | None
    mailchimp_email: str | None
    data: Any


@dataclass(frozen=True)
class BatchRow:
    """One of our batch rows, as far as the submitter needs it."""

    id: int
    list_id: str
    mailchimp_batch_id: str | None
    status: str | None
    submitted_at: datetime | None
    completed_at: datetime | None
    finished_operations: int
    total_operations: int
    response_processed: int
    checked_at: datetime | None = None  # when the poller last read it from Mailchimp
    progressed_at: datetime | None = None  # when its status or finished operations changed


@dataclass(frozen=True)
class MailchimpBatchState:
    """What ``GET /batches/{id}`` said about a batch."""

    status: str
    finished_operations: int
    errored_operations: int
    total_operations: int
    completed_at: datetime | None


@dataclass(frozen=True)
class OpenUpdate:
    """An update of a batch whose result is not applied yet, with its row's current state."""

    update_id: int
    cache_id: int
    data: Any
    member_id: str | None
    email: str | None
    updated: datetime | None
    mailchimp_data: Any = None


@dataclass(frozen=True)
class Completion:
    update_id: int
    error: str | None


@dataclass(frozen=True)
class CacheSuccess:
    cache_id: int
    member_id: str | None
    email: str | None
    mailchimp_status: str
    updated: datetime | None
    mailchimp_data: Any = None


@dataclass(frozen=True)
class Retry:
    cache_id: int
    data: Any


# --- claiming and posting ----------------------------------------------------------------------


def lock_audience_for_claim(conn: sa.Connection, list_id: str) -> None:
    """Serialise claims of one audience until the transaction ends.

    Two claims in parallel could each send one of two updates of the same row; with this lock
    the second claim sees the first one's batch and defers the row as busy.
    """
    conn.execute(
        sa.text("SELECT pg_advisory_xact_lock(hashtext(:namespace), hashtext(:list_id))"),
        {"namespace": _CLAIM_LOCK_NAMESPACE, "list_id": list_id},
    )


def claim_unsubmitted(
    conn: sa.Connection, list_id: str, after_update_id: int, limit: int
) -> list[ClaimedUpdate]:
    """Lock up to ``limit`` unsubmitted open updates of the audience, oldest first.

    ``after_update_id`` pages past updates this submission already deferred.
    """
    query = (
        sa.select(*_UPDATE_AND_ROW)
        .join(cache, cache.c.id == update.c.mailchimpsync_cache_id)
        .where(cache.c.mailchimp_list_id == list_id)
        .where(update.c.mailchimpsync_batch_id.is_(None), update.c.completed.is_(False))
        .where(update.c.id > after_update_id)
        .order_by(update.c.id)
        .limit(limit)
        .with_for_update(of=update, skip_locked=True)
    )
    return [
        ClaimedUpdate(row.id, row.mailchimpsync_cache_id, list_id, *row[3:5], row.data)
        for row in conn.execute(query)
    ]


def busy_cache_ids(conn: sa.Connection, cache_ids: Collection[int]) -> set[int]:
    """Rows among ``cache_ids`` with an update in a batch whose results are not applied yet."""
    if not cache_ids:
        return set()
    query = (
        sa.select(update.c.mailchimpsync_cache_id)
        .distinct()
        .join(batch, batch.c.id == update.c.mailchimpsync_batch_id)
        .where(update.c.mailchimpsync_cache_id == _any_id(cache_ids))
        .where(batch.c.response_processed != ResponseProcessed.DONE)
    )
    return set(conn.scalars(query))


def create_posting_batch(
    conn: sa.Connection, list_id: str, update_ids: Sequence[int], now: datetime
) -> int:
    """Insert a batch row in the *posting* state and attach ``update_ids`` to it."""
    batch_id = int(
        conn.execute(
            sa.insert(batch)
            .values(mailchimp_list_id=list_id, submitted_at=now)
            .returning(batch.c.id)
        ).scalar_one()
    )
    conn.execute(
        sa.update(update)
        .where(update.c.id == _any_id(update_ids))
        .values(mailchimpsync_batch_id=batch_id)
    )
    return batch_id


def complete_updates(conn: sa.Connection, completions: Sequence[Completion]) -> list[int]:
    """Complete open updates (error None: success); return the ids completed by this call.

    Updates completed already are left alone: applying the same results twice changes nothing.
    """
    if not completions:
        return []
    rows = [{"id": c.update_id, "error": c.error} for c in completions]
    return list(conn.scalars(_COMPLETE_UPDATES, {"rows": json_rows(rows)}))


def set_row_status_for_updates(
    conn: sa.Connection, update_ids: Collection[int], sync_status: SyncStatus
) -> None:
    """Set ``sync_status`` (not ``fail``: see ``fail_rows_of_updates``) of the cache rows of
    these updates."""
    if not update_ids:
        return
    rows = sa.select(update.c.mailchimpsync_cache_id).where(update.c.id == _any_id(update_ids))
    conn.execute(sa.update(cache).where(cache.c.id.in_(rows)).values(**_row_status(sync_status)))


def fail_rows_of_updates(conn: sa.Connection, update_ids: Collection[int]) -> None:
    """The cache rows of these completed updates fail, each with its update's error as its
    ``fail_reason`` (a row with several takes one of them); a failed row also forgets the
    plugin data it was sent, so the next decision queues that data again."""
    if not update_ids:
        return
    forget = cache.c.civicrm_data.op("-", return_type=JSONB)(sa.literal(PLUGIN_DATA_SENT, sa.Text))
    conn.execute(
        sa.update(cache)
        .where(cache.c.id == update.c.mailchimpsync_cache_id, update.c.id == _any_id(update_ids))
        .values(
            sync_status=SyncStatus.FAIL, fail_reason=update.c.error_response, civicrm_data=forget
        )
    )


def record_posted(
    conn: sa.Connection, batch_row_id: int, mailchimp_batch_id: str, state: str, marker: datetime
) -> bool:
    """Record Mailchimp's id of a *posting* batch; False if the row left that state meanwhile."""
    statement = (
        sa.update(batch)
        .where(batch.c.id == batch_row_id, batch.c.mailchimp_batch_id.is_(None))
        .where(batch.c.submitted_at == marker, batch.c.status.is_(None))
        .values(mailchimp_batch_id=mailchimp_batch_id, status=state)
    )
    return conn.execute(statement).rowcount == 1


def release_posting_batch(conn: sa.Connection, batch_row_id: int, marker: datetime) -> bool:
    """A *posting* batch known not to exist at Mailchimp: abort it, its updates are unsubmitted
    again. False (and no change) if the row left the *posting* state meanwhile."""
    aborted = conn.execute(
        sa.update(batch)
        .where(batch.c.id == batch_row_id, batch.c.mailchimp_batch_id.is_(None))
        .where(batch.c.submitted_at == marker, batch.c.status.is_(None))
        .values(status=BatchStatus.ABORTED, response_processed=ResponseProcessed.DONE)
    ).rowcount
    if aborted != 1:
        return False
    conn.execute(
        sa.update(update)
        .where(update.c.mailchimpsync_batch_id == batch_row_id, update.c.completed.is_(False))
        .values(mailchimpsync_batch_id=None)
    )
    return True


def posting_batches(
    conn: sa.Connection, older_than: datetime, list_id: str | None = None
) -> list[BatchRow]:
    """Batch rows left in the *posting* state since before ``older_than`` (oldest first)."""
    query = _batch_rows().where(batch.c.mailchimp_batch_id.is_(None), batch.c.status.is_(None))
    query = query.where(batch.c.submitted_at < older_than)
    if list_id is not None:
        query = query.where(batch.c.mailchimp_list_id == list_id)
    return [BatchRow(*row) for row in conn.execute(query.order_by(batch.c.id))]


def operation_update_ids(conn: sa.Connection, batch_row_id: int) -> set[int]:
    """Ids of the updates attached to a batch row (its operations are ``mailchimpsync_<id>``)."""
    query = sa.select(update.c.id).where(update.c.mailchimpsync_batch_id == batch_row_id)
    return set(conn.scalars(query))


def known_mailchimp_batch_ids(conn: sa.Connection, candidates: Collection[str]) -> set[str]:
    """Which of these Mailchimp batch ids are already recorded on one of our rows."""
    if not candidates:
        return set()
    query = sa.select(batch.c.mailchimp_batch_id).where(
        batch.c.mailchimp_batch_id.in_(list(candidates))
    )
    return {value for value in conn.scalars(query) if value is not None}


def count_unsubmitted(conn: sa.Connection, list_id: str) -> int:
    """Open updates of the audience not attached to any batch."""
    query = (
        sa.select(sa.func.count())
        .select_from(update.join(cache, cache.c.id == update.c.mailchimpsync_cache_id))
        .where(cache.c.mailchimp_list_id == list_id)
        .where(update.c.mailchimpsync_batch_id.is_(None), update.c.completed.is_(False))
    )
    return int(conn.execute(query).scalar_one())


# --- polling -----------------------------------------------------------------------------------


def try_lock_polling(conn: sa.Connection) -> bool:
    """Take the poller's turn unless another process has it: one check of the unfinished
    batches at a time, whatever the number of submitters. A session-level advisory lock
    (``conn`` in autocommit, no transaction open during the calls to Mailchimp), released by
    ``unlock_polling`` or when the connection closes with its process."""
    return bool(conn.execute(sa.text(f"SELECT pg_try_advisory_lock({_POLL_LOCK})")).scalar_one())


def unlock_polling(conn: sa.Connection) -> None:
    conn.execute(sa.text(f"SELECT pg_advisory_unlock({_POLL_LOCK})"))


@contextmanager
def processing_turn(engine: sa.Engine, batch_row_id: int) -> Iterator[bool]:
    """Hold the batch's processing turn while the block runs; True when it was free, False
    when a live worker holds it. A session-level advisory lock on a connection of its own
    (autocommit: no transaction open during the calls to Mailchimp), released at the end of
    the block, or by Postgres when its holder dies and its connection closes: a turn left by
    a killed worker is free at once, one held by a live worker never is."""
    params = {"id": batch_row_id}
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        taken = bool(conn.execute(_TRY_PROCESSING_TURN, params).scalar_one())
        try:
            yield taken
        finally:
            if taken:
                try:
                    conn.execute(_END_PROCESSING_TURN, params)
                except Exception:
                    conn.invalidate()  # never back to the pool still holding the lock
                    raise


_PROCESSING_TURN = "hashtext('mailchimpsync-process'), CAST(:id % 2147483647 AS integer)"
_TRY_PROCESSING_TURN = sa.text(f"SELECT pg_try_advisory_lock({_PROCESSING_TURN})")
_END_PROCESSING_TURN = sa.text(f"SELECT pg_advisory_unlock({_PROCESSING_TURN})")


def get_batch_row(conn: sa.Connection, batch_row_id: int) -> BatchRow:
    return BatchRow(*conn.execute(_batch_rows().where(batch.c.id == batch_row_id)).one())


def find_batch(conn: sa.Connection, mailchimp_batch_id: str) -> BatchRow | None:
    """Our batch row with this Mailchimp id, or None when the batch is not ours."""
    query = _batch_rows().where(batch.c.mailchimp_batch_id == mailchimp_batch_id)
    row = conn.execute(query).first()
    return BatchRow(*row) if row else None


def unprocessed_batches(conn: sa.Connection, list_id: str | None = None) -> list[BatchRow]:
    """Our posted batches (of one audience, or all) whose results are not applied yet,
    oldest first."""
    query = _batch_rows().where(
        batch.c.mailchimp_batch_id.is_not(None),
        batch.c.response_processed != ResponseProcessed.DONE,
    )
    if list_id is not None:
        query = query.where(batch.c.mailchimp_list_id == list_id)
    return [BatchRow(*row) for row in conn.execute(query.order_by(batch.c.id))]


def lists_with_open_batches(conn: sa.Connection) -> set[str]:
    """Audiences with a batch to poll: posted and unprocessed, or left *posting* (ambiguous)."""
    query = (
        sa.select(batch.c.mailchimp_list_id)
        .distinct()
        .where(batch.c.response_processed != ResponseProcessed.DONE)
    )
    return set(conn.scalars(query))


def record_check(
    conn: sa.Connection, batch_row_id: int, state: MailchimpBatchState, now: datetime
) -> None:
    """Copy what the poller read at ``now`` (Mailchimp's status and counts) to a batch row not
    yet processed; ``progressed_at`` moves to ``now`` if the status or the finished
    operations changed."""
    moved = sa.or_(
        batch.c.status.is_distinct_from(state.status),
        batch.c.finished_operations != state.finished_operations,
    )
    conn.execute(
        sa.update(batch)
        .where(batch.c.id == batch_row_id, batch.c.response_processed != ResponseProcessed.DONE)
        .values(
            **_state_values(state),
            checked_at=now,
            progressed_at=sa.case((moved, now), else_=batch.c.progressed_at),
        )
    )


def claim_processing(
    conn: sa.Connection, batch_row_id: int, state: MailchimpBatchState, allowed: Collection[int]
) -> bool:
    """Compare-and-set ``response_processed`` from one of ``allowed`` to 1 (processing),
    in the batch's ``processing_turn``: a batch found at 1 then was left by a processing that
    died (redoing it is harmless, see handlers). ``completed_at`` is written at the same time.
    """
    statement = (
        sa.update(batch)
        .where(batch.c.id == batch_row_id, batch.c.response_processed.in_(list(allowed)))
        .values({**_state_values(state), "response_processed": ResponseProcessed.PROCESSING})
    )
    return conn.execute(statement).rowcount == 1


def lock_processing(conn: sa.Connection, batch_row_id: int) -> bool:
    """Lock a batch row being processed; False if another worker finished it meanwhile."""
    query = (
        sa.select(batch.c.response_processed).where(batch.c.id == batch_row_id).with_for_update()
    )
    return bool(conn.execute(query).scalar_one() == ResponseProcessed.PROCESSING)


def open_updates_of_batch(conn: sa.Connection, batch_row_id: int) -> list[OpenUpdate]:
    """The batch's updates not yet completed, with the current state of their cache rows."""
    query = (
        sa.select(*_UPDATE_AND_ROW, cache.c.mailchimp_updated, cache.c.mailchimp_data)
        .join(cache, cache.c.id == update.c.mailchimpsync_cache_id)
        .where(update.c.mailchimpsync_batch_id == batch_row_id, update.c.completed.is_(False))
    )
    return [OpenUpdate(*row) for row in conn.execute(query)]


def update_ids_of_batch(conn: sa.Connection, batch_row_id: int) -> set[int]:
    """The ids of every update the batch holds, completed or not."""
    query = sa.select(update.c.id).where(update.c.mailchimpsync_batch_id == batch_row_id)
    return set(conn.scalars(query))


def apply_cache_successes(conn: sa.Connection, successes: Sequence[CacheSuccess]) -> None:
    """The rows take the member as Mailchimp answered it: id and email (new after an email
    change, unless another row holds that member already), status and ``last_changed``, and
    its fields merged into ``mailchimp_data`` as a fetch would merge them."""
    if not successes:
        return
    conn.execute(_APPLY_CACHE_SUCCESSES, {"rows": json_rows(successes)})


def queue_retries(conn: sa.Connection, retries: Sequence[Retry]) -> None:
    """Queue new unsubmitted updates (e.g. a refused subscribe retried as ``pending``)."""
    if retries:
        conn.execute(
            sa.insert(update),
            [{"mailchimpsync_cache_id": r.cache_id, "data": r.data} for r in retries],
        )


def set_rows_status(conn: sa.Connection, cache_ids: Collection[int], value: SyncStatus) -> None:
    """Set ``sync_status`` (not ``fail``: see ``fail_rows_of_updates``) of these rows."""
    if cache_ids:
        conn.execute(
            sa.update(cache).where(cache.c.id == _any_id(cache_ids)).values(**_row_status(value))
        )


def _row_status(value: SyncStatus) -> dict[str, Any]:
    """A status other than ``fail``, which needs its reason: the row no longer fails."""
    if value is SyncStatus.FAIL:
        raise ValueError("a row fails with its reason: fail_rows_of_updates")
    return {"sync_status": value, "fail_reason": None}


def set_rows_ok_unless_open(conn: sa.Connection, cache_ids: Collection[int]) -> None:
    """Rows become ``ok`` unless another of their updates is still open."""
    if not cache_ids:
        return
    still_open = (
        sa.select(update.c.id)
        .where(update.c.mailchimpsync_cache_id == cache.c.id, update.c.completed.is_(False))
        .exists()
    )
    conn.execute(
        sa.update(cache)
        .where(cache.c.id == _any_id(cache_ids), ~still_open)
        .values(**_row_status(SyncStatus.OK))
    )


def finish_processing(conn: sa.Connection, batch_row_id: int, state: MailchimpBatchState) -> None:
    """Copy Mailchimp's final counts and mark the results applied (``response_processed`` 2)."""
    conn.execute(
        sa.update(batch)
        .where(batch.c.id == batch_row_id)
        .values({**_state_values(state), "response_processed": ResponseProcessed.DONE})
    )


def abort_lost_batch(conn: sa.Connection, batch_row_id: int, error: str) -> list[int]:
    """Mailchimp no longer knows a posted batch: complete its open updates with ``error``,
    send their rows back to ``todo`` (the next sync decides them again from fresh data) and
    mark the batch aborted. Returns the completed update ids."""
    completed = list(
        conn.scalars(
            sa.update(update)
            .where(update.c.mailchimpsync_batch_id == batch_row_id, update.c.completed.is_(False))
            .values(completed=True, error_response=error)
            .returning(update.c.id)
        )
    )
    set_row_status_for_updates(conn, completed, SyncStatus.TODO)
    conn.execute(
        sa.update(batch)
        .where(batch.c.id == batch_row_id)
        .values(status=BatchStatus.ABORTED, response_processed=ResponseProcessed.DONE)
    )
    return completed


# --- helpers -----------------------------------------------------------------------------------


def _batch_rows() -> sa.Select[Any]:
    return sa.select(
        batch.c.id,
        batch.c.mailchimp_list_id,
        batch.c.mailchimp_batch_id,
        batch.c.status,
        batch.c.submitted_at,
        batch.c.completed_at,
        batch.c.finished_operations,
        batch.c.total_operations,
        batch.c.response_processed,
        batch.c.checked_at,
        batch.c.progressed_at,
    )


def _state_values(state: MailchimpBatchState) -> dict[str, Any]:
    return {
        "status": state.status,
        "finished_operations": state.finished_operations,
        "errored_operations": state.errored_operations,
        "total_operations": state.total_operations,
        "completed_at": state.completed_at,
    }


def _any_id(ids: Iterable[int]) -> sa.ColumnElement[Any]:
    """``= ANY(<one array parameter>)``: a parameter per id (``IN``) made each batch's
    statement text differ by its size, to be compiled and converted afresh every time."""
    return sa.any_(sa.literal(list(ids), ARRAY(sa.BigInteger)))


# Bulk changes join one JSON parameter: a VALUES list built in SQLAlchemy was compiled
# afresh for every batch of a thousand results (half the submitter's time).
_COMPLETE_UPDATES = sa.text("""
    UPDATE civicrm_mailchimpsync_update u SET completed = true, error_response = r.error
    FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(id bigint, error text)
    WHERE u.id = r.id AND NOT u.completed
    RETURNING u.id
""")
# A member without fields (null) keeps the stored data.
# The row follows its member to a new address and id (an email change), unless another row
# of the audience holds that member already: two rows for one member (a CRM-only row whose
# member a fetch brought in meanwhile) keep their ids, and readyToCleanUpDuplicates merges them.
_APPLY_CACHE_SUCCESSES = sa.text("""
    UPDATE civicrm_mailchimpsync_cache c SET
        mailchimp_member_id = CASE WHEN r.taken THEN c.mailchimp_member_id
                                   ELSE coalesce(r.member_id, c.mailchimp_member_id) END,
        mailchimp_email = CASE WHEN r.taken THEN coalesce(c.mailchimp_email, r.email)
                               ELSE coalesce(r.email, c.mailchimp_email) END,
        mailchimp_status = r.mailchimp_status,
        mailchimp_updated = coalesce(r.updated, c.mailchimp_updated),
        mailchimp_data = coalesce(r.mailchimp_data, c.mailchimp_data)
    FROM (
        SELECT r.*, EXISTS (
            SELECT 1 FROM civicrm_mailchimpsync_cache me
            JOIN civicrm_mailchimpsync_cache o ON o.mailchimp_list_id = me.mailchimp_list_id
             AND o.mailchimp_member_id = r.member_id AND o.id <> me.id
            WHERE me.id = r.cache_id) AS taken
        FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(cache_id bigint, member_id text,
            email text, mailchimp_status text, updated timestamptz, mailchimp_data jsonb)
    ) AS r
    WHERE c.id = r.cache_id
""")


# --- abortsync ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Aborted:
    """What an abort changed: batch rows aborted, updates completed with the abort's error,
    and the cache rows of those updates."""

    batch_row_ids: tuple[int, ...] = ()
    update_ids: tuple[int, ...] = ()
    cache_ids: frozenset[int] = frozenset()


def posting_batches_of(conn: sa.Connection, list_id: str) -> list[BatchRow]:
    """The audience's batch rows in the *posting* state, however young."""
    query = _batch_rows().where(
        batch.c.mailchimp_list_id == list_id,
        batch.c.mailchimp_batch_id.is_(None),
        batch.c.status.is_(None),
    )
    return [BatchRow(*row) for row in conn.execute(query.order_by(batch.c.id))]


def abort_posted_batches(
    conn: sa.Connection, mailchimp_batch_ids: Collection[str], error: str
) -> Aborted:
    """Abort these posted batches (deleted at Mailchimp) unless their results were applied
    meanwhile: their open updates are completed with ``error``, the rows become ``aborted``.

    The batch rows are locked first, in the order a processing of results locks them, so an
    abort and a processing of the same batch wait for each other and only one acts.
    """
    if not mailchimp_batch_ids:
        return Aborted()
    row_ids = list(
        conn.scalars(
            sa.select(batch.c.id)
            .where(batch.c.mailchimp_batch_id.in_(list(mailchimp_batch_ids)))
            .where(batch.c.response_processed != ResponseProcessed.DONE)
            .order_by(batch.c.id)
            .with_for_update()
        )
    )
    if not row_ids:
        return Aborted()
    completed = conn.execute(
        sa.update(update)
        .where(update.c.mailchimpsync_batch_id.in_(row_ids), update.c.completed.is_(False))
        .values(completed=True, error_response=error)
        .returning(update.c.id, update.c.mailchimpsync_cache_id)
    ).all()
    conn.execute(
        sa.update(batch)
        .where(batch.c.id.in_(row_ids))
        .values(status=BatchStatus.ABORTED, response_processed=ResponseProcessed.DONE)
    )
    return Aborted(
        tuple(row_ids),
        tuple(sorted(u for u, _ in completed)),
        frozenset(c for _, c in completed),
    )
