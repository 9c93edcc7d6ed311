"""The simulator's in-memory data model: accounts, audiences, members and their index.

Pure data and bookkeeping, no HTTP. Members are `__slots__` dataclasses holding tuples
aligned to the audience's merge fields / interests so a million of them stay well under
a gigabyte; derived values (unique_email_id, web_id) are computed when rendered.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sortedcontainers import SortedKeyList

SUBSCRIBED = "subscribed"
UNSUBSCRIBED = "unsubscribed"
CLEANED = "cleaned"
PENDING = "pending"
TRANSACTIONAL = "transactional"
ARCHIVED = "archived"
STATUSES = (SUBSCRIBED, UNSUBSCRIBED, CLEANED, PENDING, TRANSACTIONAL, ARCHIVED)
WRITABLE_STATUSES = (SUBSCRIBED, UNSUBSCRIBED, CLEANED, PENDING, TRANSACTIONAL)

BY_CONTACT = "contact"
BY_ADMIN = "admin"
BY_API = "api"


def subscriber_hash(email: str) -> str:
    """md5 of the full-Unicode lower-cased address, as Mailchimp computes member ids."""
    return hashlib.md5(email.lower().encode("utf-8")).hexdigest()


@dataclass(slots=True)
class Member:
    """One audience member. `merges`/`interests` are aligned to the audience's field order."""

    id: str
    email: str
    status: str
    merges: tuple[Any, ...]
    interests: tuple[bool, ...] | None
    last_changed: float
    rank: int
    timestamp_opt: float | None = None
    timestamp_signup: float | None = None
    unsubscribed_by: str | None = None
    tags: dict[int, float] | None = None
    email_type: str = "html"
    ip_signup: str = ""
    ip_opt: str = ""
    language: str = ""
    vip: bool = False
    source: str = "API - Generic"


def index_key(member: Member) -> tuple[float, int]:
    """Members are ordered by when they last changed, ties broken by write order."""
    return (member.last_changed, member.rank)


class MemberIndex:
    """Member lists kept sorted by (last_changed, rank): one for all, one per status, and
    one without archived members, so a filtered page is two bisects and a slice.

    Sorted lists of sublists (``sortedcontainers``): a member that changes leaves its place
    in O(log n), where deleting from one flat list of a million moved the whole tail, for
    every operation of every batch."""

    def __init__(self) -> None:
        self.everyone: SortedKeyList = SortedKeyList(key=index_key)
        self.visible: SortedKeyList = SortedKeyList(key=index_key)
        self.by_status: dict[str, SortedKeyList] = {
            status: SortedKeyList(key=index_key) for status in STATUSES
        }

    def _lists_for(self, member: Member) -> Iterator[SortedKeyList]:
        yield self.everyone
        yield self.by_status[member.status]
        if member.status != ARCHIVED:
            yield self.visible

    def add(self, member: Member) -> None:
        """Insert a member at its place."""
        for ordered in self._lists_for(member):
            ordered.add(member)

    def remove(self, member: Member) -> None:
        """Remove a member; call before changing its status or last_changed."""
        for ordered in self._lists_for(member):
            ordered.discard(member)

    def view(self, status: str | None, include_archived: bool) -> SortedKeyList:
        """The ordered list to page through for a status filter."""
        if status is not None:
            return self.by_status[status]
        return self.everyone if include_archived else self.visible


@dataclass(slots=True)
class MergeField:
    merge_id: int
    tag: str
    name: str
    type: str = "text"
    required: bool = False
    default_value: str = ""
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Interest:
    id: str
    name: str
    display_order: int = 0


@dataclass(slots=True)
class InterestCategory:
    id: str
    title: str
    type: str = "checkboxes"
    display_order: int = 0
    interests: list[Interest] = field(default_factory=list)


@dataclass(slots=True)
class Tag:
    id: int
    name: str


@dataclass(slots=True)
class AudienceWebhook:
    id: str
    url: str
    events: dict[str, bool]
    sources: dict[str, bool]


@dataclass
class Audience:
    """One list (audience) with its members, tombstones and configuration."""

    id: str
    name: str
    web_id: int
    date_created: float
    merge_fields: list[MergeField]
    categories: list[InterestCategory]
    double_optin: bool = False
    members: dict[str, Member] = field(default_factory=dict)
    # md5(lower(email)) -> member, only for members whose id is not that hash (quirk §8.1)
    aliases: dict[str, Member] = field(default_factory=dict)
    tombstones: set[str] = field(default_factory=set)
    index: MemberIndex = field(default_factory=MemberIndex)
    tags: dict[str, Tag] = field(default_factory=dict)
    webhooks: dict[str, AudienceWebhook] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    next_rank: int = 0
    last_sub: float | None = None
    last_unsub: float | None = None

    @property
    def interest_ids(self) -> tuple[str, ...]:
        return tuple(i.id for c in self.categories for i in c.interests)

    def take_rank(self) -> int:
        self.next_rank += 1
        return self.next_rank

    def find_by_email(self, email: str) -> Member | None:
        """The member holding this address, whatever its id looks like."""
        key = subscriber_hash(email)
        return self.members.get(key) or self.aliases.get(key)

    def insert(self, member: Member, *, hashed: bool = False) -> None:
        """Add a new member to the maps, counts and index (`hashed`: id is the hash)."""
        self.members[member.id] = member
        if not hashed and member.id != subscriber_hash(member.email):
            self.aliases[subscriber_hash(member.email)] = member
        self.counts[member.status] += 1
        self.index.add(member)

    def discard(self, member: Member) -> None:
        """Remove a member entirely (permanent delete)."""
        self.index.remove(member)
        self.counts[member.status] -= 1
        self.members.pop(member.id, None)
        self.aliases.pop(subscriber_hash(member.email), None)

    def change(self, member: Member, now: float, apply: Callable[[Member], None]) -> None:
        """Apply a mutation, moving the member in the index and bumping last_changed."""
        self.index.remove(member)
        self.counts[member.status] -= 1
        old_alias = subscriber_hash(member.email)
        apply(member)
        member.last_changed = now
        member.rank = self.take_rank()
        self.counts[member.status] += 1
        self.index.add(member)
        if old_alias != subscriber_hash(member.email):
            self.aliases.pop(old_alias, None)

    def tag_named(self, name: str) -> Tag:
        """The list's tag with this name (case-insensitive), created when new."""
        tag = self.tags.get(name.lower())
        if tag is None:
            tag = Tag(id=4788452 + len(self.tags), name=name)
            self.tags[name.lower()] = tag
        return tag


@dataclass
class BatchOperation:
    method: str
    path: str
    params: dict[str, Any]
    body: str | None
    operation_id: str | None


@dataclass
class BatchResult:
    status_code: int
    operation_id: str | None
    response: str


@dataclass
class Batch:
    id: str
    operations: list[BatchOperation]
    submitted_at: float
    base_url: str
    status: str = "pending"
    total_operations: int = 0
    finished_operations: int = 0
    errored_operations: int = 0
    completed_at: float | None = None
    results: list[BatchResult] = field(default_factory=list)
    archive: bytes | None = None
    cancelled: bool = False


@dataclass(slots=True)
class BatchWebhook:
    id: str
    url: str
    enabled: bool = True


@dataclass
class Account:
    """One API key = one account, with its lists, batches and batch webhooks."""

    api_key: str
    account_id: str
    account_name: str
    created_at: float
    lists: dict[str, Audience] = field(default_factory=dict)
    batches: dict[str, Batch] = field(default_factory=dict)
    batch_webhooks: dict[str, BatchWebhook] = field(default_factory=dict)
    in_flight: int = 0
    peak_in_flight: int = 0

    def open_batches(self) -> int:
        return sum(1 for b in self.batches.values() if b.status in ("pending", "started"))
