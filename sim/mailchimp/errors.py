"""API errors as exceptions, rendered as RFC 7807 problem documents at the HTTP edge."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ERROR_TYPE = "https://mailchimp.com/developer/marketing/docs/errors/"


@dataclass
class ApiError(Exception):
    """An error the API answers with; `title` is what clients branch on."""

    status: int
    title: str
    detail: str
    errors: list[dict[str, str]] | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def problem(self, instance: str) -> dict[str, Any]:
        """The problem+json body for this error."""
        body: dict[str, Any] = {
            "type": ERROR_TYPE,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "instance": instance,
        }
        if self.errors is not None:
            body["errors"] = self.errors
        return body


def not_found() -> ApiError:
    return ApiError(404, "Resource Not Found", "The requested resource could not be found.")


def invalid_resource(detail: str, errors: list[dict[str, str]] | None = None) -> ApiError:
    return ApiError(400, "Invalid Resource", detail, errors)


def schema_invalid(errors: list[dict[str, str]]) -> ApiError:
    detail = (
        "The resource submitted could not be validated. "
        "For field-specific details, see the 'errors' array."
    )
    return invalid_resource(detail, errors)


def member_exists(email: str) -> ApiError:
    return ApiError(
        400,
        "Member Exists",
        f"{email} is already a list member. Use PUT to insert or update list members.",
    )


def compliance_state(email: str) -> ApiError:
    return ApiError(
        400,
        "Member In Compliance State",
        f"{email} is in a compliance state due to unsubscribe, bounce, or compliance review "
        "and cannot be subscribed.",
    )


def forgotten(email: str) -> ApiError:
    return ApiError(
        400,
        "Forgotten Email Not Subscribed",
        f"{email} was permanently deleted and cannot be re-imported. "
        "The contact must re-subscribe to get back on the list.",
    )


def cannot_archive() -> ApiError:
    return ApiError(
        405,
        "Method Not Allowed",
        "This list member cannot be removed. "
        "Can not archive a contact that is bounced, pending or archived",
        headers={"Allow": "GET, PUT"},
    )


def api_key_invalid() -> ApiError:
    return ApiError(
        401,
        "API Key Invalid",
        "Your API key may be invalid, or you've attempted to access the wrong datacenter.",
    )


def too_many_requests(detail: str) -> ApiError:
    return ApiError(429, "Too Many Requests", detail)
