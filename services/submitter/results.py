"""Read Mailchimp batch result archives and classify each operation's result.

Pure: the handler downloads the archive (after re-reading the batch from the API) and hands
the bytes here; it then writes what these functions return.

Archive format (mailchimp-api.md 4.5): a gzip tar, first entry the directory ``./``, then one
or more JSON files, some empty; each non-empty file is a JSON array of
``{"status_code", "operation_id", "response"}`` where ``response`` is a JSON *string*.
Results are matched on ``operation_id``, never on order. Errors are told apart by HTTP status
and problem ``title``, never by ``type`` (often missing).
"""

from __future__ import annotations

import io
import re
import tarfile
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any, Final

import orjson

from common.member_data import FetchedMember, merge_mailchimp_data
from common.vocabulary import MailchimpStatus, SyncStatus

COMPLIANCE_TITLE: Final = "Member In Compliance State"
_OPERATION_ID = re.compile(r"mailchimpsync_(0|[1-9][0-9]*)")
_SNIPPET: Final = 500


class ResultArchiveError(Exception):
    """The result archive is not a readable gzip tar of JSON arrays of operation results."""


@dataclass(frozen=True)
class OperationResult:
    """One element of a result file; ``response`` is the raw (JSON or not) response text."""

    operation_id: str | None
    status_code: int
    response: str


@dataclass(frozen=True)
class MemberResult:
    """The member as Mailchimp returned it after a successful member operation."""

    member_id: str
    email: str
    status: MailchimpStatus
    last_changed: datetime | None
    fetched: FetchedMember | None = None
    """The member as a fetch would read it (None if the body lacks a field a fetch needs)."""


@dataclass(frozen=True)
class Succeeded:
    """2xx. ``member`` is None for tags (204) or a body that is not a member object."""

    member: MemberResult | None


@dataclass(frozen=True)
class RetryAsPending:
    """A subscribe refused for compliance: complete with ``error``, queue ``new_data``."""

    error: str
    new_data: Mapping[str, Any]


@dataclass(frozen=True)
class Failed:
    """Any other error: complete the update with ``error``; the row fails."""

    error: str


Outcome = Succeeded | RetryAsPending | Failed


@dataclass(frozen=True)
class CacheRowState:
    """What the cache row holds before the result is applied, of what the result keeps."""

    updated: datetime | None = None
    mailchimp_data: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class CacheRowChange:
    """New values for the cache row's Mailchimp columns after a successful member operation."""

    mailchimp_member_id: str | None
    mailchimp_email: str | None
    mailchimp_status: MailchimpStatus
    mailchimp_updated: datetime | None
    mailchimp_data: dict[str, Any] | None = None


def read_result_archive(data: bytes | IO[bytes]) -> Iterator[OperationResult]:
    """Stream the operation results out of a batch result archive.

    Reads the tar as a stream ("r|gz"), one file at a time, so memory is bounded by the
    largest result file, not the archive. Directories and empty files are skipped. Raises
    ``ResultArchiveError`` when the archive or a file in it cannot be read; results before
    the damage have already been yielded, so the consumer should apply them idempotently.
    """
    fileobj = io.BytesIO(data) if isinstance(data, bytes | bytearray) else data
    try:
        with tarfile.open(fileobj=fileobj, mode="r|gz") as archive:
            for entry in archive:
                yield from _results_of_entry(archive, entry)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
        raise ResultArchiveError(f"unreadable result archive: {error}") from error


def update_id_of(operation_id: str | None) -> int | None:
    """The update id of one of our operations (``mailchimpsync_<n>``), else None."""
    if operation_id is None:
        return None
    match = _OPERATION_ID.fullmatch(operation_id)
    return int(match.group(1)) if match else None


def classify(result: OperationResult, update_data: Mapping[str, Any]) -> Outcome:
    """What the update's result means: success, compliance retry as pending, or failure."""
    if 200 <= result.status_code < 300:
        return Succeeded(member=_member_of(result.response))
    error = _error_text(result)
    if _is_compliance_refusal(result) and update_data.get("status") == MailchimpStatus.SUBSCRIBED:
        return RetryAsPending(error=error, new_data=_as_pending(update_data))
    return Failed(error=error)


def follow_success(row: CacheRowState, member: MemberResult) -> CacheRowChange:
    """The row takes the member as Mailchimp answered it: its id and email (new ones after an
    email change), status and ``last_changed``; the member's fields are merged into
    ``mailchimp_data`` as a fetch would, so the next incremental fetch, which reads these
    members back, finds them unchanged."""
    merged = None
    if member.fetched is not None:
        merged = merge_mailchimp_data(row.mailchimp_data, member.fetched)
    return CacheRowChange(
        mailchimp_member_id=member.member_id,
        mailchimp_email=member.email,
        mailchimp_status=member.status,
        mailchimp_updated=member.last_changed or row.updated,
        mailchimp_data=merged,
    )


def row_sync_status(outcome: Outcome, other_updates_open: bool) -> SyncStatus | None:
    """The row's new ``sync_status`` after one outcome; None leaves it as it is."""
    if isinstance(outcome, Failed):
        return SyncStatus.FAIL
    if isinstance(outcome, RetryAsPending):
        return SyncStatus.REDO
    return None if other_updates_open else SyncStatus.OK


def _results_of_entry(
    archive: tarfile.TarFile, entry: tarfile.TarInfo
) -> Iterator[OperationResult]:
    if not entry.isfile() or entry.size == 0:
        return
    stream = archive.extractfile(entry)
    if stream is None:
        return
    content = stream.read()
    if not content.strip():
        return
    for element in _json_array(content, entry.name):
        yield _operation_result(element, entry.name)


def _json_array(content: bytes, name: str) -> list[Any]:
    try:
        parsed = orjson.loads(content)
    except orjson.JSONDecodeError as error:
        raise ResultArchiveError(f"{name}: not JSON: {error}") from error
    if not isinstance(parsed, list):
        raise ResultArchiveError(f"{name}: expected a JSON array, got {type(parsed).__name__}")
    return parsed


def _operation_result(element: Any, name: str) -> OperationResult:
    if not isinstance(element, dict):
        raise ResultArchiveError(f"{name}: result element is not an object")
    status_code = element.get("status_code")
    operation_id = element.get("operation_id")
    if isinstance(status_code, bool) or not isinstance(status_code, int):
        raise ResultArchiveError(f"{name}: result without an integer status_code")
    if operation_id is not None and not isinstance(operation_id, str):
        raise ResultArchiveError(f"{name}: operation_id is not a string")
    return OperationResult(operation_id, status_code, _response_text(element.get("response")))


def _response_text(response: Any) -> str:
    # The real format is a JSON string; tolerate an inlined object or a missing response.
    if response is None:
        return ""
    if isinstance(response, str):
        return response
    return orjson.dumps(response).decode()


def _parse_object(text: str) -> dict[str, Any] | None:
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _member_of(response: str) -> MemberResult | None:
    body = _parse_object(response)
    if body is None:
        return None
    member_id, email, status = body.get("id"), body.get("email_address"), body.get("status")
    if not (isinstance(member_id, str) and isinstance(email, str) and isinstance(status, str)):
        return None
    try:
        known_status = MailchimpStatus(status)
    except ValueError:
        return None
    last_changed = aware_time(body.get("last_changed"))
    return MemberResult(member_id, email, known_status, last_changed, _fetched(body))


def _fetched(body: Mapping[str, Any]) -> FetchedMember | None:
    try:
        return FetchedMember.from_api(body)
    except (KeyError, ValueError, TypeError, AttributeError):
        return None


def aware_time(value: Any) -> datetime | None:
    """An ISO 8601 time from Mailchimp with its offset; None when absent or unreadable.

    A stamp without an offset is refused too: a timestamptz column would read it as local
    time."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _title(response: str) -> str | None:
    body = _parse_object(response)
    title = body.get("title") if body else None
    return title if isinstance(title, str) else None


def _is_compliance_refusal(result: OperationResult) -> bool:
    title = _title(result.response)
    return result.status_code == 400 and (title or "").strip() == COMPLIANCE_TITLE


def _as_pending(update_data: Mapping[str, Any]) -> dict[str, Any]:
    new_data = dict(update_data)
    new_data["status"] = MailchimpStatus.PENDING.value
    if "status_if_new" in new_data:
        new_data["status_if_new"] = MailchimpStatus.PENDING.value
    return new_data


def _error_text(result: OperationResult) -> str:
    """``<code> <title>: <detail>`` (+ field errors); the raw text when not a problem document."""
    body = _parse_object(result.response)
    title = body.get("title") if body else None
    if body is None or not isinstance(title, str):
        snippet = result.response.strip()[:_SNIPPET] or "(empty response)"
        return f"{result.status_code}: {snippet}"
    detail = body.get("detail")
    text = f"{result.status_code} {title}" + (f": {detail}" if detail else "")
    return text + _field_errors(body.get("errors"))


def _field_errors(errors: Any) -> str:
    if not isinstance(errors, list):
        return ""
    parts = [
        f"{item.get('field', '')}: {item.get('message', '')}"
        for item in errors
        if isinstance(item, dict)
    ]
    return f" [{'; '.join(parts)}]" if parts else ""
