"""Build Mailchimp batch operations from pending updates, and plan them into batches.

Pure: data in, data out. The handler loads one audience's pending updates, calls
``plan_batches``, POSTs each planned batch to ``/batches`` (``PlannedBatch.to_wire()``),
records which updates went into which batch, and leaves the deferred updates pending for
the next submission.

Ordering rule (sync-algorithm: "a tags update must never reach Mailchimp before the member
it tags exists"). Operations inside one batch run in no guaranteed order, so a tags update
of a row whose member is created (or re-addressed by an email change) in this submission is
*deferred*, not put in a later batch. Why deferral rather than a later batch:

- a later batch only orders the tag after the creating operation; it does not make the
  member exist. If the creation fails (compliance, invalid email, ...) the tag 404s anyway;
- it would rely on Mailchimp's one-batch-at-a-time queue and on the handler POSTing the
  batches strictly in plan order, with no retry reordering them;
- the id of a created member is not always ``md5(lower(email))`` (an archived member with an
  old mixed-case id is revived by POST); a deferred tag is sent once the result handler has
  stored the id Mailchimp returned.

The cost is latency: such tags go with the next submission after the creating batch's
results were processed. With deferral no two operations in one plan depend on each other,
so batches are plain chunks of at most ``max_operations``.

The same reasoning makes the plan send at most one member update and one tags update per
row: a second one (of the same kind) is deferred, since two operations on one member in the
same submission could land in either order. Rows the handler reports as busy (an update
submitted, its result not yet processed) have all their updates deferred for the same reason.

An update that cannot make a valid operation (a new member without ``email_address`` or
``status``, data that is not JSON) is returned in ``rejected`` with a reason, not sent: the
handler completes it with that error and fails the row, as if Mailchimp had refused it.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

from common.member_data import subscriber_hash

OPERATION_ID_PREFIX: Final = "mailchimpsync_"
MAX_OPERATIONS_PER_BATCH: Final = 1000
SKIP_MERGE_VALIDATION: Final[Mapping[str, str]] = MappingProxyType(
    {"skip_merge_validation": "true"}
)
_TAGS_KEYS: Final = frozenset({"tags", "is_syncing"})


@dataclass(frozen=True)
class PendingUpdate:
    """One open update of a cache row. ``member_id`` None: the row is not yet at Mailchimp."""

    update_id: int
    cache_id: int
    list_id: str
    member_id: str | None
    mailchimp_email: str | None
    data: Mapping[str, Any]

    @property
    def is_tags(self) -> bool:
        """A tags update is ``{"tags": [...]}`` (optionally ``is_syncing``), nothing else."""
        return "tags" in self.data and set(self.data) <= _TAGS_KEYS

    @property
    def changes_member_address(self) -> bool:
        """True when this member update creates the member or changes its email (its id)."""
        if self.is_tags:
            return False
        if self.member_id is None:
            return True
        return _email_changed(self)


@dataclass(frozen=True)
class Operation:
    """One operation of a Mailchimp batch; ``body`` is already JSON-encoded."""

    method: str
    path: str
    operation_id: str
    body: str | None = None
    params: Mapping[str, str] | None = None

    def to_wire(self) -> dict[str, Any]:
        """Mailchimp's envelope: ``body`` a JSON string, ``params`` the query object."""
        wire: dict[str, Any] = {
            "method": self.method,
            "path": self.path,
            "operation_id": self.operation_id,
        }
        if self.body is not None:
            wire["body"] = self.body
        if self.params is not None:
            wire["params"] = dict(self.params)
        return wire


@dataclass(frozen=True)
class PlannedBatch:
    """Operations for one ``POST /batches``; ``update_ids[i]`` produced ``operations[i]``."""

    operations: tuple[Operation, ...]
    update_ids: tuple[int, ...]

    def to_wire(self) -> dict[str, Any]:
        """The ``POST /batches`` request body."""
        return {"operations": [operation.to_wire() for operation in self.operations]}


@dataclass(frozen=True)
class Rejected:
    """An update that cannot become a valid operation (it would only fail at Mailchimp)."""

    update_id: int
    reason: str


@dataclass(frozen=True)
class BatchPlan:
    """Every input update is in exactly one of: a batch, ``deferred``, ``rejected``."""

    batches: tuple[PlannedBatch, ...]
    deferred_update_ids: tuple[int, ...]
    rejected: tuple[Rejected, ...] = ()


def operation_id(update_id: int) -> str:
    """``mailchimpsync_<update id>``: how a result is matched back to its update."""
    return f"{OPERATION_ID_PREFIX}{update_id}"


def build_operation(update: PendingUpdate) -> Operation:
    """The operation for one update. Raises ``ValueError`` if it cannot be addressed."""
    if update.is_tags:
        return _tags_operation(update)
    if update.member_id is None:
        return _create_operation(update)
    return _upsert_operation(update, update.member_id)


def plan_batches(
    updates: Iterable[PendingUpdate],
    max_operations: int = MAX_OPERATIONS_PER_BATCH,
    busy_cache_ids: Collection[int] = frozenset(),
) -> BatchPlan:
    """Split one audience's pending updates into batches, deferring order-dependent ones.

    Updates are taken oldest first (by update id). See the module docstring for why tags of
    members created in this submission, and second updates of one kind per row, are deferred.
    ``busy_cache_ids``: rows with an update already submitted whose result is not processed
    yet; all their updates are deferred (a second POST for a member being created would
    meet ``Member Exists``; a tag could reach a member before it exists).
    """
    if max_operations < 1:
        raise ValueError(f"max_operations must be at least 1, got {max_operations}")
    ordered = _sorted_unique(updates)
    sendable, deferred = _select(ordered, frozenset(busy_cache_ids))
    built, rejected = _build_all(sendable)
    return BatchPlan(
        batches=_chunk(built, max_operations),
        deferred_update_ids=tuple(update.update_id for update in deferred),
        rejected=tuple(rejected),
    )


def _email_changed(update: PendingUpdate) -> bool:
    new_email = update.data.get("email_address")
    if not isinstance(new_email, str):
        return False
    if update.mailchimp_email is None:
        # Mailchimp's email unknown: compare with the id; an old mixed-case id only makes us
        # defer a tag needlessly, which is safe.
        return subscriber_hash(new_email) != update.member_id
    return subscriber_hash(new_email) != subscriber_hash(update.mailchimp_email)


def _members_path(list_id: str) -> str:
    return f"/lists/{list_id}/members"


def _create_operation(update: PendingUpdate) -> Operation:
    for required in ("email_address", "status"):
        value = update.data.get(required)
        if not isinstance(value, str) or not value:
            raise ValueError(f"a member update for a row not yet at Mailchimp needs {required}")
    return Operation(
        method="POST",
        path=_members_path(update.list_id),
        operation_id=operation_id(update.update_id),
        body=_encode(update.data),
        params=SKIP_MERGE_VALIDATION,
    )


def _upsert_operation(update: PendingUpdate, member_id: str) -> Operation:
    body = dict(update.data)
    if "email_address" not in body and update.mailchimp_email is not None:
        body["email_address"] = update.mailchimp_email
    if "status" in body:
        body.setdefault("status_if_new", body["status"])
    return Operation(
        method="PUT",
        path=f"{_members_path(update.list_id)}/{member_id}",
        operation_id=operation_id(update.update_id),
        body=_encode(body),
        params=SKIP_MERGE_VALIDATION,
    )


def _tags_operation(update: PendingUpdate) -> Operation:
    member_id = update.member_id
    if member_id is None and update.mailchimp_email:
        member_id = subscriber_hash(update.mailchimp_email)
    if member_id is None:
        raise ValueError("a tags update needs a member id or Mailchimp's email")
    return Operation(
        method="POST",
        path=f"{_members_path(update.list_id)}/{member_id}/tags",
        operation_id=operation_id(update.update_id),
        body=_encode(update.data),
    )


def _encode(data: Mapping[str, Any]) -> str:
    # allow_nan=False: NaN/Infinity are not JSON; they become a rejection, not a bad body.
    return json.dumps(dict(data), ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _sorted_unique(updates: Iterable[PendingUpdate]) -> list[PendingUpdate]:
    ordered = sorted(updates, key=lambda update: update.update_id)
    ids = [update.update_id for update in ordered]
    if len(set(ids)) != len(ids):
        raise ValueError("duplicate update ids")
    return ordered


def _select(
    ordered: Sequence[PendingUpdate], busy: frozenset[int]
) -> tuple[list[PendingUpdate], list[PendingUpdate]]:
    """Send the oldest member and oldest tags update per row, unless the update must wait."""
    readdressed = {u.cache_id for u in ordered if u.changes_member_address}
    taken: set[tuple[int, bool]] = set()
    sendable: list[PendingUpdate] = []
    deferred: list[PendingUpdate] = []
    for update in ordered:
        slot = (update.cache_id, update.is_tags)
        if update.cache_id in busy or slot in taken or _tag_must_wait(update, readdressed):
            deferred.append(update)
            continue
        taken.add(slot)
        sendable.append(update)
    return sendable, deferred


def _tag_must_wait(update: PendingUpdate, readdressed: set[int]) -> bool:
    # A row without a member id is not at Mailchimp: its tag would 404 until the member
    # exists and the result handler has stored the id Mailchimp gave it.
    return update.is_tags and (update.member_id is None or update.cache_id in readdressed)


def _build_all(
    sendable: Sequence[PendingUpdate],
) -> tuple[list[tuple[int, Operation]], list[Rejected]]:
    built: list[tuple[int, Operation]] = []
    rejected: list[Rejected] = []
    for update in sendable:
        try:
            built.append((update.update_id, build_operation(update)))
        except (ValueError, TypeError) as error:
            rejected.append(Rejected(update.update_id, str(error)))
    return built, rejected


def _chunk(built: Sequence[tuple[int, Operation]], size: int) -> tuple[PlannedBatch, ...]:
    return tuple(
        PlannedBatch(
            operations=tuple(operation for _, operation in built[start : start + size]),
            update_ids=tuple(update_id for update_id, _ in built[start : start + size]),
        )
        for start in range(0, len(built), size)
    )
