"""What the console's pages show, from the admin actions' answers: pure functions, no I/O.

``status_card`` turns one connection of ``getstatus`` into a card (state, stage, progress
bars, counts, batches, log); ``explain`` says in words why a cache row is where it is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from common.vocabulary import Stage

STAGE_LABELS = {
    Stage.READY_TO_FETCH: "Fetching members from Mailchimp",
    Stage.READY_TO_FIX_CONTACT_IDS: "Matching members to contacts",
    Stage.READY_TO_CREATE_NEW_CONTACTS_FROM_MAILCHIMP: "Creating contacts for new members",
    Stage.READY_TO_CLEAN_UP_DUPLICATES: "Cleaning up duplicates",
    Stage.READY_TO_ADD_CIVI_ONLY: "Adding contacts only the CRM has",
    Stage.READY_TO_CHECK_FOR_GROUP_CHANGES: "Checking group changes",
    Stage.READY_TO_CHECK_FOR_DATA_UPDATES: "Checking data changes",
    Stage.READY_TO_RECONCILE_QUEUE: "Deciding each member's changes",
    Stage.READY_TO_SUBMIT_UPDATES: "Sending changes to Mailchimp",
}
LOG_LINES = 8


@dataclass(frozen=True)
class Bar:
    """A progress bar: ``done`` of ``total`` ``what``."""

    what: str
    done: int
    total: int

    @property
    def percent(self) -> int:
        return 100 if not self.total else min(100, 100 * self.done // self.total)


@dataclass(frozen=True)
class Count:
    """One number of a card, with what it means and where to see its rows."""

    label: str
    value: int
    hint: str
    search: dict[str, str] = field(default_factory=dict)
    alert: bool = False


@dataclass(frozen=True)
class OpenBatch:
    mailchimp_batch_id: str
    status: str
    age: str
    done: int
    total: int
    errored: int
    stalled: bool


@dataclass(frozen=True)
class RunBar:
    """One completed run in the chart: its size against the largest of the runs shown."""

    finished: str
    took: str
    crm: int  # contacts created, added to and removed from groups
    mailchimp: int  # changes queued for Mailchimp
    time_share: float  # 0..1 of the longest run's duration
    crm_share: float  # 0..1 of the most changes on either side
    mailchimp_share: float


@dataclass(frozen=True)
class Card:
    """One connection on the Status page."""

    list_id: str
    group_id: int
    group_title: str
    state: str  # idle, running, sending, parked or stale: said in words, not by colour alone
    state_text: str
    stage_label: str
    step: int  # 1-based position of the stage among the stages
    steps: int
    bars: list[Bar]
    unsubmitted: int  # changes decided, not yet in a batch
    last_sync: str
    took: str
    counts: list[Count]
    fail_reasons: list[tuple[str, int]]
    batches: list[OpenBatch]
    log: list[tuple[str, str]]
    runs: list[RunBar]

    @property
    def active(self) -> bool:
        """A run goes on, or its changes are still at Mailchimp: worth following closely."""
        return self.state in ("running", "sending", "stale")


def status_card(status: Mapping[str, Any], now: datetime) -> Card:
    """The card of one connection of ``getstatus``'s answer (``stats`` optional)."""
    stage = Stage(status["stage"])
    order = list(Stage)
    state, state_text = _state(status.get("lock"), status["progress"])
    return Card(
        list_id=status["mailchimp_list_id"],
        group_id=status["group_id"],
        group_title=status.get("group_title") or f"group {status['group_id']}",
        state=state,
        state_text=state_text,
        stage_label=STAGE_LABELS[stage],
        step=order.index(stage) + 1,
        steps=len(order),
        bars=_bars(status["progress"], status["batches"]),
        unsubmitted=status["progress"]["unsubmitted"],
        last_sync=when(status.get("last_sync_finished_at")),
        took=_took(status.get("last_sync"), status.get("last_sync_finished_at")),
        counts=_counts(status["stats"]) if "stats" in status else [],
        fail_reasons=[(r or "no reason kept", n) for r, n in status.get("fail_reasons", [])],
        batches=[_batch(b, now) for b in status["batches"]],
        log=[(when(line["at"]), line["message"]) for line in status["log"][-LOG_LINES:]][::-1],
        runs=run_chart(status.get("runs", [])),
    )


def _state(lock: Mapping[str, Any] | None, progress: Mapping[str, int]) -> tuple[str, str]:
    if lock is None and (progress["batches_open"] or progress["unsubmitted"]):
        return "sending", "Mailchimp is applying the changes"
    if lock is None:
        return "idle", "Idle"
    if lock["parked_reason"]:
        return "parked", f"Paused: {lock['parked_reason']}"
    if lock["stale"]:
        return "stale", "Stalled: no worker has reported for a while; the next sync takes over"
    return "running", "Running"


def _bars(progress: Mapping[str, int], batches: Sequence[Mapping[str, Any]]) -> list[Bar]:
    bars = []
    if progress["pages_total"]:
        bars.append(Bar("pages fetched", progress["pages_fetched"], progress["pages_total"]))
    if progress["rows_planned"]:
        bars.append(Bar("members decided", progress["rows_decided"], progress["rows_planned"]))
    operations = sum(b["total_operations"] for b in batches)
    if operations:
        done = sum(b["finished_operations"] for b in batches)
        bars.append(Bar("changes done by Mailchimp", done, operations))
    return bars


def _counts(stats: Mapping[str, int]) -> list[Count]:
    apart = stats["to_add_to_mailchimp"] + stats["to_remove_from_mailchimp"]
    counts = [
        Count(
            "In sync",
            stats["cache_rows"] - apart - stats["failed"],
            "both sides agree",
            {"sync_status": "ok"},
        ),
        Count(
            "To add at Mailchimp",
            stats["to_add_to_mailchimp"],
            "in the CRM group, not subscribed at Mailchimp yet",
            {"civicrm_status": "Added"},
        ),
        Count(
            "To remove at Mailchimp",
            stats["to_remove_from_mailchimp"],
            "subscribed at Mailchimp, not in the CRM group",
        ),
        Count(
            "Cannot sync",
            stats["failed"],
            "see the reasons below",
            {"sync_status": "fail"},
            alert=stats["failed"] > 0,
        ),
        Count("Waiting to be sent", stats["updates_unsubmitted"], "changes not yet in a batch"),
        Count("At Mailchimp", stats["updates_pending"], "changes in batches Mailchimp runs"),
    ]
    if stats["weird"]:
        hint = "worth a look: nothing should leave a row like this"
        counts.append(Count("Marked in sync, yet apart", stats["weird"], hint, alert=True))
    return counts


def run_chart(runs: Sequence[Mapping[str, Any]]) -> list[RunBar]:
    """The bars of the last runs (oldest first), each scaled to the largest shown."""
    spans = [_span(r["started_at"], r["finished_at"]) for r in runs]
    crm = [r["contacts_created"] + r["crm_added"] + r["crm_removed"] for r in runs]
    mailchimp = [r["mailchimp_updates"] for r in runs]
    longest = max((s.total_seconds() for s in spans), default=0) or 1
    most = max([*crm, *mailchimp, 1])
    return [
        RunBar(
            finished=when(r["finished_at"]),
            took=duration(span),
            crm=c,
            mailchimp=m,
            time_share=span.total_seconds() / longest,
            crm_share=c / most,
            mailchimp_share=m / most,
        )
        for r, span, c, m in zip(runs, spans, crm, mailchimp, strict=True)
    ]


def _batch(batch: Mapping[str, Any], now: datetime) -> OpenBatch:
    submitted = _parse(batch.get("submitted_at"))
    return OpenBatch(
        mailchimp_batch_id=batch.get("mailchimp_batch_id") or "not posted yet",
        status=batch.get("status") or "waiting",
        age=duration(now - submitted) if submitted else "",
        done=batch["finished_operations"],
        total=batch["total_operations"],
        errored=batch["errored_operations"],
        stalled=bool(batch.get("stalled")),
    )


def duration(span: timedelta) -> str:
    """``3 h 05 min``, ``4 min 10 s``, ``12 s``, ``under a second``: a span as people say it."""
    seconds = max(0, int(span.total_seconds()))
    if not seconds:
        return "under a second"
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {seconds:02d} s"
    return f"{seconds} s"


def _took(started: str | None, finished: str | None) -> str:
    start, end = _parse(started), _parse(finished)
    return duration(end - start) if start and end and end >= start else ""


def _span(started: str | None, finished: str | None) -> timedelta:
    start, end = _parse(started), _parse(finished)
    return max(end - start, timedelta(0)) if start and end else timedelta(0)


def when(value: str | None) -> str:
    """An ISO 8601 time as the console shows it: ``2026-12-07 14:03:05 UTC``."""
    moment = _parse(value)
    if moment is None:
        return ""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC"


def _parse(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


SYNC_STATUS_NAMES = {
    "ok": "ok: in sync",
    "todo": "todo: to compare",
    "live": "live: syncing now",
    "redo": "redo: to compare again",
    "fail": "fail: cannot sync",
}
SYNC_STATUS_TEXT = {
    "ok": "In sync: both sides agree.",
    "todo": "Waiting for the next sync to compare both sides.",
    "live": "Being synced now.",
    "redo": "Will be compared again by the next sync.",
    "fail": "Cannot sync",
}


def explain(row: Mapping[str, Any]) -> list[str]:
    """Why a cache row (with its troubleshooting data) is where it is, in sentences."""
    said = [SYNC_STATUS_TEXT.get(row["sync_status"], row["sync_status"])]
    if row["sync_status"] == "fail":
        said[0] += f": {row.get('fail_reason') or 'no reason was kept'}."
    contact = row.get("contact")
    if row.get("civicrm_contact_id") is None:
        said.append("No CRM contact is matched to this member yet.")
    elif contact and contact.get("is_deleted"):
        said.append("Its CRM contact is in the trash.")
    held = [e["email"] for e in row.get("emails", []) if e.get("on_hold")]
    if held:
        said.append(f"On hold in the CRM: {', '.join(held)}.")
    if row.get("open_updates"):
        said.append(f"{len(row['open_updates'])} change(s) on their way to Mailchimp.")
    return said


def pages(count: int, limit: int, offset: int) -> tuple[int, int]:
    """(page number, number of pages), both from 1."""
    return offset // limit + 1, max(1, -(-count // limit))


def mask(api_key: str) -> str:
    """An API key as the console shows it: its data centre and last characters only."""
    key, dash, centre = api_key.rpartition("-")
    if not dash:
        return "••••"
    return f"••••{key[-4:] if len(key) > 8 else ''}-{centre}"


def aborted(answer: Mapping[str, Any]) -> str:
    """What ``abortsync`` did, in a sentence."""
    said = (
        f"Aborted the sync of group {answer['group_id']}: "
        f"{answer['batches_aborted']} batch(es) and {answer['updates_aborted']} change(s) "
        f"stopped, {answer['rows_failed']} member(s) marked as failed"
    )
    if answer["batches_still_posting"]:
        said += f"; {answer['batches_still_posting']} batch(es) were still being posted"
    return said + ("; the run was released." if answer["run_released"] else ".")
