"""Mailchimp webhook payloads -> events, or a PayloadError naming the field at fault.

Pure: standard library only. Mailchimp posts ``application/x-www-form-urlencoded`` bodies
with PHP-style bracket keys (``data[id]``, ``data[merges][FNAME]``); ``decode_form`` turns
the raw body into a flat mapping of those keys, and a parser per webhook ``type`` turns the
mapping into a frozen event. Audience events (subscribe, unsubscribe, profile, cleaned,
upemail, campaign) get their own parser table beside ``BATCH_EVENTS``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import parse_qsl

MAX_BODY_BYTES = 64 * 1024
MAX_FIELDS = 500
BATCH_ID = re.compile(r"[0-9a-fA-F]{10}")


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


Fields = Mapping[str, str]
BatchEvent = UrlCheck | BatchCompleted
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
