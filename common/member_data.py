"""The format of ``civicrm_mailchimpsync_cache.mailchimp_data``, shared by fetcher and reconciler.

Per field (``status``, ``first_name``, ``last_name``, ``interest-<id>``) the value, and under
``<field>@`` the time (ISO 8601, UTC) it was first seen with that value. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

STATUS = "status"
FIRST_NAME = "first_name"
LAST_NAME = "last_name"
INTEREST_PREFIX = "interest-"
CHANGED_AT_SUFFIX = "@"


def to_utc(moment: datetime) -> datetime:
    """An aware UTC datetime; a naive one is taken to be UTC already."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def parse_time(text: str) -> datetime:
    """An ISO 8601 time (``+00:00`` or ``Z``) as an aware UTC datetime; naive means UTC."""
    return to_utc(datetime.fromisoformat(text))


def interest_key(interest_id: str) -> str:
    """The ``mailchimp_data`` key of one interest's flag."""
    return f"{INTEREST_PREFIX}{interest_id}"


def field_changed_at(data: Mapping[str, Any], key: str) -> datetime | None:
    """When ``key`` took its current value; ``None`` when unknown or unreadable."""
    stamp = data.get(key + CHANGED_AT_SUFFIX)
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


def interests(data: Mapping[str, Any]) -> dict[str, bool]:
    """The interest flags stored in ``data``, by interest id."""
    return {
        key.removeprefix(INTEREST_PREFIX): bool(value)
        for key, value in data.items()
        if key.startswith(INTEREST_PREFIX) and not key.endswith(CHANGED_AT_SUFFIX)
    }
