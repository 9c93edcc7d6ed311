"""The console's routes: sign-in, the Status page, the Cache browser.

Every page needs a session (``session``); every form carries the session's CSRF token. A
form's fields are the action's parameters, parsed by the action's own model, so a refusal
names the field it is shown at.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlencode

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from common.vocabulary import MailchimpStatus, SyncStatus
from services.admin import registry
from services.admin.app import TooLarge, limited
from services.admin.console import session, views
from services.admin.context import ActionError, AdminContext
from services.admin.params import parse

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
FLASH_COOKIE = "mcsync_flash"
CACHE_FIELDS = (
    "mailchimp_email",
    "civicrm_contact_id",
    "mailchimp_member_id",
    "mailchimp_list_id",
    "mailchimp_status",
    "sync_status",
    "civicrm_status",
)
PAGE_SIZES = (25, 100, 500)
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    # Only the console's own scripts, styles and forms; never inside another site's frame.
    "Content-Security-Policy": (
        "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
Handler = Callable[..., Any]


class Refused(Exception):
    """A request the console answers with a page of its own (a redirect, a 403...)."""

    def __init__(self, response: Response) -> None:
        self.response = response


def mount(app: FastAPI, ctx: AdminContext) -> None:
    """Add the console's pages and its bundled assets (``/static``) to ``app``."""
    app.include_router(create_router(ctx), include_in_schema=False)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    install_refusals(app)


def create_router(ctx: AdminContext) -> APIRouter:
    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.filters["when"] = views.when
    console = _Console(ctx, templates)
    router = APIRouter()
    router.add_api_route("/signin", console.signin_page, methods=["GET"])
    router.add_api_route("/signin", console.signin, methods=["POST"])
    router.add_api_route("/signout", console.signout, methods=["POST"])
    router.add_api_route("/", console.status_page, methods=["GET"])
    router.add_api_route("/status/live", console.status_live, methods=["GET"])
    router.add_api_route("/sync", console.sync, methods=["POST"])
    router.add_api_route("/abort/{group_id}", console.abort_page, methods=["GET"])
    router.add_api_route("/abort/{group_id}", console.abort, methods=["POST"])
    router.add_api_route("/cache", console.cache_page, methods=["GET"])
    router.add_api_route("/cache/include", console.include, methods=["POST"])
    router.add_api_route("/cache/{row_id}", console.cache_row, methods=["GET"])
    return router


class _Console:
    def __init__(self, ctx: AdminContext, templates: Jinja2Templates) -> None:
        self.ctx = ctx
        self.templates = templates
        self.token = ctx.settings.admin_token

    # --- signing in ---------------------------------------------------------------------

    async def signin_page(self, request: Request) -> Response:
        return self._render(request, "signin.html", None, next=_local(request, "next"))

    async def signin(self, request: Request) -> Response:
        form = await _form(request)
        next_path = _local_path(str(form.get("next", "/")))
        if not session.matches(self.token, str(form.get("token", ""))):
            error = (
                "The console is off: set MCSYNC_ADMIN_TOKEN to turn it on"
                if not self.token
                else "That is not the admin token"
            )
            return self._render(
                request, "signin.html", None, next=next_path, errors={"token": error}, status=401
            )
        reply = RedirectResponse(next_path, status_code=303)
        reply.set_cookie(
            session.COOKIE,
            session.issue(self.token, time.time()),
            max_age=session.LIFETIME_SECONDS,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return reply

    async def signout(self, request: Request) -> Response:
        await self._posted(request)
        reply = RedirectResponse("/signin", status_code=303)
        reply.delete_cookie(session.COOKIE, httponly=True, samesite="strict")
        return reply

    # --- the Status page ----------------------------------------------------------------

    async def status_page(self, request: Request) -> Response:
        signed_in = self._session(request)
        status = await self._run("getstatus", {})
        now = self.ctx.clock()
        cards = [views.status_card(c, now) for c in status["connections"]]
        return self._render(request, "status.html", signed_in, cards=cards, now=now)

    async def status_live(self, request: Request) -> Response:
        """The live parts of every card, for the page's script to swap in."""
        if self._current(request) is None:
            return JSONResponse({"error": "signed out"}, status_code=401)
        status = await self._run("getstatus", {"stats": False})
        now = self.ctx.clock()
        template = self.templates.get_template("live.html")
        cards = [views.status_card(c, now) for c in status["connections"]]
        return JSONResponse(
            {
                "active": any(card.active for card in cards),
                "cards": {card.list_id: template.render(card=card) for card in cards},
            }
        )

    async def sync(self, request: Request) -> Response:
        form = await self._posted(request)
        fields = _fields(form, ("group_id", "since", "max_time"))
        try:
            answer = await self._run("fetchandreconcile", fields)
        except ActionError as error:
            return _back("/", f"The sync was not started: {error.message}")
        groups = ", ".join(str(e["group_id"]) for e in answer["enqueued"])
        return _back("/", f"Sync started for group {groups}.")

    async def abort_page(self, request: Request, group_id: str) -> Response:
        signed_in = self._session(request)
        status = await self._run("getstatus", {"stats": False})
        now = self.ctx.clock()
        cards = [views.status_card(c, now) for c in status["connections"]]
        card = next((c for c in cards if str(c.group_id) == group_id), None)
        if card is None:
            return _back("/", f"No connection has the group {group_id}.")
        return self._render(request, "abort.html", signed_in, card=card)

    async def abort(self, request: Request, group_id: str) -> Response:
        await self._posted(request)
        try:
            answer = await self._run("abortsync", {"group_id": group_id})
        except ActionError as error:
            return _back("/", f"The sync was not aborted: {error.message}")
        return _back("/", views.aborted(answer))

    # --- the Cache browser --------------------------------------------------------------

    async def cache_page(self, request: Request) -> Response:
        signed_in = self._session(request)
        query = request.query_params
        wanted = _fields(query, CACHE_FIELDS)
        limit = _choice(query.get("limit"), PAGE_SIZES)
        page = max(1, _int(query.get("page")) or 1)
        errors: dict[str, str] = {}
        found: dict[str, Any] = {"count": 0, "values": []}
        status = 200
        try:
            found = await self._run(
                "MailchimpsyncCache.get",
                {**wanted, "limit": limit, "offset": (page - 1) * limit},
            )
        except ActionError as error:
            errors[error.param or "form"] = error.message
            status = error.status
        current, last = views.pages(found["count"], limit, (page - 1) * limit)
        return self._render(
            request,
            "cache.html",
            signed_in,
            wanted=wanted,
            found=found,
            errors=errors,
            limit=limit,
            page=current,
            last=last,
            link=lambda **changes: _link(wanted, limit, page, changes),
            audiences=await self._audiences(),
            statuses=[(s.value, s.value) for s in MailchimpStatus],
            sync_statuses=[(s.value, views.SYNC_STATUS_NAMES[s.value]) for s in SyncStatus],
            status=status,
        )

    async def cache_row(self, request: Request, row_id: str) -> Response:
        signed_in = self._session(request)
        try:
            found = await self._run("MailchimpsyncCache.get", {"id": row_id, "troubleshoot": True})
        except ActionError as error:
            return _back("/cache", f"No such cache row: {error.message}")
        if not found["values"]:
            return _back("/cache", f"No cache row has the id {row_id}.")
        row = found["values"][0]
        return self._render(request, "cache_row.html", signed_in, row=row, why=views.explain(row))

    async def include(self, request: Request) -> Response:
        form = await self._posted(request)
        back = _local_path(str(form.get("back", "/cache")))
        chosen = "shown_contact_id" if form.get("which") == "shown" else "contact_id"
        ids = [value for value in form.getlist(chosen) if value]
        if not ids:
            return _back(back, "Choose at least one contact to include.")
        try:
            answer = await self._run("includeinsync", {"contact_id": ids})
        except ActionError as error:
            return _back(back, f"Nothing was marked: {error.message}")
        return _back(back, f"{answer['affected']} cache row(s) will be synced by the next sync.")

    # --- shared -------------------------------------------------------------------------

    async def _run(self, name: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Do an admin action with the fields of a form (parsed by its own model)."""
        action = registry.ACTIONS[name]
        params = parse(action.params, fields)
        return await run_in_threadpool(action.run, self.ctx, params)

    async def _audiences(self) -> list[tuple[str, str]]:
        status = await self._run("getstatus", {"stats": False})
        return [
            (c["mailchimp_list_id"], f"{c.get('group_title')} ({c['mailchimp_list_id']})")
            for c in status["connections"]
        ]

    def _current(self, request: Request) -> session.Session | None:
        return session.read(self.token, request.cookies.get(session.COOKIE), time.time())

    def _session(self, request: Request) -> session.Session:
        """The request's session; without one, to the sign-in page (and back after)."""
        found = self._current(request)
        if found is None:
            path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            target = "/signin" if path == "/" else f"/signin?next={quote(path, safe='')}"
            raise Refused(RedirectResponse(target, status_code=303))
        return found

    async def _posted(self, request: Request) -> FormData:
        """A form posted in a session with its CSRF token; else a refusal."""
        found = self._session(request)
        form = await _form(request)
        if not session.csrf_valid(self.token, found, str(form.get("csrf", ""))):
            raise Refused(
                HTMLResponse(
                    "This form has expired or did not come from the console: go back, "
                    "reload the page and try again.",
                    status_code=403,
                )
            )
        return form

    def _render(
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


async def _form(request: Request) -> FormData:
    limited_request = await limited(request)
    return await limited_request.form(max_files=0, max_fields=10_000)


def _fields(source: Mapping[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """The named fields that were filled in (an empty field means: not given)."""
    return {name: str(source[name]).strip() for name in names if str(source.get(name, "")).strip()}


def _back(path: str, message: str) -> Response:
    reply = RedirectResponse(path, status_code=303)
    reply.set_cookie(FLASH_COOKIE, quote(message), httponly=True, samesite="strict")
    return reply


def _local(request: Request, name: str) -> str:
    return _local_path(request.query_params.get(name, "/"))


def _local_path(value: str) -> str:
    """``value`` if it is a path on this site, else ``/`` (no redirect elsewhere)."""
    ok = value.startswith("/") and not value.startswith("//") and "\\" not in value
    return value if ok and value.isprintable() else "/"


def _int(value: str | None) -> int | None:
    return int(value) if value and value.isascii() and value.isdigit() and len(value) < 10 else None


def _choice(value: str | None, allowed: tuple[int, ...]) -> int:
    number = _int(value)
    return number if number in allowed else allowed[0]


def _link(wanted: Mapping[str, str], limit: int, page: int, changes: Mapping[str, Any]) -> str:
    query = {**wanted, "limit": limit, "page": page, **changes}
    return "/cache?" + urlencode({k: v for k, v in query.items() if v not in ("", None)})
