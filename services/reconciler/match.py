"""Matching phases of ``readyToFixContactIds``: which CRM contact a cache row's email is.

Narrowest first, undeleted contacts only:
1. the email belongs to exactly one undeleted contact;
2. the lowest id among owners ``Added`` to the subscription group;
3. the lowest id among owners with any history in that group;
4. the lowest id among owners.

Pure: standard library only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum


class MatchPhase(IntEnum):
    """Which phase matched a row (for stats and logs); the value is the phase's number."""

    ONLY_OWNER = 1
    ADDED_TO_GROUP = 2
    HISTORY_IN_GROUP = 3
    LOWEST_OWNER = 4


@dataclass(frozen=True, slots=True)
class Owner:
    """A CRM contact holding the email, with its standing in the subscription group."""

    contact_id: int
    is_deleted: bool = False
    added_to_subscription_group: bool = False
    has_history_in_subscription_group: bool = False


@dataclass(frozen=True, slots=True)
class ContactMatch:
    """The contact chosen for one email, and the phase that chose it."""

    contact_id: int
    phase: MatchPhase


@dataclass(frozen=True, slots=True)
class RowToMatch:
    """A cache row without a contact: its id and its Mailchimp email."""

    cache_id: int
    email: str


@dataclass(frozen=True, slots=True)
class Match:
    """A cache row matched to a contact."""

    cache_id: int
    contact_id: int
    phase: MatchPhase


def match_contact(owners: Iterable[Owner]) -> ContactMatch | None:
    """Pick the owner of one email by the phases, narrowest first; ``None`` if none is left."""
    live = [owner for owner in owners if not owner.is_deleted]
    if not live:
        return None
    if len({owner.contact_id for owner in live}) == 1:
        return ContactMatch(live[0].contact_id, MatchPhase.ONLY_OWNER)
    added = [o.contact_id for o in live if o.added_to_subscription_group]
    if added:
        return ContactMatch(min(added), MatchPhase.ADDED_TO_GROUP)
    with_history = [o.contact_id for o in live if o.has_history_in_subscription_group]
    if with_history:
        return ContactMatch(min(with_history), MatchPhase.HISTORY_IN_GROUP)
    return ContactMatch(min(o.contact_id for o in live), MatchPhase.LOWEST_OWNER)


def match_rows(
    rows: Sequence[RowToMatch], owners_by_email: Mapping[str, Sequence[Owner]]
) -> list[Match]:
    """Match a chunk of rows; emails are compared lower-cased; unmatched rows are left out."""
    owners = _by_lower_email(owners_by_email)
    matches = []
    for row in rows:
        found = match_contact(owners.get(row.email.lower(), ()))
        if found is not None:
            matches.append(Match(row.cache_id, found.contact_id, found.phase))
    return matches


def _by_lower_email(owners_by_email: Mapping[str, Sequence[Owner]]) -> dict[str, list[Owner]]:
    # Keys differing only in case are one address: their owners are pooled.
    pooled: dict[str, list[Owner]] = {}
    for email, owners in owners_by_email.items():
        pooled.setdefault(email.lower(), []).extend(owners)
    return pooled
