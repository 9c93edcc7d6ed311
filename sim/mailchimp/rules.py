"""Pure validation and status rules: data in, a value or an ApiError out."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sim.mailchimp import errors
from sim.mailchimp.model import (
    BY_CONTACT,
    CLEANED,
    SUBSCRIBED,
    UNSUBSCRIBED,
    WRITABLE_STATUSES,
    Member,
    MergeField,
)

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]{2,}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_BIRTHDAY = re.compile(r"^\d{2}/\d{2}$")
_ADDRESS_REQUIRED = ("addr1", "city", "state", "zip")


def iso(timestamp: float | None) -> str:
    """Mailchimp's timestamp format; unset is the empty string, not null."""
    if timestamp is None:
        return ""
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(timestamp))


def parse_timestamp(value: str, name: str) -> float:
    """Accept `+00:00`, `+0000`, `Z` and fractional seconds; naive means UTC."""
    try:
        parsed = datetime.fromisoformat(value.strip().replace(" ", "T", 1))
    except ValueError:
        raise errors.schema_invalid(
            [{"field": name, "message": "Please provide a valid ISO 8601 date-time."}]
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def validate_email(email: Any, fake_patterns: Sequence[str]) -> str:
    """The address if it looks deliverable, else Invalid Resource like Mailchimp's."""
    if not isinstance(email, str) or not _EMAIL.match(email):
        raise errors.invalid_resource("Please provide a valid email address.")
    lowered = email.lower()
    if any(pattern.lower() in lowered for pattern in fake_patterns):
        raise errors.invalid_resource(
            f"{email} looks fake or invalid, please enter a real email address."
        )
    return email


def validate_status(value: Any, name: str = "status") -> str:
    if value not in WRITABLE_STATUSES:
        raise errors.schema_invalid([{"field": name, "message": "Value is not one of enum values"}])
    return str(value)


def check_status_change(
    member: Member | None, new_status: str, refuse_after_admin_unsubscribe: bool
) -> None:
    """Refuse `subscribed` for cleaned members and for contacts who unsubscribed themselves
    (or, behind the switch, anyone unsubscribed); `pending` is the accepted workaround."""
    if member is None or new_status != SUBSCRIBED or member.status == SUBSCRIBED:
        return
    if member.status == CLEANED:
        raise errors.compliance_state(member.email)
    if member.status == UNSUBSCRIBED and (
        refuse_after_admin_unsubscribe or member.unsubscribed_by in (BY_CONTACT, None)
    ):
        raise errors.compliance_state(member.email)


def _merge_error(tag: str, message: str) -> dict[str, str]:
    return {"field": tag, "message": message}


def coerce_merge_value(spec: MergeField, value: Any) -> tuple[Any, str | None]:
    """A typed merge value, or the error message Mailchimp gives for it."""
    if value == "" or value is None:
        return "", None
    if isinstance(value, bool):
        return None, "Please enter a text value"
    if spec.type == "number":
        return _coerce_number(value)
    if spec.type == "date":
        ok = isinstance(value, str) and _DATE.match(value)
        return (value, None) if ok else (None, "Please enter a date")
    if spec.type == "birthday":
        ok = isinstance(value, str) and _BIRTHDAY.match(value)
        return (value, None) if ok else (None, "Please enter a month and day (MM/DD)")
    if spec.type == "address":
        return _coerce_address(value)
    if isinstance(value, int | float | str):
        return str(value), None
    return None, "Please enter a text value"


def _coerce_number(value: Any) -> tuple[Any, str | None]:
    if isinstance(value, int | float):
        return value, None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None, "Please enter a number"
    return (int(number) if number.is_integer() else number), None


def _coerce_address(value: Any) -> tuple[Any, str | None]:
    if not isinstance(value, dict) or any(not value.get(k) for k in _ADDRESS_REQUIRED):
        return None, "Please enter a complete address"
    keys = ("addr1", "addr2", "city", "state", "zip", "country")
    return {k: str(value.get(k, "")) for k in keys}, None


def merge_values(
    fields: Sequence[MergeField],
    current: tuple[Any, ...] | None,
    submitted: Any,
    check_required: bool,
) -> tuple[Any, ...]:
    """New merge tuple from the current one and a submitted `merge_fields` object.

    Unknown tags are ignored, as Mailchimp does; problems are collected into one
    Invalid Resource with `errors[]`.
    """
    if submitted is None:
        submitted = {}
    if not isinstance(submitted, dict):
        raise errors.schema_invalid(
            [{"field": "merge_fields", "message": "Schema describes object"}]
        )
    values = list(current) if current else [""] * len(fields)
    values += [""] * (len(fields) - len(values))
    problems = []
    for position, spec in enumerate(fields):
        if spec.tag in submitted:
            value, problem = coerce_merge_value(spec, submitted[spec.tag])
            if problem:
                problems.append(_merge_error(spec.tag, problem))
                continue
            values[position] = value
        if check_required and spec.required and values[position] == "":
            problems.append(_merge_error(spec.tag, "Please enter a value"))
    if problems:
        raise errors.invalid_resource("Your merge fields were invalid.", problems)
    return tuple(values)


def interest_values(
    interest_ids: Sequence[str], current: tuple[bool, ...] | None, submitted: Any
) -> tuple[bool, ...] | None:
    """New interests tuple; None when the list has no interest categories."""
    if not interest_ids:
        return None
    values = list(current) if current else [False] * len(interest_ids)
    if submitted is None:
        return tuple(values)
    if not isinstance(submitted, dict):
        raise errors.schema_invalid([{"field": "interests", "message": "Schema describes object"}])
    positions = {interest_id: n for n, interest_id in enumerate(interest_ids)}
    for interest_id, wanted in submitted.items():
        if interest_id not in positions:
            raise errors.invalid_resource(f"Invalid interest ID: '{interest_id}'.")
        values[positions[interest_id]] = bool(wanted)
    return tuple(values)
