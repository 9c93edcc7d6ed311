"""What every admin action gets, and how an action reports a problem.

An action is a pydantic model of the seed's parameters (validated the same way from the
command line and from HTTP) and a function ``(AdminContext, params) -> dict`` whose answer is
JSON-safe. Problems are ``ActionError``s carrying the HTTP status and, when a parameter is
at fault, its name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel

from common.mailchimp import MailchimpClient
from common.settings import Settings


@dataclass(frozen=True)
class AdminContext:
    """The process's settings, database, Mailchimp clients (pooled, connection-limited),
    message sender and clock."""

    settings: Settings
    engine: sa.Engine
    mailchimp: Callable[[str], MailchimpClient]
    send: Callable[..., None]
    clock: Callable[[], datetime]


class ActionError(Exception):
    """An action refused or failed; ``status`` is the HTTP status to answer with."""

    status = 500

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class ParamError(ActionError):
    """A bad or missing parameter (400); ``param`` names it."""

    status = 400


class NotFound(ActionError):
    """The thing named does not exist (404)."""

    status = 404


class Conflict(ActionError):
    """The request cannot be done in the current state (409)."""

    status = 409


class Unavailable(ActionError):
    """A service we depend on (the message broker) cannot be reached now (503)."""

    status = 503


class UpstreamError(ActionError):
    """Mailchimp refused or failed (502); the message carries Mailchimp's title."""

    status = 502


@dataclass(frozen=True)
class Action:
    """One seed action: its name (``fetchandreconcile``, ``MailchimpsyncCache.get``), a
    pydantic model of its parameters, the function that does it, and a line for ``--help``
    and the OpenAPI description."""

    name: str
    params: type[BaseModel]
    run: Callable[[AdminContext, Any], dict[str, Any]]
    summary: str
