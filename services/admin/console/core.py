"""What every console page shares: the session, the admin actions, rendering, flashes.

Every page needs a session (``Pages.signed_in``); every form carries the session's CSRF token
(``Pages.posted``). An action is run with a form's fields, parsed by the action's own model.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from services.admin import registry
from services.admin.app import TooLarge, limited
from services.admin.console import session, views
from services.admin.context import AdminContext
from services.admin.params import parse

HERE = Path(__file__).parent
FLASH_COOKIE = "mcsync_flash"
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    # Only the console's own scripts, styles and forms; never inside another site's frame.
    "Content-Security-Policy": (
        "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


class Refused(Exception):
    """A request the console answers with a page of its own (a redirect, a 403...)."""

    def __init__(self, response: Response) -> None:
        self.response = response


def templates() -> Jinja2Templates:
    found = Jinja2Templates(directory=HERE / "templates")
    found.env.filters["when"] = views.when
    found.env.filters["mask"] = views.mask
    return found


class Pages:
    """The console's pages on one admin context."""

    def __init__(self, ctx: AdminContext, templates: Jinja2Templates) -> None:
        self.ctx = ctx
        self.templates = templates
        self.token = ctx.settings.admin_token

    async def run(self, name: str, values: Mapping[str, Any]) -> dict[str, Any]:
        """Do an admin action with the fields of a form (parsed by its own model)."""
        action = registry.ACTIONS[name]
        params = parse(action.params, values)
        return await run_in_threadpool(action.run, self.ctx, params)

    def current(self, request: Request) -> session.Session | None:
        return session.read(self.token, request.cookies.get(session.COOKIE), time.time())

    def signed_in(self, request: Request) -> session.Session:
        """The request's session; without one, to the sign-in page (and back after)."""
        found = self.current(request)
        if found is None:
            path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            target = "/signin" if path == "/" else f"/signin?next={quote(path, safe='')}"
            raise Refused(RedirectResponse(target, status_code=303))
        return found

    async def posted(self, request: Request) -> FormData:
        """A form posted in a session with its CSRF token; else a refusal."""
        found = self.signed_in(request)
        form = await form_of(request)
        if not session.csrf_valid(self.token, found, str(form.get("csrf", ""))):
            raise Refused(
                HTMLResponse(
                    "This form has expired or did not come from the console: go back, "
                    "reload the page and try again.",
                    status_code=403,
                )
            )
        return form

    def render(
        self,
        request: Request,
        name: str,
        signed_in: session.Session | None,
        status: int = 200,
        **context: Any,
    ) -> Response:
        flash = request.cookies.get(FLASH_COOKIE)
        reply = self.templates.TemplateResponse(
            request,
            name,
            {
                "csrf": session.csrf_token(self.token, signed_in) if signed_in else "",
                "signed_in": signed_in is not None,
                "flash": unquote(flash) if flash else "",
                "path": request.url.path,
                "errors": {},
                **context,
            },
            status_code=status,
        )
        if flash:
            reply.delete_cookie(FLASH_COOKIE)
        reply.headers.update(PAGE_HEADERS)
        return reply


def install_refusals(app: FastAPI) -> None:
    """Answer a console ``Refused`` with its response, a too-large form with a 413 page."""

    async def refused(request: Request, error: Exception) -> Response:
        assert isinstance(error, Refused)
        return error.response

    async def too_large(request: Request, error: Exception) -> Response:
        return HTMLResponse("The form is too large.", status_code=413)

    app.add_exception_handler(Refused, refused)
    app.add_exception_handler(TooLarge, too_large)


async def form_of(request: Request) -> FormData:
    limited_request = await limited(request)
    return await limited_request.form(max_files=0, max_fields=10_000)


def fields(source: Mapping[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """The named fields that were filled in (an empty field means: not given)."""
    return {name: str(source[name]).strip() for name in names if str(source.get(name, "")).strip()}


def back(path: str, message: str) -> Response:
    reply = RedirectResponse(path, status_code=303)
    reply.set_cookie(FLASH_COOKIE, quote(message), httponly=True, samesite="strict")
    return reply


def number(value: str | None) -> int | None:
    """A form's or a path's value as a natural number, if it is a short one."""
    return int(value) if value and value.isascii() and value.isdigit() and len(value) < 10 else None


def local(request: Request, name: str) -> str:
    return local_path(request.query_params.get(name, "/"))


def local_path(value: str) -> str:
    """``value`` if it is a path on this site, else ``/`` (no redirect elsewhere)."""
    ok = value.startswith("/") and not value.startswith("//") and "\\" not in value
    return value if ok and value.isprintable() else "/"
