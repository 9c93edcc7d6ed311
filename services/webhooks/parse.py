"""Mailchimp webhook payloads -> events, or a PayloadError naming the field at fault.

Pure: the standard library and ``common.audience_events``. Mailchimp posts
``application/x-www-form-urlencoded`` bodies with PHP-style bracket keys (``data[id]``,
``data[merges][FNAME]``); ``decode_form`` turns the raw body into a flat mapping of those
keys, and a parser per webhook ``type`` turns the mapping into a frozen event:
``BATCH_EVENTS`` for the batch webhook, ``AUDIENCE_EVENTS`` for the audience webhook
(subscribe, unsubscribe, profile, cleaned, upemail -> ``AudienceEvent``; campaign ->
``Ignored``). Every value that reaches the inbox is bounded and free of NUL (which Postgres
cannot store in JSONB), so a payload either parses whole or is refused whole.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar
from urllib.parse import parse_qsl

from common.audience_events import AudienceEvent, AudienceEventType

MAX_BODY_BYTES = 64 * 1024
MAX_FIELDS = 500
BATCH_ID = re.compile(r"[0-9a-fA-F]{10}")
LIST_ID = re.compile(r"[0-9A-Za-z]{1,32}")
# Loose on purpose: Mailchimp validated the address; we only refuse what cannot be one.
EMAIL = re.compile(r"[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+")
MAX_EMAIL = 254
MAX_TEXT = 255  # Mailchimp's limit for a text merge field
FIRED_AT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}")
FIRED_AT_FORMAT = "%Y-%m-%d %H:%M:%S"


class PayloadError(ValueError):
    """A webhook payload we cannot accept; ``field`` names the part at fault."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True)
class UrlCheck:
    """An empty request: Mailchimp checking that the URL answers."""


@dataclass(frozen=True)
class BatchCompleted:
    """``batch_operation_completed``: a batch in the account finished (maybe not ours)."""

    batch_id: str


@dataclass(frozen=True)
class Ignored:
    """An audience event acknowledged and dropped: ``campaign`` concerns no one member."""

    type: AudienceEventType


Fields = Mapping[str, str]
BatchEvent = UrlCheck | BatchCompleted
AudienceWebhook = UrlCheck | Ignored | AudienceEvent
EventT = TypeVar("EventT")


def decode_form(body: bytes) -> dict[str, str]:
    """The fields of a form-urlencoded body; a repeated key is ambiguous and refused."""
    if len(body) > MAX_BODY_BYTES:
        raise PayloadError("body", f"larger than {MAX_BODY_BYTES} bytes")
    if not body.strip():
        return {}
    try:
        pairs = parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            errors="strict",
            max_num_fields=MAX_FIELDS,
        )
    except UnicodeDecodeError as error:
        raise PayloadError("body", "not UTF-8 form data") from error
    except ValueError as error:
        raise PayloadError("body", f"more than {MAX_FIELDS} fields") from error
    fields: dict[str, str] = {}
    for key, value in pairs:
        if key in fields:
            raise PayloadError(key, "given more than once")
        fields[key] = value
    return fields


def required(fields: Fields, name: str) -> str:
    """The non-blank value of a field, or a PayloadError naming it."""
    value = fields.get(name, "")
    if not value.strip():
        raise PayloadError(name, "missing")
    return value


def matching(fields: Fields, name: str, pattern: re.Pattern[str], expected: str) -> str:
    """A required field that must match ``pattern`` in full (``expected`` says how)."""
    value = required(fields, name)
    if not pattern.fullmatch(value):
        raise PayloadError(name, f"must be {expected}, got {value[:40]!r}")
    return value


def _batch_completed(fields: Fields) -> BatchCompleted:
    return BatchCompleted(matching(fields, "data[id]", BATCH_ID, "10 hex digits"))


BATCH_EVENTS: Mapping[str, Callable[[Fields], BatchCompleted]] = {
    "batch_operation_completed": _batch_completed,
}


def bounded(fields: Fields, name: str, limit: int = MAX_TEXT) -> str | None:
    """An optional field (None when absent), at most ``limit`` characters and free of NUL."""
    value = fields.get(name)
    if value is None:
        return None
    if len(value) > limit:
        raise PayloadError(name, f"longer than {limit} characters")
    if "\x00" in value:
        raise PayloadError(name, "contains a NUL character")
    return value


def email(fields: Fields, name: str) -> str:
    """A required address: one ``@`` with something on each side, no spaces, bounded."""
    value = required(fields, name).strip()
    if len(value) > MAX_EMAIL:
        raise PayloadError(name, f"longer than {MAX_EMAIL} characters")
    if not EMAIL.fullmatch(value):
        raise PayloadError(name, f"must be an email address, got {value[:40]!r}")
    return value


def fired_at(fields: Fields) -> datetime | None:
    """``fired_at`` (``YYYY-MM-DD HH:MM:SS``, UTC) when given; a malformed one is refused."""
    value = fields.get("fired_at")
    if value is None or not value.strip():
        return None
    expected = "a time as YYYY-MM-DD HH:MM:SS"
    if not FIRED_AT.fullmatch(value):
        raise PayloadError("fired_at", f"must be {expected}, got {value[:40]!r}")
    try:
        return datetime.strptime(value, FIRED_AT_FORMAT).replace(tzinfo=UTC)
    except ValueError as error:
        raise PayloadError("fired_at", f"must be {expected}, got {value!r}") from error


def _member_event(kind: AudienceEventType) -> Callable[[Fields], AudienceEvent]:
    """subscribe, unsubscribe, profile, cleaned: one member, named by ``data[email]``."""

    def parse(fields: Fields) -> AudienceEvent:
        return AudienceEvent(
            type=kind,
            list_id=matching(fields, "data[list_id]", LIST_ID, "1 to 32 letters or digits"),
            email=email(fields, "data[email]"),
            fired_at=fired_at(fields),
            first_name=bounded(fields, "data[merges][FNAME]"),
            last_name=bounded(fields, "data[merges][LNAME]"),
            reason=bounded(fields, "data[reason]") or "",
            action=bounded(fields, "data[action]") or "",
        )

    return parse


def _email_changed(fields: Fields) -> AudienceEvent:
    """upemail: the member now answers to ``data[new_email]``; ``data[old_email]`` was theirs."""
    return AudienceEvent(
        type=AudienceEventType.UPEMAIL,
        list_id=matching(fields, "data[list_id]", LIST_ID, "1 to 32 letters or digits"),
        email=email(fields, "data[new_email]"),
        old_email=email(fields, "data[old_email]"),
        fired_at=fired_at(fields),
    )


def _campaign(fields: Fields) -> Ignored:
    return Ignored(AudienceEventType.CAMPAIGN)


AUDIENCE_EVENTS: Mapping[str, Callable[[Fields], AudienceEvent | Ignored]] = {
    AudienceEventType.SUBSCRIBE: _member_event(AudienceEventType.SUBSCRIBE),
    AudienceEventType.UNSUBSCRIBE: _member_event(AudienceEventType.UNSUBSCRIBE),
    AudienceEventType.PROFILE: _member_event(AudienceEventType.PROFILE),
    AudienceEventType.CLEANED: _member_event(AudienceEventType.CLEANED),
    AudienceEventType.UPEMAIL: _email_changed,
    AudienceEventType.CAMPAIGN: _campaign,
}


def parse_event(
    fields: Fields, parsers: Mapping[str, Callable[[Fields], EventT]]
) -> EventT | UrlCheck:
    """No fields: a URL check; else the event the ``type`` field names, parsed."""
    if not fields:
        return UrlCheck()
    kind = required(fields, "type")
    parser = parsers.get(kind)
    if parser is None:
        expected = " or ".join(sorted(parsers))
        raise PayloadError("type", f"must be {expected}, got {kind[:40]!r}")
    return parser(fields)


def parse_batch_webhook(fields: Fields) -> BatchEvent:
    """A batch webhook's fields -> ``BatchCompleted`` or ``UrlCheck``; else PayloadError."""
    return parse_event(fields, BATCH_EVENTS)


def parse_audience_webhook(fields: Fields) -> AudienceWebhook:
    """An audience webhook's fields -> ``AudienceEvent``, ``Ignored`` or ``UrlCheck``; else
    PayloadError naming the field at fault."""
    return parse_event(fields, AUDIENCE_EVENTS)
