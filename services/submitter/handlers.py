"""The submitter's handlers: send unsubmitted updates to Mailchimp in batches, apply results.

Each handler reads as gather -> decide (``operations`` / ``results``, pure) -> write -> return.
All SQL is in ``common.db.batches``; no transaction is ever open during a call to Mailchimp.

Never lose, never repeat
========================
A worker may be killed at any instant. The submit path is three steps:

1. *claim* (one transaction): take the audience's claim lock, lock up to 1000 unsubmitted
   updates (oldest first, ``SKIP LOCKED``), plan them (``plan_batches``; rows with an update
   in an unprocessed batch are busy), insert a batch row born in the *posting* state
   (``mailchimp_batch_id`` NULL, ``status`` NULL, ``submitted_at`` = now: the moment the POST
   is about to be sent), attach the planned updates, complete the rejected ones. Commit.
2. *post*: ``POST /batches`` with operation ids ``mailchimpsync_<update id>``.
3. *record* (one transaction): compare-and-set Mailchimp's id and status onto the row, only
   if it is still *posting* with the same ``submitted_at``.

A batch row still *posting* is ambiguous: killed before (2) it is not at Mailchimp, killed
between (2) and (3) it is, and a POST whose answer never came (a timeout, a reset, a 5xx)
may still be carried out by Mailchimp later: Mailchimp has no idempotency key. It is
resolved (``resolve_posting``) by listing the account's batches at Mailchimp submitted since
``submitted_at`` (less a clock slack) that no row of ours records, and reading the results
of the finished ones: one carrying an operation id of the row's updates is *adopted*
(recorded, then processed as usual). Only once no POST of the row can land any more (its
``submitted_at`` is older than ``posting_grace``, longer than a POST with its retries can
take and than Mailchimp can take to carry one out) and every batch listed is finished
without carrying them, did the POST never take effect: the row is *released*, marked
``aborted`` and its updates detached, to be claimed and posted by the next submission.
Every transition is a compare-and-set on the *posting* state, so two resolvers cannot both
act. The worker whose POST went unanswered tries to adopt at once (a batch already there),
never to release; the poller resolves the rows past the grace. A POST that surely created
nothing (a 4xx, a 429, no connection made) releases its row at once.

Results are applied idempotently, in the batch's *processing turn* (a session advisory lock,
held from the claim to the end, which Postgres frees when its holder's connection closes):
``response_processed`` 0 -> 1 by compare-and-set (``force`` also takes 2), the archive is
downloaded with no transaction open, then one transaction locks the batch row, completes
only updates still open (``WHERE NOT completed``), applies the row changes and retries for
exactly those, and sets 2. A worker killed midway leaves the batch at 1 and its turn free:
the next to take the turn (the redelivered message, the poller) finds it at 1 and redoes
it at once; a live processing's turn is taken, and nobody else reads the batch meanwhile.

Known limit: Mailchimp keeps batches for about 7 days; a *posting* row must be resolved
before then (``check_batches`` runs every few minutes), or its batch could not be found.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
import sqlalchemy as sa

from common.db import batches as sql
from common.db import runs
from common.mailchimp import MailchimpClient, MailchimpError, MailchimpTransientError
from common.metrics import UPDATE_RESULTS, UPDATES_SUBMITTED
from common.settings import Settings
from common.vocabulary import BatchStatus, ResponseProcessed, SyncStatus
from services.submitter.operations import (
    MAX_OPERATIONS_PER_BATCH,
    PendingUpdate,
    PlannedBatch,
    plan_batches,
)
from services.submitter.polling import due_for_check, stalled
from services.submitter.results import (
    CacheRowState,
    Failed,
    OperationResult,
    ResultArchiveError,
    RetryAsPending,
    Succeeded,
    aware_time,
    classify,
    follow_success,
    read_result_archive,
    update_id_of,
)

logger = logging.getLogger(__name__)

POSTING_GRACE = Settings().posting_grace  # the default of MCSYNC_POSTING_GRACE_SECONDS
"""How long another worker waits before resolving a *posting* batch row (see module doc)."""
UNANSWERED_AFTER = timedelta(minutes=2)
"""A *posting* row this old has had its POST answered, or not: a batch Mailchimp created for
it is looked for (and adopted) from then on, by submissions and the poller."""
CLOCK_SLACK = timedelta(minutes=5)
"""Tolerated difference between our clock and Mailchimp's when listing batches."""
DOWNLOAD_TIMEOUT = 120.0
_PAGE = 1000


# --- reports -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SubmitReport:
    batches_posted: int
    updates_submitted: int
    deferred: int
    rejected: int
    remaining: int


@dataclass(frozen=True)
class ProcessReport:
    """``outcome``: ignored (not ours), not_finished, being_processed (by a live worker),
    already_processed, processed."""

    mailchimp_batch_id: str
    outcome: str
    succeeded: int = 0
    retried: int = 0
    failed: int = 0
    missing: int = 0


@dataclass(frozen=True)
class CheckReport:
    processed: tuple[str, ...] = ()
    in_progress: tuple[str, ...] = ()
    stalled: tuple[str, ...] = ()
    lost: tuple[str, ...] = ()
    backed_off: tuple[str, ...] = ()  # not moving lately: not read this time (polling.py)
    skipped: bool = False  # another process was checking: this check did nothing
    adopted: tuple[str, ...] = ()
    released: tuple[int, ...] = ()
    unresolved: tuple[int, ...] = ()


@dataclass(frozen=True)
class Claim:
    """Step (1) of a submission: the batch row it created (if any) and what it planned."""

    claimed: int
    last_update_id: int
    batch_row_id: int | None = None
    marker: datetime | None = None
    batch: PlannedBatch | None = None
    deferred: int = 0
    rejected: int = 0


@dataclass(frozen=True)
class Resolution:
    """How a *posting* batch row was resolved: adopted (its Mailchimp id), released, or
    neither (still ambiguous: wait for the next check)."""

    adopted: str | None = None
    released: bool = False


# --- submitting --------------------------------------------------------------------------------


def submit_updates(
    engine: sa.Engine,
    client: MailchimpClient,
    list_id: str,
    now: datetime,
    max_operations: int = MAX_OPERATIONS_PER_BATCH,
    posting_grace: timedelta = POSTING_GRACE,
) -> SubmitReport:
    """Post every submittable update of the audience, one batch per claim of 1000.

    Deferred updates stay unsubmitted for a later submission. Raises ``MailchimpError`` /
    ``MailchimpTransientError`` when Mailchimp refuses a POST; the updates then stay (or
    become again) unsubmitted and nothing was sent twice (see the module docstring).
    """
    _resolve_stale_postings(engine, lambda _: client, now, posting_grace, list_id)
    posted, submitted, deferred, rejected = _post_claims(
        engine, client, list_id, now, max_operations
    )
    with engine.connect() as conn:
        remaining = sql.count_unsubmitted(conn, list_id)
    return SubmitReport(posted, submitted, deferred, rejected, remaining)


def submit_full_batches(
    engine: sa.Engine,
    client: MailchimpClient,
    list_id: str,
    now: datetime,
    max_operations: int = MAX_OPERATIONS_PER_BATCH,
    posting_grace: timedelta = POSTING_GRACE,
) -> int:
    """Post the audience's unsubmitted updates while a claim finds ``max_operations`` of
    them; returns the batches posted. Counts nothing else: a run's chunks each ask, a
    thousand times at 1M. Raises as ``submit_updates``, with the same guarantees."""
    _resolve_stale_postings(engine, lambda _: client, now, posting_grace, list_id)
    posted, *_ = _post_claims(engine, client, list_id, now, max_operations, max_operations)
    return posted


def _post_claims(
    engine: sa.Engine,
    client: MailchimpClient,
    list_id: str,
    now: datetime,
    max_operations: int,
    fewest: int = 1,
) -> tuple[int, int, int, int]:
    """Claim and post batches while a claim finds at least ``fewest`` updates; returns the
    batches posted, updates submitted, deferred and rejected."""
    posted = submitted = deferred = rejected = after = 0
    while (claim := claim_batch(engine, list_id, now, after, max_operations, fewest)).claimed:
        after = claim.last_update_id
        deferred, rejected = deferred + claim.deferred, rejected + claim.rejected
        if claim.batch is not None:
            post_claimed(engine, client, claim)
            posted, submitted = posted + 1, submitted + len(claim.batch.update_ids)
            UPDATES_SUBMITTED.labels(list_id).inc(len(claim.batch.update_ids))
    return posted, submitted, deferred, rejected


def claim_batch(
    engine: sa.Engine,
    list_id: str,
    now: datetime,
    after_update_id: int = 0,
    max_operations: int = MAX_OPERATIONS_PER_BATCH,
    fewest: int = 1,
) -> Claim:
    """Step (1): claim, plan and attach up to ``max_operations`` updates to a *posting* row;
    nothing when fewer than ``fewest`` are waiting."""
    with engine.begin() as conn:
        sql.lock_audience_for_claim(conn, list_id)
        claimed = sql.claim_unsubmitted(conn, list_id, after_update_id, max_operations)
        if not claimed or len(claimed) < fewest:
            return Claim(0, after_update_id)
        busy = sql.busy_cache_ids(conn, {c.cache_id for c in claimed})
        plan = plan_batches([_pending(c) for c in claimed], max_operations, busy)
        _reject(conn, [sql.Completion(r.update_id, r.reason) for r in plan.rejected])
        planned = plan.batches[0] if plan.batches else None
        row_id = None
        if planned is not None:
            row_id = sql.create_posting_batch(conn, list_id, planned.update_ids, now)
    return Claim(
        claimed=len(claimed),
        last_update_id=claimed[-1].update_id,
        batch_row_id=row_id,
        marker=now if row_id is not None else None,
        batch=planned,
        deferred=len(plan.deferred_update_ids),
        rejected=len(plan.rejected),
    )


def post_claimed(engine: sa.Engine, client: MailchimpClient, claim: Claim) -> str:
    """Steps (2) and (3): POST the claimed batch and record Mailchimp's id for it."""
    assert claim.batch is not None and claim.batch_row_id is not None and claim.marker
    row_id, marker = claim.batch_row_id, claim.marker
    try:
        reply = client.post("/batches", claim.batch.to_wire())
    except MailchimpError:
        with engine.begin() as conn:
            sql.release_posting_batch(conn, row_id, marker)
        raise
    except MailchimpTransientError as error:
        if error.maybe_processed:
            _resolve_own_failed_post(engine, client, row_id)
        else:
            with engine.begin() as conn:
                sql.release_posting_batch(conn, row_id, marker)
        raise
    with engine.begin() as conn:
        recorded = sql.record_posted(conn, row_id, str(reply["id"]), str(reply["status"]), marker)
        holder = None if recorded else sql.find_batch(conn, str(reply["id"]))
    if not recorded and (holder is None or holder.id != row_id):
        # Only possible if this POST outlasted posting_grace and a resolver released the row.
        logger.error("batch %s posted but batch row %s had left 'posting'", reply["id"], row_id)
    logger.info("posted batch %s (%d operations)", reply["id"], len(claim.batch.operations))
    return str(reply["id"])


def _pending(claimed: sql.ClaimedUpdate) -> PendingUpdate:
    return PendingUpdate(
        claimed.update_id,
        claimed.cache_id,
        claimed.list_id,
        claimed.member_id,
        claimed.mailchimp_email,
        claimed.data,
    )


def _reject(conn: sa.Connection, rejected: Sequence[sql.Completion]) -> None:
    sql.fail_rows_of_updates(conn, sql.complete_updates(conn, rejected))


# --- resolving ambiguous posts -----------------------------------------------------------------


def _resolve_own_failed_post(engine: sa.Engine, client: MailchimpClient, row_id: int) -> None:
    """Our own POST went unanswered: Mailchimp may create the batch yet, a moment or minutes
    later. Adopt it if it is there already; never release the row here (see module doc)."""
    with engine.connect() as conn:
        row = sql.get_batch_row(conn, row_id)
    try:
        resolution = resolve_posting(engine, client, row, may_release=False)
    except (MailchimpError, MailchimpTransientError, requests.RequestException):
        resolution = Resolution()
    if resolution.adopted is None:
        logger.warning(
            "batch row %s: Mailchimp did not answer its POST; its updates wait until the batch "
            "is found at Mailchimp, or until the posting grace is over",
            row_id,
        )


def _resolve_stale_postings(
    engine: sa.Engine,
    client_for: Callable[[str], MailchimpClient],
    now: datetime,
    posting_grace: timedelta,
    list_id: str | None = None,
) -> tuple[list[str], list[int], list[int]]:
    """Resolve the *posting* rows whose POST has ended (older than ``UNANSWERED_AFTER``, or
    than the grace): adopt a batch Mailchimp created for one; release one only past
    ``posting_grace``."""
    with engine.connect() as conn:
        rows = sql.posting_batches(conn, now - min(UNANSWERED_AFTER, posting_grace), list_id)
    adopted: list[str] = []
    released: list[int] = []
    unresolved: list[int] = []
    for row in rows:
        assert row.submitted_at is not None
        past_grace = row.submitted_at < now - posting_grace
        try:
            resolution = resolve_posting(engine, client_for(row.list_id), row, past_grace)
        except (MailchimpTransientError, requests.RequestException, ResultArchiveError) as error:
            logger.warning("batch row %s stays ambiguous for now: %s", row.id, error)
            resolution = Resolution()
        if resolution.adopted:
            adopted.append(resolution.adopted)
        elif resolution.released:
            released.append(row.id)
        else:
            unresolved.append(row.id)
    return adopted, released, unresolved


def resolve_posting(
    engine: sa.Engine, client: MailchimpClient, row: sql.BatchRow, may_release: bool
) -> Resolution:
    """Adopt the Mailchimp batch carrying this *posting* row's operations; else, when
    ``may_release`` (no POST of it can land any more) and every batch submitted since is
    finished without carrying them, release the row; else wait."""
    assert row.submitted_at is not None
    candidates = _listed_batches(client, row.submitted_at - CLOCK_SLACK)
    with engine.connect() as conn:
        ours = sql.operation_update_ids(conn, row.id)
        known = sql.known_mailchimp_batch_ids(conn, [c["id"] for c in candidates])
    candidates = [c for c in candidates if c["id"] not in known]
    finished = [c for c in candidates if c.get("status") == BatchStatus.FINISHED]
    for candidate in finished:
        url = candidate.get("response_body_url") or ""
        if url and _carries_any(url, ours):
            return _adopt(engine, client, row, candidate)
    if not may_release or len(finished) < len(candidates):
        return Resolution()  # an unfinished one may be ours: its operations are not readable
    with engine.begin() as conn:
        released = sql.release_posting_batch(conn, row.id, row.submitted_at)
    return Resolution(released=released)


def _adopt(
    engine: sa.Engine, client: MailchimpClient, row: sql.BatchRow, listed: dict[str, Any]
) -> Resolution:
    assert row.submitted_at is not None
    batch_id = str(listed["id"])
    with engine.begin() as conn:
        adopted = sql.record_posted(conn, row.id, batch_id, str(listed["status"]), row.submitted_at)
    if not adopted:
        return Resolution()
    logger.warning("adopted Mailchimp batch %s for batch row %s", batch_id, row.id)
    process_batch(engine, client, batch_id)
    return Resolution(adopted=batch_id)


def _listed_batches(client: MailchimpClient, since: datetime) -> list[dict[str, Any]]:
    """The account's batches at Mailchimp submitted at or after ``since``."""
    found: list[dict[str, Any]] = []
    offset = 0
    while True:
        page = client.get("/batches", {"count": _PAGE, "offset": offset})
        items = page.get("batches") or []
        found += [b for b in items if (aware_time(b.get("submitted_at")) or since) >= since]
        offset += len(items)
        if not items or offset >= int(page.get("total_items") or 0):
            return found


def _carries_any(url: str, update_ids: set[int]) -> bool:
    with closing(_results(url)) as results:
        return any(update_id_of(r.operation_id) in update_ids for r in results)


# --- processing results ------------------------------------------------------------------------


def process_batch(
    engine: sa.Engine, client: MailchimpClient, mailchimp_batch_id: str, force: bool = False
) -> ProcessReport:
    """Apply a finished batch's results once (``force``: again; it changes nothing more).

    Consumes a batch id from a webhook or the poller; re-reads the batch from the API. A
    processing left unfinished by a worker that died is taken over at once; one a live
    worker is doing is left to it (``being_processed``).
    """
    with engine.connect() as conn:
        row = sql.find_batch(conn, mailchimp_batch_id)
    if row is None:
        return ProcessReport(mailchimp_batch_id, "ignored")
    with sql.processing_turn(engine, row.id) as mine:
        if not mine:
            return ProcessReport(mailchimp_batch_id, "being_processed")
        return _process(engine, client, row, force)


def _process(
    engine: sa.Engine,
    client: MailchimpClient,
    row: sql.BatchRow,
    force: bool,
    read: tuple[sql.MailchimpBatchState, str] | None = None,
) -> ProcessReport:
    """In the batch's processing turn. ``read``: the batch as the caller has just read it
    from the API (else read here)."""
    batch_id = str(row.mailchimp_batch_id)
    state, url = read or _fetch_batch(client, batch_id)
    if state.status != BatchStatus.FINISHED:
        with engine.begin() as conn:
            sql.record_check(conn, row.id, state, datetime.now(UTC))
        return ProcessReport(batch_id, "not_finished")
    # In our turn, a batch at 1 (processing) was left so by a processing that died.
    allowed = set(ResponseProcessed) if force else {NOT_RECEIVED, ResponseProcessed.PROCESSING}
    with engine.begin() as conn:
        if not sql.claim_processing(conn, row.id, state, [int(a) for a in allowed]):
            return ProcessReport(batch_id, "already_processed")
    results = list(_results(url)) if url else []
    with engine.begin() as conn:
        if not sql.lock_processing(conn, row.id):
            return ProcessReport(batch_id, "already_processed")
        plan = _decide(sql.open_updates_of_batch(conn, row.id), results, batch_id)
        _write_outcomes(conn, plan)
        _log_unknown(conn, row, results, sql.update_ids_of_batch(conn, row.id))
        sql.finish_processing(conn, row.id, state)
    report = ProcessReport(batch_id, "processed", *plan.counts())
    for outcome, count in zip(("ok", "redo", "fail", "missing"), plan.counts(), strict=True):
        UPDATE_RESULTS.labels(row.list_id, outcome).inc(count)
    return report


NOT_RECEIVED = ResponseProcessed.NOT_RECEIVED


UNKNOWN_LISTED = 10  # unknown results named one per line; the rest of a batch's are counted


def _log_unknown(
    conn: sa.Connection, row: sql.BatchRow, results: Sequence[OperationResult], ours: set[int]
) -> None:
    """A result for no update the batch holds (not our operation id, or an update deleted
    since) is skipped: a warning in the worker's and the audience's log names it."""
    unknown = [r.operation_id for r in results if update_id_of(r.operation_id) not in ours]
    lines = [f"result for operation {op!r}, an update we do not know" for op in unknown]
    if len(lines) > UNKNOWN_LISTED:
        more = len(lines) - UNKNOWN_LISTED
        lines = [*lines[:UNKNOWN_LISTED], f"{more} more results for updates we do not know"]
    now = datetime.now(UTC)
    for line in lines:
        message = f"batch {row.mailchimp_batch_id}: {line}, skipped"
        logger.warning("audience %s: %s", row.list_id, message)
        runs.log(conn, row.list_id, message, now)


# Outcome kinds that fail the update's row: Mailchimp refused it, or gave no result for it.
FAILING = ("fail", "missing")


@dataclass
class _Outcomes:
    """What a batch's results do to its open updates and their cache rows."""

    completions: list[sql.Completion] = field(default_factory=list)
    successes: dict[int, sql.CacheSuccess] = field(default_factory=dict)
    retries: dict[int, sql.Retry] = field(default_factory=dict)
    row_of: dict[int, int] = field(default_factory=dict)
    kind_of: dict[int, str] = field(default_factory=dict)

    def counts(self) -> tuple[int, int, int, int]:
        """(succeeded, retried as pending, failed, without a result) among these outcomes."""
        kinds = list(self.kind_of.values())
        return kinds.count("ok"), kinds.count("redo"), kinds.count("fail"), kinds.count("missing")


def _decide(
    open_updates: Sequence[sql.OpenUpdate], results: Sequence[OperationResult], batch_id: str
) -> _Outcomes:
    """Pure: classify each open update's result; an update without a result fails."""
    by_id = {u.update_id: u for u in open_updates}
    outcomes = _Outcomes()
    for result in results:
        found = by_id.pop(update_id_of(result.operation_id) or -1, None)
        if found is not None:
            _add_outcome(outcomes, found, result)
    for missing in by_id.values():
        outcomes.completions.append(
            sql.Completion(missing.update_id, f"no result for this operation in batch {batch_id}")
        )
        outcomes.row_of[missing.update_id] = missing.cache_id
        outcomes.kind_of[missing.update_id] = "missing"
    return outcomes


def _add_outcome(outcomes: _Outcomes, found: sql.OpenUpdate, result: OperationResult) -> None:
    outcome = classify(result, found.data if isinstance(found.data, dict) else {})
    outcomes.row_of[found.update_id] = found.cache_id
    if isinstance(outcome, Succeeded):
        outcomes.completions.append(sql.Completion(found.update_id, None))
        outcomes.kind_of[found.update_id] = "ok"
        if outcome.member is not None:
            row = CacheRowState(found.updated, found.mailchimp_data)
            change = follow_success(row, outcome.member)
            outcomes.successes[found.update_id] = sql.CacheSuccess(
                found.cache_id,
                change.mailchimp_member_id,
                change.mailchimp_email,
                change.mailchimp_status.value,
                change.mailchimp_updated,
                change.mailchimp_data,
            )
    elif isinstance(outcome, RetryAsPending):
        outcomes.completions.append(sql.Completion(found.update_id, outcome.error))
        outcomes.retries[found.update_id] = sql.Retry(found.cache_id, dict(outcome.new_data))
        outcomes.kind_of[found.update_id] = "redo"
    else:
        assert isinstance(outcome, Failed)
        outcomes.completions.append(sql.Completion(found.update_id, outcome.error))
        outcomes.kind_of[found.update_id] = "fail"


def _write_outcomes(conn: sa.Connection, outcomes: _Outcomes) -> None:
    """Bulk writes for the updates this call completed (none if applied before)."""
    done = set(sql.complete_updates(conn, outcomes.completions))
    sql.apply_cache_successes(conn, [s for u, s in outcomes.successes.items() if u in done])
    sql.queue_retries(conn, [r for u, r in outcomes.retries.items() if u in done])
    statuses = _row_statuses(outcomes, done)
    sql.fail_rows_of_updates(conn, [u for u in done if outcomes.kind_of[u] in FAILING])
    sql.set_rows_status(conn, statuses[SyncStatus.REDO], SyncStatus.REDO)
    sql.set_rows_ok_unless_open(conn, statuses[SyncStatus.OK])


def _row_statuses(outcomes: _Outcomes, done: set[int]) -> dict[SyncStatus, set[int]]:
    """One status per row; a failure outranks a compliance retry, which outranks success."""
    rank = {"ok": 0, "redo": 1, "fail": 2, "missing": 2}
    best: dict[int, str] = {}
    for update_id in done:
        cache_id, kind = outcomes.row_of[update_id], outcomes.kind_of[update_id]
        if rank[kind] >= rank.get(best.get(cache_id, "ok"), 0):
            best[cache_id] = kind
    by_status: dict[SyncStatus, set[int]] = {s: set() for s in SyncStatus}
    for cache_id, kind in best.items():
        by_status[{"ok": SyncStatus.OK, "redo": SyncStatus.REDO}.get(kind, SyncStatus.FAIL)].add(
            cache_id
        )
    return by_status


# --- polling -----------------------------------------------------------------------------------


def check_batches(
    engine: sa.Engine,
    client_for: Callable[[str], MailchimpClient],
    now: datetime,
    stall_after: timedelta = sql.STALL_AFTER,
    posting_grace: timedelta = POSTING_GRACE,
) -> CheckReport:
    """Poll our unprocessed batches (webhooks can be lost) and resolve ambiguous posts.

    ``client_for(list_id)`` gives the client of the audience's account. Finished batches are
    processed here, and a processing left by a dead worker (at 1) redone; one a live worker
    is doing is not read (``processing_turn``); a batch that has not
    progressed for ``stall_after`` is logged in the audience's status log each time it is read
    (at most every ``polling.MAX_CHECK_INTERVAL``) and kept; a batch Mailchimp no longer knows
    is logged and aborted, its rows back to ``todo``. A batch that has not moved lately is
    read less often (``polling.due_for_check``).

    One check at a time across processes: each submitter's poller sends a check every tick,
    and two checks at once read the same batches from Mailchimp. A check that finds another
    one running does nothing; the next tick covers what it would have read.
    """
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as turn:
        if not sql.try_lock_polling(turn):
            return CheckReport(skipped=True)
        try:
            return _check_all(engine, client_for, now, stall_after, posting_grace)
        finally:
            sql.unlock_polling(turn)


def _check_all(
    engine: sa.Engine,
    client_for: Callable[[str], MailchimpClient],
    now: datetime,
    stall_after: timedelta,
    posting_grace: timedelta,
) -> CheckReport:
    with engine.connect() as conn:
        rows = sql.unprocessed_batches(conn)
    found: dict[str, list[str]] = {k: [] for k in ("processed", "waiting", "stalled", "lost")}
    due: list[sql.BatchRow] = []
    backed_off: list[sql.BatchRow] = []
    for row in rows:
        (due if due_for_check(row, now) else backed_off).append(row)
    for row in due:
        kind = _check_safely(engine, client_for(row.list_id), row, now, stall_after)
        found[kind].append(str(row.mailchimp_batch_id))
    adopted, released, unresolved = _resolve_stale_postings(engine, client_for, now, posting_grace)
    return CheckReport(
        processed=tuple(found["processed"]),
        in_progress=tuple(found["waiting"] + found["stalled"]),
        stalled=tuple(found["stalled"]),
        lost=tuple(found["lost"]),
        backed_off=tuple(str(row.mailchimp_batch_id) for row in backed_off),
        adopted=tuple(adopted),
        released=tuple(released),
        unresolved=tuple(unresolved),
    )


def _check_safely(
    engine: sa.Engine,
    client: MailchimpClient,
    row: sql.BatchRow,
    now: datetime,
    stall_after: timedelta,
) -> str:
    """One batch's check; a failure is logged for the audience and retried next check."""
    try:
        return _check_one(engine, client, row, now, stall_after)
    except (MailchimpTransientError, requests.RequestException, ResultArchiveError) as error:
        message = f"checking Mailchimp batch {row.mailchimp_batch_id} failed ({error}); will retry"
        logger.warning(message)
        with engine.begin() as conn:
            runs.log(conn, row.list_id, message, now)
        return "waiting"


def _check_one(
    engine: sa.Engine,
    client: MailchimpClient,
    row: sql.BatchRow,
    now: datetime,
    stall_after: timedelta,
) -> str:
    batch_id = str(row.mailchimp_batch_id)
    with sql.processing_turn(engine, row.id) as mine:
        if not mine:
            return "waiting"  # finished, and a worker is applying its results: nothing to read
        try:
            state, url = _fetch_batch(client, batch_id)
        except MailchimpError as error:
            if error.status != 404:
                raise
            return _lost(engine, row, now)
        if state.status == BatchStatus.FINISHED:
            report = _process(engine, client, row, False, (state, url))
            return "processed" if report.outcome == "processed" else "waiting"
    not_moving = stalled(row, state, now, stall_after)
    with engine.begin() as conn:
        sql.record_check(conn, row.id, state, now)
        if not_moving:
            runs.log(conn, row.list_id, _stall_message(batch_id, state, row), now)
    return "stalled" if not_moving else "waiting"


def _stall_message(batch_id: str, state: sql.MailchimpBatchState, row: sql.BatchRow) -> str:
    return (
        f"Mailchimp batch {batch_id} is not progressing: status {state.status}, "
        f"{state.finished_operations}/{state.total_operations} operations finished, "
        f"submitted {row.submitted_at:%Y-%m-%d %H:%M} UTC, unchanged since "
        f"{sql.last_progress(row):%Y-%m-%d %H:%M} UTC; still waiting for it"
    )


def _lost(engine: sa.Engine, row: sql.BatchRow, now: datetime) -> str:
    message = f"Mailchimp batch {row.mailchimp_batch_id} no longer exists at Mailchimp (404)"
    with engine.begin() as conn:
        completed = sql.abort_lost_batch(conn, row.id, message)
        runs.log(conn, row.list_id, f"{message}; {len(completed)} updates to be decided again", now)
    return "lost"


# --- Mailchimp edges ---------------------------------------------------------------------------


def _fetch_batch(client: MailchimpClient, batch_id: str) -> tuple[sql.MailchimpBatchState, str]:
    """Re-read the batch from the API: the only source of its results URL we trust."""
    body = client.get(f"/batches/{batch_id}")
    state = sql.MailchimpBatchState(
        status=str(body.get("status") or ""),
        finished_operations=int(body.get("finished_operations") or 0),
        errored_operations=int(body.get("errored_operations") or 0),
        total_operations=int(body.get("total_operations") or 0),
        completed_at=aware_time(body.get("completed_at")),
    )
    return state, str(body.get("response_body_url") or "")


def _results(url: str) -> Generator[OperationResult]:
    """Stream the result archive (no Mailchimp auth: the URL is pre-signed)."""
    with requests.get(url, stream=True, timeout=DOWNLOAD_TIMEOUT) as response:
        response.raise_for_status()
        yield from read_result_archive(response.raw)
