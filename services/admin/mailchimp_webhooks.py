"""``updatewebhook``: add or delete our webhooks at Mailchimp for a configured account.

One batch webhook per account and one audience webhook per connected audience, each pointing
at our webhooks service (``MCSYNC_WEBHOOK_BASE_URL`` + the paths of ``common.webhook_urls``)
with the account's secret in the query; an account without a secret gets one. Audience
webhooks take the member events (subscribe, unsubscribe, profile, cleaned, upemail), not
``campaign``, from the sources ``user`` and ``admin`` only: with ``api`` our own updates would
come back to us as events, and loop.

Adding is idempotent: a webhook of ours already registered is kept, never duplicated, and
put right if it was disabled, subscribed to other events or sources, or registered at an
older URL (the id we stored, while the base URL changed since); its id is stored
(``mailchimpsync_account.batch_webhook_id``, ``mailchimpsync_connection.webhook_id``).
Deleting takes any webhook id of the account (the config screen lists them all) and clears
the stored id if it was ours; an id Mailchimp does not know is a NotFound on ``id``.

Changes to one account's webhooks are serialised by an advisory lock held on a connection in
autocommit, so two clicks cannot register two webhooks, yet no transaction stays open
during the calls to Mailchimp.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import sqlalchemy as sa

from common.audience_events import MEMBER_EVENTS, AudienceEventType
from common.db import config
from common.db.config import AccountWebhooks, ConnectionWebhook
from common.mailchimp import MailchimpClient, MailchimpError
from common.webhook_urls import AUDIENCE_WEBHOOK_PATH, BATCH_WEBHOOK_PATH, webhook_url
from services.admin.context import AdminContext, Conflict, NotFound, ParamError
from services.admin.mailchimp_support import (
    OurWebhooks,
    all_pages,
    check_api_key,
    fan_out,
    mailchimp_errors,
    pool,
)

ADD_BATCH = "add_batch_webhook"
DELETE_BATCH = "delete_batch_webhook"
ADD_AUDIENCE = "add_webhook"
DELETE_AUDIENCE = "delete_webhook"
PROCESSES = (ADD_BATCH, DELETE_BATCH, ADD_AUDIENCE, DELETE_AUDIENCE)

EVENTS = {event.value: event in MEMBER_EVENTS for event in AudienceEventType}
SOURCES = {"user": True, "admin": True, "api": False}
WEBHOOK_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
"""The id goes into Mailchimp's path: nothing that could change the path."""

Process = Callable[[AdminContext, MailchimpClient, AccountWebhooks, str], dict[str, Any]]


def update_webhook(
    ctx: AdminContext, api_key: str, process: str, webhook_id: str | None
) -> dict[str, Any]:
    """Run one of the seed's four processes (see the module docstring)."""
    check_api_key(api_key)
    adding = process in (ADD_BATCH, ADD_AUDIENCE)
    if adding and webhook_id:
        raise ParamError(f"id: only the delete processes take an id, not {process}", "id")
    if not adding and not webhook_id:
        raise ParamError(f"id: {process} needs the id of the webhook to delete", "id")
    if webhook_id and not WEBHOOK_ID.match(webhook_id):
        raise ParamError("id: a Mailchimp webhook id is letters and digits", "id")
    if adding and not ctx.settings.webhook_base_url:
        raise Conflict(
            "MCSYNC_WEBHOOK_BASE_URL is not set: Mailchimp needs the public URL of our "
            "webhooks service to call"
        )
    account_id = _configured(ctx.engine, api_key).account_id
    client = ctx.mailchimp(api_key)
    run: Process = _PROCESSES[process]
    with _account_lock(ctx.engine, account_id), mailchimp_errors("updatewebhook"):
        account = _configured(ctx.engine, api_key)  # as the previous holder of the lock left it
        return {"process": process, **run(ctx, client, account, webhook_id or "")}


def _configured(engine: sa.Engine, api_key: str) -> AccountWebhooks:
    with engine.connect() as conn:
        account = config.load_account_webhooks(conn, api_key)
    if account is None:
        raise NotFound("api_key: no account is configured with this API key", "api_key")
    return account


@contextmanager
def _account_lock(engine: sa.Engine, account_id: int) -> Iterator[None]:
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT")
        config.lock_account_webhooks(conn, account_id)
        try:
            yield
        finally:
            config.unlock_account_webhooks(conn, account_id)


def _with_secret(engine: sa.Engine, account: AccountWebhooks) -> AccountWebhooks:
    """The account, with a webhook secret created for it if it had none."""
    if account.secrets:
        return account
    with engine.begin() as conn:
        locked = config.load_account_webhooks(conn, account.api_key, lock=True)
        assert locked is not None
        if not locked.secrets:
            config.add_webhook_secret(conn, locked.account_id, secrets.token_urlsafe(32))
            locked = config.load_account_webhooks(conn, account.api_key)
    assert locked is not None
    return locked


def _ours(ctx: AdminContext, account: AccountWebhooks) -> OurWebhooks:
    return OurWebhooks.of(ctx.settings.webhook_base_url, account.secrets)


# --- batch webhook -----------------------------------------------------------------------------


def _add_batch(
    ctx: AdminContext, client: MailchimpClient, account: AccountWebhooks, _: str
) -> dict[str, Any]:
    account = _with_secret(ctx.engine, account)
    ours = _ours(ctx, account)
    url = webhook_url(ctx.settings.webhook_base_url, BATCH_WEBHOOK_PATH, account.secrets[0])
    listed = all_pages(client, "/batch-webhooks", "webhooks")
    hook = _pick(listed, ours.is_batch, account.batch_webhook_id)
    created = updated = False
    if hook is None:
        hook, created = client.post("/batch-webhooks", {"url": url, "enabled": True}), True
    else:
        changes: dict[str, Any] = {} if ours.is_batch(hook.get("url")) else {"url": url}
        changes.update({} if hook.get("enabled") else {"enabled": True})
        if changes:
            hook, updated = client.patch(f"/batch-webhooks/{hook['id']}", changes), True
    with ctx.engine.begin() as conn:
        config.set_batch_webhook_id(conn, account.account_id, str(hook["id"]))
    return {"created": created, "updated": updated, "webhook": _batch_json(hook)}


def _pick(
    listed: list[dict[str, Any]], is_ours: Callable[[object], bool], stored_id: str | None
) -> dict[str, Any] | None:
    """Our webhook among those listed: one at our URL (the stored one first), else the one
    we stored (registered at an older base URL or secret: put right, not duplicated)."""
    ours = sorted((h for h in listed if is_ours(h.get("url"))), key=lambda h: h["id"] != stored_id)
    stored = [h for h in listed if stored_id is not None and h["id"] == stored_id]
    found = ours or stored
    return found[0] if found else None


def _delete_batch(
    ctx: AdminContext, client: MailchimpClient, account: AccountWebhooks, webhook_id: str
) -> dict[str, Any]:
    _delete(client, f"/batch-webhooks/{webhook_id}", f"no batch webhook {webhook_id}")
    with ctx.engine.begin() as conn:
        cleared = config.forget_webhook_id(conn, account.account_id, webhook_id)
    return {"deleted": webhook_id, "was_ours": bool(cleared)}


def _batch_json(hook: dict[str, Any]) -> dict[str, Any]:
    return {"id": hook["id"], "url": hook.get("url"), "enabled": hook.get("enabled")}


# --- audience webhooks -------------------------------------------------------------------------


def _add_audience(
    ctx: AdminContext, client: MailchimpClient, account: AccountWebhooks, _: str
) -> dict[str, Any]:
    if not account.connections:
        raise Conflict("the account has no connected audience to add a webhook to")
    account = _with_secret(ctx.engine, account)
    ours = _ours(ctx, account)
    url = webhook_url(ctx.settings.webhook_base_url, AUDIENCE_WEBHOOK_PATH, account.secrets[0])
    with pool(ctx, "updatewebhook") as executor:
        done = fan_out(
            executor,
            {
                c.list_id: partial(_ensure_audience_webhook, ctx.engine, client, c, ours, url)
                for c in account.connections
            },
        )
    return {"webhooks": list(done.values())}


def _ensure_audience_webhook(
    engine: sa.Engine,
    client: MailchimpClient,
    connection: ConnectionWebhook,
    ours: OurWebhooks,
    url: str,
) -> dict[str, Any]:
    """Register our webhook on one audience unless it is there; store its id at once."""
    path = f"/lists/{connection.list_id}/webhooks"
    hook = _pick(all_pages(client, path, "webhooks"), ours.is_audience, connection.webhook_id)
    created = updated = False
    if hook is None:
        hook, created = client.post(path, {"url": url, "events": EVENTS, "sources": SOURCES}), True
    else:
        changes: dict[str, Any] = {} if ours.is_audience(hook.get("url")) else {"url": url}
        changes.update({} if hook.get("events") == EVENTS else {"events": EVENTS})
        changes.update({} if hook.get("sources") == SOURCES else {"sources": SOURCES})
        if changes:
            hook, updated = client.patch(f"{path}/{hook['id']}", changes), True
    with engine.begin() as conn:
        config.set_connection_webhook_id(conn, connection.connection_id, str(hook["id"]))
    return {
        "list_id": connection.list_id,
        "group_id": connection.subscription_group_id,
        "created": created,
        "updated": updated,
        "webhook": {k: hook.get(k) for k in ("id", "url", "events", "sources")},
    }


def _delete_audience(
    ctx: AdminContext, client: MailchimpClient, account: AccountWebhooks, webhook_id: str
) -> dict[str, Any]:
    list_id = _audience_of_webhook(ctx, client, account, webhook_id)
    _delete(client, f"/lists/{list_id}/webhooks/{webhook_id}", f"no webhook {webhook_id}")
    with ctx.engine.begin() as conn:
        cleared = config.forget_webhook_id(conn, account.account_id, webhook_id)
    return {"deleted": webhook_id, "list_id": list_id, "was_ours": bool(cleared)}


def _audience_of_webhook(
    ctx: AdminContext, client: MailchimpClient, account: AccountWebhooks, webhook_id: str
) -> str:
    """The audience holding the webhook: stored on a connection, else found at Mailchimp among
    every audience of the account."""
    for connection in account.connections:
        if connection.webhook_id == webhook_id:
            return connection.list_id
    lists = all_pages(client, "/lists", "lists", {"fields": "lists.id,total_items"})
    with pool(ctx, "updatewebhook") as executor:
        hooks = fan_out(
            executor,
            {
                a["id"]: partial(all_pages, client, f"/lists/{a['id']}/webhooks", "webhooks")
                for a in lists
            },
        )
    for list_id, listed in hooks.items():
        if any(h["id"] == webhook_id for h in listed):
            return str(list_id)
    raise NotFound(f"id: no audience of the account has a webhook {webhook_id}", "id")


def _delete(client: MailchimpClient, path: str, missing: str) -> None:
    try:
        client.delete(path)
    except MailchimpError as error:
        if error.status == 404:
            raise NotFound(f"id: Mailchimp has {missing} for this account", "id") from error
        raise


_PROCESSES: dict[str, Process] = {
    ADD_BATCH: _add_batch,
    DELETE_BATCH: _delete_batch,
    ADD_AUDIENCE: _add_audience,
    DELETE_AUDIENCE: _delete_audience,
}
