"""The admin API: one ``POST`` endpoint per seed action, behind a bearer token.

``POST /api/Mailchimpsync/<action>`` (``/api/MailchimpsyncCache/get`` for the cache), the
JSON body being the action's parameters. Every answer is JSON: the action's result, or
``{"error": message, "param": name-or-null}`` with the status of the problem (400 a bad
parameter, 401 no or a wrong token, 404, 409, 413, 502 Mailchimp, 503 the API disabled
because no token is configured). The actions come from the registry, whatever they are.
"""

from __future__ import annotations

import hmac
import inspect
import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Body, FastAPI, Request, Response, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPBearer
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.types import Message

from services.admin import registry
from services.admin.context import Action, ActionError, AdminContext
from services.admin.params import param_error

log = logging.getLogger(__name__)

API_PREFIX = "/api"
DEFAULT_ENTITY = "Mailchimpsync"
MAX_BODY_BYTES = 2_000_000
DISABLED = "the admin API is disabled: set MCSYNC_ADMIN_TOKEN to enable it"

# Only documents the scheme in OpenAPI; the token itself is checked before anything else.
_bearer_scheme = HTTPBearer(auto_error=False, description="MCSYNC_ADMIN_TOKEN")


class ErrorAnswer(BaseModel):
    """Every failure: what went wrong, and the parameter at fault (if one is)."""

    error: str
    param: str | None


# A "4XX" entry also keeps FastAPI from documenting its 422, which we never answer.
_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorAnswer, "description": text}
    for status, text in (
        (400, "a bad or missing parameter (``param`` names it)"),
        (401, "no bearer token, or a wrong one"),
        ("4XX", "the request cannot be done (404 not found, 409 conflict, 413 too large)"),
        ("5XX", "502 Mailchimp failed; 503 no admin token is configured"),
    )
}


def action_path(name: str) -> str:
    """``fetchandreconcile`` -> ``/api/Mailchimpsync/fetchandreconcile``;
    ``MailchimpsyncCache.get`` -> ``/api/MailchimpsyncCache/get``."""
    entity, _, verb = name.rpartition(".")
    return f"{API_PREFIX}/{entity or DEFAULT_ENTITY}/{verb}"


def create_router(ctx: AdminContext, actions: Mapping[str, Action] = registry.ACTIONS) -> APIRouter:
    """The admin endpoints, one per action, guarded by ``ctx.settings.admin_token``."""
    router = APIRouter(
        route_class=_guarded_route(ctx.settings.admin_token),
        dependencies=[Security(_bearer_scheme)],
        tags=["admin"],
        responses=_ERRORS,
    )
    for action in actions.values():
        router.add_api_route(
            action_path(action.name),
            _endpoint(ctx, action),
            methods=["POST"],
            name=action.name,
            summary=action.summary,
            description=inspect.getdoc(action.params) or "",
            operation_id=action.name.replace(".", "_"),
        )
    return router


def create_app(ctx: AdminContext) -> FastAPI:
    """The admin API on its own (``mcsync serve`` composes it with the webhooks)."""
    app = FastAPI(title="mcsync admin API", description=__doc__ or "")
    app.include_router(create_router(ctx))
    return app


def _endpoint(ctx: AdminContext, action: Action) -> Callable[..., dict[str, Any]]:
    optional = not any(f.is_required() for f in action.params.model_fields.values())

    def endpoint(params: Any = None) -> dict[str, Any]:
        return action.run(ctx, action.params() if params is None else params)

    # FastAPI reads the body's model from the signature: give it this action's model.
    body = inspect.Parameter(
        "params",
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        annotation=Annotated[action.params, Body()],
        default=None if optional else inspect.Parameter.empty,
    )
    endpoint.__signature__ = inspect.Signature([body])  # type: ignore[attr-defined]
    endpoint.__name__ = action.name.replace(".", "_")
    return endpoint


def _guarded_route(token: str) -> type[APIRoute]:
    class AdminRoute(APIRoute):
        """Checks the token first, then answers every failure as JSON."""

        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handle = super().get_route_handler()

            async def guarded(request: Request) -> Response:
                refusal = _refusal(request, token)
                if refusal is not None:
                    return refusal
                try:
                    return await handle(await limited(request))
                except RequestValidationError as error:
                    return _answer(param_error(error.errors(), skip=1))
                except ActionError as error:
                    return _answer(error)
                except HTTPException as error:  # the body could not be read or parsed
                    return _error(error.status_code, str(error.detail), "body")
                except sa.exc.DataError:
                    # A value the database cannot take that an action's model let through.
                    log.warning("admin action %s: a value the database refused", self.name)
                    return _error(400, "a parameter's value is out of range for the database", None)
                except Exception:
                    log.exception("admin action %s failed", self.name)
                    return _error(500, "internal error (logged on the server)", None)

            return guarded

    return AdminRoute


def _refusal(request: Request, token: str) -> JSONResponse | None:
    if not token:
        return _error(503, DISABLED, None)
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    # Headers arrive as latin-1 text: back to the bytes sent, compared in constant time.
    matches = hmac.compare_digest(given.strip().encode("latin-1"), token.encode("utf-8"))
    if scheme.lower() == "bearer" and matches:
        return None
    reply = _error(401, "unauthorized: send 'Authorization: Bearer <MCSYNC_ADMIN_TOKEN>'", None)
    reply.headers["WWW-Authenticate"] = "Bearer"
    return reply


class TooLarge(HTTPException):
    """A request body over ``MAX_BODY_BYTES`` (413)."""

    def __init__(self) -> None:
        super().__init__(413, f"the body is larger than {MAX_BODY_BYTES} bytes")


async def limited(request: Request) -> Request:
    """The request with its body read, refusing (without reading it all) a huge one."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise TooLarge
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise TooLarge
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": bytes(body), "more_body": False}

    return Request(request.scope, replay)


def _answer(error: ActionError) -> JSONResponse:
    return _error(error.status, error.message, error.param)


def _error(status: int, message: str, param: str | None) -> JSONResponse:
    return JSONResponse({"error": message, "param": param}, status_code=status)
