"""The format of ``civicrm_mailchimpsync_cache.mailchimp_data``, shared by fetcher and reconciler.

Per field (``status``, ``first_name``, ``last_name``, ``interest-<id>``) the value, and under
``<field>@`` the time (ISO 8601, UTC) it was first seen with that value. The time moves only
when the value changes, and it is Mailchimp's ``last_changed`` (never our clock): the
reconciler weighs it against the CRM's subscription history, so ``status@`` must say when the
*status* changed even if a name changed later. Pure: standard library and vocabulary only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, NamedTuple

from common.vocabulary import MailchimpStatus

# What we read of a member (Mailchimp's ``fields`` parameter): everything FetchedMember keeps.
MEMBER_FIELDS = (
    "id",
    "email_address",
    "status",
    "last_changed",
    "merge_fields.FNAME",
    "merge_fields.LNAME",
    "interests",
)
STATUS = "status"
FIRST_NAME = "first_name"
LAST_NAME = "last_name"
INTEREST_PREFIX = "interest-"
CHANGED_AT_SUFFIX = "@"


def subscriber_hash(email: str) -> str:
    """Mailchimp's member id for ``email``: md5 of the fully Unicode-lower-cased, UTF-8 email."""
    return hashlib.md5(email.lower().encode("utf-8"), usedforsecurity=False).hexdigest()


def to_utc(moment: datetime) -> datetime:
    """An aware UTC datetime; a naive one is taken to be UTC already."""
    if moment.tzinfo is UTC:  # what parse_time and the database hand us: nothing to convert
        return moment
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def parse_time(text: str) -> datetime:
    """An ISO 8601 time (``+00:00`` or ``Z``) as an aware UTC datetime; naive means UTC."""
    return to_utc(datetime.fromisoformat(text))


def interest_key(interest_id: str) -> str:
    """The ``mailchimp_data`` key of one interest's flag."""
    return f"{INTEREST_PREFIX}{interest_id}"


def field_changed_at(data: Mapping[str, Any], key: str) -> datetime | None:
    """When ``key`` took its current value; ``None`` when unknown or unreadable."""
    return _readable_time(data.get(key + CHANGED_AT_SUFFIX))


def _readable_time(stamp: object) -> datetime | None:
    if not isinstance(stamp, str):
        return None
    try:
        return parse_time(stamp)
    except ValueError:
        return None


def status_changed_at(data: Mapping[str, Any]) -> datetime | None:
    """``status@``: when Mailchimp's status took its current value."""
    return field_changed_at(data, STATUS)


def interest_changed_at(data: Mapping[str, Any], interest_id: str) -> datetime | None:
    """``interest-<id>@``: when that interest's flag took its current value."""
    return field_changed_at(data, interest_key(interest_id))


def interests_and_times(data: Mapping[str, Any]) -> tuple[dict[str, bool], dict[str, datetime]]:
    """The interest flags stored in ``data`` by interest id, and when each took its value
    (``interest-<id>@``; an interest with no readable time is left out). One pass over
    ``data``: the reconciler reads this for every row it decides."""
    flags: dict[str, bool] = {}
    stamps: dict[str, object] = {}
    for key, value in data.items():
        if key.startswith(INTEREST_PREFIX):
            if key.endswith(CHANGED_AT_SUFFIX):
                stamps[key[len(INTEREST_PREFIX) : -len(CHANGED_AT_SUFFIX)]] = value
            else:
                flags[key[len(INTEREST_PREFIX) :]] = bool(value)
    times = {i: t for i in flags if (t := _readable_time(stamps.get(i))) is not None}
    return flags, times


_STATUSES = {status.value: status for status in MailchimpStatus}
_NO_INTERESTS: Mapping[str, bool] = MappingProxyType({})


class FetchedMember(NamedTuple):
    """One member as fetched from ``GET /lists/{id}/members``, reduced to what we keep (a
    named tuple: a page builds a thousand, and a frozen dataclass took twice as long)."""

    member_id: str
    email: str
    status: MailchimpStatus
    last_changed: datetime
    first_name: str = ""
    last_name: str = ""
    interests: Mapping[str, bool] = _NO_INTERESTS

    @classmethod
    def from_api(cls, member: Mapping[str, Any]) -> FetchedMember:
        """Parse Mailchimp's JSON; raises ``KeyError``/``ValueError`` on a malformed member."""
        merge_fields = member.get("merge_fields") or {}
        status = _STATUSES.get(member["status"])
        if status is None:
            raise ValueError(f"{member['status']!r} is not a Mailchimp member status")
        interests = member.get("interests")
        return cls(
            str(member["id"]),
            str(member["email_address"]),
            status,
            parse_time(str(member["last_changed"])),
            str(merge_fields.get("FNAME") or ""),
            str(merge_fields.get("LNAME") or ""),
            {str(k): bool(v) for k, v in interests.items()} if interests else {},
        )


def _fields(member: FetchedMember) -> Iterator[tuple[str, Any]]:
    yield STATUS, member.status.value
    yield FIRST_NAME, member.first_name
    yield LAST_NAME, member.last_name
    for interest_id, flag in member.interests.items():
        yield interest_key(interest_id), flag


def merge_mailchimp_data(
    previous: Mapping[str, Any] | None, member: FetchedMember
) -> dict[str, Any]:
    """``previous`` with the member's fields; a field's ``@`` time moves only when it changes.

    Keys the member does not carry (an interest absent from this fetch, anything else stored
    there) are kept as they were: an absent ``interests`` key means "not fetched", not "none".
    ``previous`` is not modified; the result is a shallow copy.
    """
    merged = dict(previous) if previous else {}
    changed_at = to_utc(member.last_changed).isoformat()
    for key, value in _fields(member):
        stamp = key + CHANGED_AT_SUFFIX
        if key not in merged or merged[key] != value or stamp not in merged:
            merged[key] = value
            merged[stamp] = changed_at
    return merged


def changed(previous: Mapping[str, Any] | None, merged: Mapping[str, Any]) -> bool:
    """Whether a merge changed the stored data (a brand-new row always counts as changed)."""
    return previous is None or dict(previous) != dict(merged)
