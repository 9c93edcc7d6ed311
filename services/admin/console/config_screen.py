"""The Config screen: accounts and their API keys, each account's audiences at Mailchimp and
their connections to CRM groups, and the webhooks, saved with ``updateconfig`` and
``updatewebhook``.

Pages name an account by its position in the stored configuration; its forms also carry its
name and the configuration's fingerprint (``config_edit``), so nothing is saved over a
change made elsewhere meanwhile. API keys stay on the server: pages show them masked.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from common.vocabulary import TrustOverride
from services.admin.console import config_edit, views
from services.admin.console.config_edit import ConnectionForm, EditRefused
from services.admin.console.core import Pages, Refused, back, number
from services.admin.context import ActionError
from services.admin.crm_actions import crm_groups, stored_config

TRUST_CHOICES = [(t.value, t.value or "neither (the newer change wins)") for t in TrustOverride]


def add_routes(router: APIRouter, screen: ConfigScreen) -> None:
    account = "/config/accounts/{index}"
    audience = account + "/audiences/{list_id}"
    for path, get, post in (
        ("/config", screen.overview, screen.add_account),
        (account + "/remove", screen.remove_account_page, screen.remove_account),
        (audience, screen.connection_page, screen.save_connection),
        (audience + "/remove", screen.remove_connection_page, screen.remove_connection),
    ):
        router.add_api_route(path, get, methods=["GET"])
        router.add_api_route(path, post, methods=["POST"])
    router.add_api_route(account, screen.account_page, methods=["GET"])
    router.add_api_route(account + "/webhooks", screen.webhook, methods=["POST"])


class ConfigScreen(Pages):
    """The Config screen's pages and forms."""

    # --- accounts -------------------------------------------------------------------------

    async def overview(self, request: Request) -> Response:
        return await self._overview(request)

    async def _overview(
        self, request: Request, errors: Mapping[str, str] | None = None, name: str = ""
    ) -> Response:
        signed_in = self.signed_in(request)
        stored = await self._stored()
        groups, problem = await self._groups()
        titles = dict(groups)
        return self.render(
            request,
            "config.html",
            signed_in,
            status=400 if errors else 200,
            accounts=stored["accounts"],
            titles=titles,
            fingerprint=config_edit.fingerprint(stored),
            errors={**({"form": problem} if problem else {}), **(errors or {})},
            typed_name=name,
        )

    async def add_account(self, request: Request) -> Response:
        form = await self.posted(request)
        name, api_key = str(form.get("name", "")).strip(), str(form.get("api_key", "")).strip()
        stored = await self._unchanged(form, "/config")
        if not name:
            return await self._overview(request, {"name": "Give the account a name"}, name)
        try:
            await self.run("fetchaccountinfo", {"api_key": api_key})
            changed = await self._replace(config_edit.add_account(stored, name, api_key))
        except ActionError as error:
            field = "api_key" if "api_key" in error.message else "name"
            return await self._overview(request, {field: error.message}, name)
        return back(
            f"/config/accounts/{len(changed['accounts']) - 1}",
            f"Account {name} added. Connect one of its audiences to a CRM group below.",
        )

    async def account_page(self, request: Request, index: str) -> Response:
        signed_in = self.signed_in(request)
        stored, found = await self._account(index)
        problem, info = "", None
        try:
            info = await self.run("fetchaccountinfo", {"api_key": found["api_key"]})
        except ActionError as error:
            problem = f"Mailchimp could not be asked about this account: {error.message}"
        groups, crm_problem = await self._groups()
        return self.render(
            request,
            "account.html",
            signed_in,
            index=int(index),
            account=found,
            info=info,
            titles=dict(groups),
            connected={c["mailchimp_list_id"]: c for c in found["connections"]},
            fingerprint=config_edit.fingerprint(stored),
            errors={"form": problem or crm_problem} if problem or crm_problem else {},
        )

    async def remove_account_page(self, request: Request, index: str) -> Response:
        signed_in = self.signed_in(request)
        stored, found = await self._account(index)
        audiences = [c["mailchimp_list_id"] for c in found["connections"]]
        return self.render(
            request,
            "confirm.html",
            signed_in,
            title=f"Remove the account {found['name']}?",
            consequences=[
                f"The API key {views.mask(found['api_key'])} is forgotten.",
                *(
                    [f"Its {len(audiences)} connection(s) go too: {', '.join(audiences)}."]
                    if audiences
                    else []
                ),
                *REMOVED_CONNECTION,
            ],
            action=f"/config/accounts/{index}/remove",
            hidden={"account_name": found["name"], "fingerprint": config_edit.fingerprint(stored)},
            button="Remove the account",
            cancel=f"/config/accounts/{index}",
        )

    async def remove_account(self, request: Request, index: str) -> Response:
        form = await self.posted(request)
        return await self._save(
            form,
            lambda stored: config_edit.remove_account(
                stored, _index(index), str(form.get("account_name", ""))
            ),
            "/config",
            f"The account {form.get('account_name', '')} was removed.",
        )

    # --- connections ----------------------------------------------------------------------

    async def connection_page(self, request: Request, index: str, list_id: str) -> Response:
        return await self._connection_page(request, index, list_id)

    async def _connection_page(
        self,
        request: Request,
        index: str,
        list_id: str,
        errors: Mapping[str, str] | None = None,
        posted: ConnectionForm | None = None,
    ) -> Response:
        signed_in = self.signed_in(request)
        stored, found = await self._account(index)
        try:
            info = await self.run("fetchaccountinfo", {"api_key": found["api_key"]})
        except ActionError as error:
            return back(f"/config/accounts/{index}", f"Mailchimp could not be asked: {error}")
        audience = next((a for a in info["audiences"] if a["id"] == list_id), None)
        if audience is None:
            return back(f"/config/accounts/{index}", f"The account has no audience {list_id}.")
        groups, problem = await self._groups()
        connection = config_edit.connection_of(stored, list_id)
        current = posted or _form_of_connection(list_id, connection)
        return self.render(
            request,
            "connection.html",
            signed_in,
            status=400 if errors else 200,
            index=int(index),
            account=found,
            audience=audience,
            interests=config_edit.interest_choices(audience),
            chosen=current,
            chosen_interests={i: (g, t) for i, g, t in current.interests},
            connected=connection is not None,
            groups=groups,
            trust_choices=TRUST_CHOICES,
            fingerprint=config_edit.fingerprint(stored),
            errors={**({"form": problem} if problem else {}), **(errors or {})},
        )

    async def save_connection(self, request: Request, index: str, list_id: str) -> Response:
        form = await self.posted(request)
        posted = _connection_form(list_id, form)
        stored = await self._unchanged(form, f"/config/accounts/{index}/audiences/{list_id}")
        try:
            name = str(form.get("account_name", ""))
            await self._replace(config_edit.set_connection(stored, _index(index), name, posted))
        except EditRefused as error:
            return back("/config", str(error))
        except ActionError as error:
            field = posted.field_of(error.message)
            return await self._connection_page(
                request, index, list_id, {field: _plain(error.message)}, posted
            )
        return back(f"/config/accounts/{index}", f"The audience {list_id} connection was saved.")

    async def remove_connection_page(self, request: Request, index: str, list_id: str) -> Response:
        signed_in = self.signed_in(request)
        stored, found = await self._account(index)
        if config_edit.connection_of(stored, list_id) is None:
            return back("/config", f"The audience {list_id} is not connected.")
        rows = await self.run("MailchimpsyncCache.get", {"mailchimp_list_id": list_id, "limit": 1})
        return self.render(
            request,
            "confirm.html",
            signed_in,
            title=f"Disconnect the audience {list_id}?",
            consequences=[
                f"The sync forgets the audience's {rows['count']:,} cached member(s) and their "
                "changes not yet sent.",
                *REMOVED_CONNECTION,
            ],
            action=f"/config/accounts/{index}/audiences/{list_id}/remove",
            hidden={"account_name": found["name"], "fingerprint": config_edit.fingerprint(stored)},
            button="Disconnect the audience",
            cancel=f"/config/accounts/{index}",
        )

    async def remove_connection(self, request: Request, index: str, list_id: str) -> Response:
        form = await self.posted(request)
        return await self._save(
            form,
            lambda stored: config_edit.remove_connection(
                stored, _index(index), str(form.get("account_name", "")), list_id
            ),
            f"/config/accounts/{index}",
            f"The audience {list_id} was disconnected.",
        )

    # --- webhooks -------------------------------------------------------------------------

    async def webhook(self, request: Request, index: str) -> Response:
        form = await self.posted(request)
        _, found = await self._account(index, form.get("account_name"))
        process = str(form.get("process", ""))
        values = {"api_key": found["api_key"], "process": process}
        if form.get("id"):
            values["id"] = str(form["id"])
        try:
            await self.run("updatewebhook", values)
        except ActionError as error:
            return back(f"/config/accounts/{index}", f"The webhooks were not changed: {error}")
        said = "added" if process.startswith("add") else "deleted"
        return back(f"/config/accounts/{index}", f"Webhook {said}.")

    # --- shared ---------------------------------------------------------------------------

    async def _stored(self) -> dict[str, Any]:
        return await run_in_threadpool(stored_config, self.ctx)

    async def _account(
        self, index: str, name: object = None
    ) -> tuple[dict[str, Any], Mapping[str, Any]]:
        """The stored configuration and its account at ``index`` (with ``name``, if given);
        else back to the accounts, saying so."""
        stored = await self._stored()
        try:
            return stored, config_edit.account(stored, _index(index), name)
        except EditRefused:
            raise Refused(back("/config", "That account is no longer configured.")) from None

    async def _groups(self) -> tuple[list[tuple[int, str]], str]:
        """The CRM's groups, and what went wrong reading them (empty if nothing)."""
        try:
            return await run_in_threadpool(crm_groups, self.ctx), ""
        except ActionError as error:
            return [], f"The CRM's groups could not be read: {error.message}"

    async def _unchanged(self, form: FormData, stale_to: str) -> dict[str, Any]:
        """The stored configuration, if it is the one the form was made from; else back to
        ``stale_to``, saying why nothing was saved."""
        stored = await self._stored()
        if form.get("fingerprint") != config_edit.fingerprint(stored):
            raise Refused(back(stale_to, CHANGED_ELSEWHERE))
        return stored

    async def _replace(self, changed: dict[str, Any]) -> dict[str, Any]:
        """Save the whole configuration with ``updateconfig``."""
        await self.run("updateconfig", {"config": json.dumps(changed)})
        return changed

    async def _save(self, form: FormData, edit: Any, done: str, message: str) -> Response:
        stored = await self._unchanged(form, "/config")
        try:
            await self._replace(edit(stored))
        except (EditRefused, ActionError) as error:
            return back("/config", f"Nothing was changed: {error}")
        return back(done, message)


CHANGED_ELSEWHERE = (
    "The configuration was changed elsewhere since this page was shown; nothing was saved. "
    "Here it is as it is now."
)
REMOVED_CONNECTION = [
    "What the sync keeps about the audience goes: its cache, its changes not yet sent, its "
    "batch records, its status, log and history of runs.",
    "Nothing changes in the CRM or at Mailchimp. Batches already at Mailchimp still run there, "
    "and the audience's webhooks stay until you delete them.",
]


def _index(value: str) -> int:
    """An account's position from the path (-1, no account, if it is not a number)."""
    found = number(value)
    return -1 if found is None else found


def _connection_form(list_id: str, form: FormData) -> ConnectionForm:
    interest_ids = [str(v) for v in form.getlist("interest_id")]
    return ConnectionForm(
        list_id=list_id,
        subscription_group_id=str(form.get("subscription_group_id", "")).strip(),
        data_sync=form.get("data_sync") == "on",
        trust_override=str(form.get("trust_override", "")),
        interests=tuple(
            (
                interest,
                str(form.get(f"interest_{interest}", "")).strip(),
                str(form.get(f"interest_trust_{interest}", "")),
            )
            for interest in interest_ids
        ),
    )


def _form_of_connection(list_id: str, stored: Mapping[str, Any] | None) -> ConnectionForm:
    if stored is None:
        return ConnectionForm(list_id, "", False, "", ())
    return ConnectionForm(
        list_id=list_id,
        subscription_group_id=str(stored["subscription_group_id"]),
        data_sync=stored["data_sync"],
        trust_override=stored["trust_override"],
        interests=tuple(
            (i["interest_id"], str(i["group_id"]), i["trust_override"]) for i in stored["interests"]
        ),
    )


def _plain(message: str) -> str:
    """A refusal of the saved configuration without its path into the JSON."""
    return message.removeprefix("config: ").split(": ", 1)[-1] if ": " in message else message
