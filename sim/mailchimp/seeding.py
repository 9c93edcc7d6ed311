"""Fast bulk loading: deterministic seeding and JSON-record import (no webhooks)."""

from __future__ import annotations

import gc
import random
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from sim.mailchimp import rules
from sim.mailchimp.model import (
    BY_CONTACT,
    STATUSES,
    SUBSCRIBED,
    UNSUBSCRIBED,
    Audience,
    Member,
    subscriber_hash,
)

FIRST_NAMES = (
    "Ada",
    "Ben",
    "Chloe",
    "Dev",
    "Ema",
    "Femi",
    "Gus",
    "Hana",
    "Ivo",
    "Jun",
    "Kai",
    "Lea",
    "Milo",
    "Nia",
    "Omar",
    "Pia",
    "Raj",
    "Sara",
    "Tom",
    "Uma",
)
LAST_NAMES = (
    "Smith",
    "Jones",
    "Okafor",
    "Novak",
    "Garcia",
    "Chen",
    "Muller",
    "Rossi",
    "Khan",
    "Silva",
    "Dubois",
    "Ivanova",
    "Kim",
    "Nowak",
    "Haddad",
    "Berg",
)
# (status, cumulative weight): mostly subscribed, a realistic tail of the rest
STATUS_MIX = (
    ("subscribed", 0.80),
    ("unsubscribed", 0.88),
    ("cleaned", 0.92),
    ("pending", 0.95),
    ("transactional", 0.98),
    ("archived", 1.0),
)
SEED_SPAN_SECONDS = 365 * 86400


def _pick_status(draw: float) -> str:
    for status, threshold in STATUS_MIX:
        if draw < threshold:
            return status
    return SUBSCRIBED


def seed(audience: Audience, count: int, seed_value: int, now: float) -> int:
    """Add `count` deterministic members (`seed<seed>.member<n>@example.org`) whose
    last_changed spreads over the past year; same seed, same members."""
    rng = random.Random(seed_value)
    interest_choices = _interest_choices(len(audience.interest_ids))
    field_count = len(audience.merge_fields)
    start, first_rank = now - SEED_SPAN_SECONDS, audience.next_rank
    name_pairs = [(f, la) for f in FIRST_NAMES for la in LAST_NAMES]
    # Sorted timestamps mean members are created in index order: appends, no re-sort.
    moments = sorted(float(int(start + rng.random() * SEED_SPAN_SECONDS)) for _ in range(count))
    with _gc_paused():
        for n, changed in enumerate(moments):
            email = f"seed{seed_value}.member{n + first_rank}@example.org"
            status = _pick_status(rng.random())
            merges: tuple[str, ...] = name_pairs[int(rng.random() * len(name_pairs))]
            if field_count != 2:
                merges = (merges + ("",) * field_count)[:field_count]
            member = Member(
                id=subscriber_hash(email),
                email=email,
                status=status,
                merges=merges,
                interests=interest_choices[int(rng.random() * len(interest_choices))],
                last_changed=changed,
                rank=first_rank + n + 1,
                timestamp_opt=changed if status == SUBSCRIBED else None,
                timestamp_signup=changed,
                unsubscribed_by=BY_CONTACT if status == UNSUBSCRIBED else None,
                source="Import",
            )
            audience.insert(member, hashed=True)
    audience.next_rank = first_rank + count
    return count


def _interest_choices(interest_count: int) -> list[tuple[bool, ...] | None]:
    """Shared interest tuples (members never mutate them, writes replace them)."""
    if not interest_count:
        return [None]
    combos = min(2**interest_count, 64)
    return [tuple(bool(b >> i & 1) for i in range(interest_count)) for b in range(combos)]


@contextmanager
def _gc_paused() -> Iterator[None]:
    # A million new objects would trigger many full collections for nothing: none of
    # these objects form cycles.
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
        gc.freeze()


def _stamp(record: Mapping[str, Any], name: str) -> float | None:
    value = record.get(name)
    return rules.parse_timestamp(value, name) if value else None


def import_records(audience: Audience, records: Iterable[Mapping[str, Any]], now: float) -> int:
    """Import `{email, status, merge_fields, interests, tags, last_changed, timestamp_opt,
    unsubscribed_by, id}` records; `id` may differ from the lower-cased hash (quirk §8.1)."""
    imported = 0
    with _gc_paused():
        for record in records:
            audience.insert(_member_from_record(audience, record, now))
            imported += 1
    return imported


def _member_from_record(audience: Audience, record: Mapping[str, Any], now: float) -> Member:
    email = str(record["email"])
    status = record.get("status", SUBSCRIBED)
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r} for {email}")
    member = Member(
        id=record.get("id") or subscriber_hash(email),
        email=email,
        status=status,
        merges=rules.merge_values(audience.merge_fields, None, record.get("merge_fields"), False),
        interests=rules.interest_values(audience.interest_ids, None, record.get("interests")),
        last_changed=_stamp(record, "last_changed") or now,
        rank=audience.take_rank(),
        timestamp_opt=_stamp(record, "timestamp_opt"),
        timestamp_signup=_stamp(record, "timestamp_signup"),
        unsubscribed_by=record.get("unsubscribed_by")
        or (BY_CONTACT if status == UNSUBSCRIBED else None),
        source="Import",
    )
    tags = record.get("tags") or []
    if tags:
        member.tags = {audience.tag_named(str(name)).id: now for name in tags}
    return member
