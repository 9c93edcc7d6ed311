"""The console's routes: sign-in, the Status page, the Cache browser (and, from
``config_screen``, the Config screen), and its bundled assets."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from common.vocabulary import MailchimpStatus, SyncStatus
from services.admin.console import config_screen, session, views
from services.admin.console.core import (
    HERE,
    Pages,
    back,
    fields,
    form_of,
    install_refusals,
    local,
    local_path,
    number,
    templates,
)
from services.admin.context import ActionError, AdminContext

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


def mount(app: FastAPI, ctx: AdminContext) -> None:
    """Add the console's pages and its bundled assets (``/static``) to ``app``."""
    app.include_router(create_router(ctx), include_in_schema=False)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    install_refusals(app)


def create_router(ctx: AdminContext) -> APIRouter:
    found = templates()
    console = _Console(ctx, found)
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
    config_screen.add_routes(router, config_screen.ConfigScreen(ctx, found))
    return router


class _Console(Pages):
    """Signing in and out, the Status page and the Cache browser."""

    # --- signing in ---------------------------------------------------------------------

    async def signin_page(self, request: Request) -> Response:
        return self.render(request, "signin.html", None, next=local(request, "next"))

    async def signin(self, request: Request) -> Response:
        form = await form_of(request)
        next_path = local_path(str(form.get("next", "/")))
        if not session.matches(self.token, str(form.get("token", ""))):
            error = (
                "The console is off: set MCSYNC_ADMIN_TOKEN to turn it on"
                if not self.token
                else "That is not the admin token"
            )
            return self.render(
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
        await self.posted(request)
        reply = RedirectResponse("/signin", status_code=303)
        reply.delete_cookie(session.COOKIE, httponly=True, samesite="strict")
        return reply

    # --- the Status page ----------------------------------------------------------------

    async def status_page(self, request: Request) -> Response:
        signed_in = self.signed_in(request)
        cards = await self._cards(stats=True)
        return self.render(request, "status.html", signed_in, cards=cards, now=self.ctx.clock())

    async def status_live(self, request: Request) -> Response:
        """The live parts of every card, for the page's script to swap in."""
        if self.current(request) is None:
            return JSONResponse({"error": "signed out"}, status_code=401)
        template = self.templates.get_template("live.html")
        cards = await self._cards(stats=False)
        return JSONResponse(
            {
                "active": any(card.active for card in cards),
                "cards": {card.list_id: template.render(card=card) for card in cards},
            }
        )

    async def sync(self, request: Request) -> Response:
        form = await self.posted(request)
        wanted = fields(form, ("group_id", "since", "max_time"))
        try:
            answer = await self.run("fetchandreconcile", wanted)
        except ActionError as error:
            return back("/", f"The sync was not started: {error.message}")
        groups = ", ".join(str(e["group_id"]) for e in answer["enqueued"])
        return back("/", f"Sync started for group {groups}.")

    async def abort_page(self, request: Request, group_id: str) -> Response:
        signed_in = self.signed_in(request)
        cards = await self._cards(stats=False)
        card = next((c for c in cards if str(c.group_id) == group_id), None)
        if card is None:
            return back("/", f"No connection has the group {group_id}.")
        return self.render(request, "abort.html", signed_in, card=card)

    async def abort(self, request: Request, group_id: str) -> Response:
        await self.posted(request)
        try:
            answer = await self.run("abortsync", {"group_id": group_id})
        except ActionError as error:
            return back("/", f"The sync was not aborted: {error.message}")
        return back("/", views.aborted(answer))

    # --- the Cache browser --------------------------------------------------------------

    async def cache_page(self, request: Request) -> Response:
        signed_in = self.signed_in(request)
        query = request.query_params
        wanted = fields(query, CACHE_FIELDS)
        limit = _choice(query.get("limit"), PAGE_SIZES)
        page = max(1, number(query.get("page")) or 1)
        errors: dict[str, str] = {}
        found: dict[str, Any] = {"count": 0, "values": []}
        status = 200
        try:
            found = await self.run(
                "MailchimpsyncCache.get",
                {**wanted, "limit": limit, "offset": (page - 1) * limit},
            )
        except ActionError as error:  # shown at its field; paging's own at the form
            errors[error.param if error.param in CACHE_FIELDS else "form"] = error.message
            status = error.status
        current, last = views.pages(found["count"], limit, (page - 1) * limit)
        return self.render(
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
        signed_in = self.signed_in(request)
        try:
            found = await self.run("MailchimpsyncCache.get", {"id": row_id, "troubleshoot": True})
        except ActionError as error:
            return back("/cache", f"No such cache row: {error.message}")
        if not found["values"]:
            return back("/cache", f"No cache row has the id {row_id}.")
        row = found["values"][0]
        return self.render(request, "cache_row.html", signed_in, row=row, why=views.explain(row))

    async def include(self, request: Request) -> Response:
        form = await self.posted(request)
        return_to = local_path(str(form.get("back", "/cache")))
        chosen = "shown_contact_id" if form.get("which") == "shown" else "contact_id"
        ids = [value for value in form.getlist(chosen) if value]
        if not ids:
            return back(return_to, "Choose at least one contact to include.")
        try:
            answer = await self.run("includeinsync", {"contact_id": ids})
        except ActionError as error:
            return back(return_to, f"Nothing was marked: {error.message}")
        marked = answer["affected"]
        return back(return_to, f"{marked} cache row(s) will be synced by the next sync.")

    async def _cards(self, stats: bool) -> list[views.Card]:
        """A card per connection (``stats``: with the counts that read the whole audience)."""
        status = await self.run("getstatus", {"stats": stats})
        now = self.ctx.clock()
        return [views.status_card(c, now) for c in status["connections"]]

    async def _audiences(self) -> list[tuple[str, str]]:
        status = await self.run("getstatus", {"stats": False})
        return [
            (c["mailchimp_list_id"], f"{c.get('group_title')} ({c['mailchimp_list_id']})")
            for c in status["connections"]
        ]


def _choice(value: str | None, allowed: tuple[int, ...]) -> int:
    given = number(value)
    return given if given in allowed else allowed[0]


def _link(wanted: Mapping[str, str], limit: int, page: int, changes: Mapping[str, Any]) -> str:
    query = {**wanted, "limit": limit, "page": page, **changes}
    return "/cache?" + urlencode({k: v for k, v in query.items() if v not in ("", None)})
