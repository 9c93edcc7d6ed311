"""Every message between services, defined once and used by both ends.

A message is a frozen dataclass naming its queue and actor; it carries ids and small values
only. ``to_wire()`` gives the JSON-safe kwargs dramatiq sends; ``from_wire()`` validates them
on the way in. Fields are only ever added, with defaults, so old messages stay readable.
Producers send by route (queue + actor name), never by importing the consumer's actor.
"""

from __future__ import annotations

import dataclasses
import types
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self, Union, get_args, get_origin, get_type_hints

FETCHER = "fetcher"
RECONCILER = "reconciler"
SUBMITTER = "submitter"


class MessageError(ValueError):
    """A message on the wire does not match its definition."""


@dataclass(frozen=True)
class Message:
    queue: ClassVar[str]
    actor: ClassVar[str]

    def to_wire(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_wire(cls, payload: Mapping[str, Any]) -> Self:
        hints = get_type_hints(cls)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(payload) - names
        if unknown:
            raise MessageError(f"{cls.__name__}: unknown fields {sorted(unknown)}")
        for name, value in payload.items():
            if not _matches(value, hints[name]):
                raise MessageError(f"{cls.__name__}.{name}: unexpected value {value!r}")
        try:
            return cls(**payload)
        except TypeError as error:
            raise MessageError(f"{cls.__name__}: {error}") from error


def _matches(value: object, hint: object) -> bool:
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        return any(_matches(value, option) for option in get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is tuple or origin is list:
        return isinstance(value, list | tuple)
    return isinstance(value, hint) if isinstance(hint, type) else True


# --- fetcher ------------------------------------------------------------------------------


@dataclass(frozen=True)
class StartSync(Message):
    """Start (or resume) a sync of one audience: the seed's ``fetchandreconcile`` parameters.

    ``trigger_id`` tells this trigger from any other (a new one for every message made; two
    triggers asking for the same compare equal): the run it starts keeps it, so the same
    message delivered again carries on that run."""

    queue: ClassVar[str] = FETCHER
    actor: ClassVar[str] = "start_sync"

    list_id: str
    since: str | None = None
    max_time: int = 300
    stop_on: str | None = None
    force_restart: bool = False
    with_data: bool = False
    trigger_id: str = field(default_factory=lambda: uuid.uuid4().hex, compare=False)


@dataclass(frozen=True)
class FetchPage(Message):
    """Fetch one page of an audience's members into the cache."""

    queue: ClassVar[str] = FETCHER
    actor: ClassVar[str] = "fetch_page"

    list_id: str
    run_id: str
    offset: int


# --- reconciler ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RunCrmStages(Message):
    """Run the CRM-side stages, from the audience's current stage to the reconcile queue."""

    queue: ClassVar[str] = RECONCILER
    actor: ClassVar[str] = "run_crm_stages"

    list_id: str
    run_id: str


@dataclass(frozen=True)
class ReconcileChunk(Message):
    """Decide one planned chunk of an audience's queue, named by its first row id: the rows
    are the ids recorded for it (``runs.take_chunk``), not every id up to ``last_id``, which
    stays on the wire so that messages already queued keep their shape."""

    queue: ClassVar[str] = RECONCILER
    actor: ClassVar[str] = "reconcile_chunk"

    list_id: str
    run_id: str
    first_id: int
    last_id: int


@dataclass(frozen=True)
class SyncMember(Message):
    """Act on one stored audience webhook event: sync that member now."""

    queue: ClassVar[str] = RECONCILER
    actor: ClassVar[str] = "sync_member"

    event_id: int


# --- submitter ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SubmitUpdates(Message):
    """Send an audience's unsubmitted updates to Mailchimp as batches."""

    queue: ClassVar[str] = SUBMITTER
    actor: ClassVar[str] = "submit_updates"

    list_id: str
    run_id: str


@dataclass(frozen=True)
class SubmitFullBatches(Message):
    """Send an audience's unsubmitted updates as full batches only, while its run is still
    deciding rows: the rest waits for the run's ``readyToSubmitUpdates``."""

    queue: ClassVar[str] = SUBMITTER
    actor: ClassVar[str] = "submit_full_batches"

    list_id: str


@dataclass(frozen=True)
class ProcessBatch(Message):
    """Process a finished Mailchimp batch's results (from the webhook or the poller)."""

    queue: ClassVar[str] = SUBMITTER
    actor: ClassVar[str] = "process_batch"

    mailchimp_batch_id: str


@dataclass(frozen=True)
class CheckBatches(Message):
    """Poll unfinished batches whose webhook never came."""

    queue: ClassVar[str] = SUBMITTER
    actor: ClassVar[str] = "check_batches"


ROUTES: tuple[type[Message], ...] = (
    StartSync,
    FetchPage,
    RunCrmStages,
    ReconcileChunk,
    SyncMember,
    SubmitUpdates,
    SubmitFullBatches,
    ProcessBatch,
    CheckBatches,
)
