"""``fetchaccountinfo``: what Mailchimp holds for an API key, for the config screen.

The account (``GET /``), its audiences (``GET /lists``, paged) with their interest categories
and interests, each audience's webhooks and the account's batch webhooks; for each webhook
whether it is ours (its URL is our webhooks service's, with a secret we hold for the
account), for each audience the CRM group it is connected to, and the audiences connected
under this key that Mailchimp does not list for it (a key of another account, a deleted
audience).

The key need not be configured here (the screen checks a key before saving it); its shape is
checked before any request. The account is asked for first, alone: a wrong key costs one
request and answers a ParamError on ``api_key`` (400) saying Mailchimp refused it. The rest
(one request per audience for its categories and one for its webhooks, one per category for
its interests) runs concurrently, level by level, on at most ``mailchimp_max_connections``
threads; the client's limiter keeps every request within that limit across processes too.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

from common.db import config
from common.mailchimp import MailchimpClient
from services.admin.context import AdminContext
from services.admin.mailchimp_support import (
    OurWebhooks,
    all_pages,
    check_api_key,
    fan_out,
    mailchimp_errors,
    pool,
)

ACCOUNT_FIELDS = (
    "account_id,account_name,email,first_name,last_name,username,role,"
    "pricing_plan_type,total_subscribers"
)
LIST_FIELDS = "lists.id,lists.name,lists.stats.member_count,total_items"
CATEGORY_FIELDS = "categories.id,categories.title,categories.type,total_items"
INTEREST_FIELDS = "interests.id,interests.name,total_items"


def fetch_account_info(ctx: AdminContext, api_key: str) -> dict[str, Any]:
    """Everything the config screen shows for an API key (see the module docstring)."""
    client = ctx.mailchimp(check_api_key(api_key))
    with ctx.engine.connect() as conn:
        configured = config.load_account_webhooks(conn, api_key)
        groups = config.connected_groups(conn)
    ours = OurWebhooks.of(ctx.settings.webhook_base_url, configured.secrets if configured else ())
    with mailchimp_errors("fetchaccountinfo"):
        account = client.get("/", {"fields": ACCOUNT_FIELDS})
        with pool(ctx, "fetchaccountinfo") as executor:
            found = fan_out(
                executor,
                {
                    "lists": partial(all_pages, client, "/lists", "lists", {"fields": LIST_FIELDS}),
                    "batch": partial(all_pages, client, "/batch-webhooks", "webhooks"),
                },
            )
            audiences = _audiences(executor, client, found["lists"])
    return {
        "account": account,
        "configured": configured is not None,
        "account_name": configured.name if configured else None,
        "webhook_base_url": ctx.settings.webhook_base_url or None,
        "batch_webhooks": [_batch_webhook(h, ours) for h in found["batch"]],
        "our_batch_webhook_id": _first_id(found["batch"], ours.is_batch),
        "audiences": [_audience(a, groups, ours) for a in audiences],
        "connected_audiences_missing": _missing(configured, audiences),
    }


def _missing(
    configured: config.AccountWebhooks | None, audiences: list[dict[str, Any]]
) -> list[str]:
    """Audiences connected under this key that Mailchimp does not list for it."""
    listed = {a["id"] for a in audiences}
    connections = configured.connections if configured else ()
    return [c.list_id for c in connections if c.list_id not in listed]


def _audiences(
    executor: ThreadPoolExecutor, client: MailchimpClient, lists: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Each audience with its webhooks and categories, each category with its interests."""
    per_list = fan_out(
        executor,
        {
            (a["id"], kind): partial(all_pages, client, f"/lists/{a['id']}/{path}", key, params)
            for a in lists
            for kind, path, key, params in (
                ("webhooks", "webhooks", "webhooks", None),
                ("categories", "interest-categories", "categories", {"fields": CATEGORY_FIELDS}),
            )
        },
    )
    interests = fan_out(
        executor,
        {
            (a["id"], c["id"]): partial(
                all_pages,
                client,
                f"/lists/{a['id']}/interest-categories/{c['id']}/interests",
                "interests",
                {"fields": INTEREST_FIELDS},
            )
            for a in lists
            for c in per_list[a["id"], "categories"]
        },
    )
    return [
        {
            **a,
            "webhooks": per_list[a["id"], "webhooks"],
            "interest_categories": [
                {**c, "interests": interests[a["id"], c["id"]]}
                for c in per_list[a["id"], "categories"]
            ],
        }
        for a in lists
    ]


def _audience(
    audience: dict[str, Any], groups: dict[str, int], ours: OurWebhooks
) -> dict[str, Any]:
    webhooks = audience["webhooks"]
    return {
        "id": audience["id"],
        "name": audience.get("name"),
        "member_count": (audience.get("stats") or {}).get("member_count"),
        "connected_group_id": groups.get(audience["id"]),
        "interest_categories": [
            {
                "id": c["id"],
                "title": c.get("title"),
                "type": c.get("type"),
                "interests": [{"id": i["id"], "name": i.get("name")} for i in c["interests"]],
            }
            for c in audience["interest_categories"]
        ],
        "webhooks": [
            {
                "id": h["id"],
                "url": h.get("url"),
                "events": h.get("events"),
                "sources": h.get("sources"),
                "ours": ours.is_audience(h.get("url")),
            }
            for h in webhooks
        ],
        "our_webhook_id": _first_id(webhooks, ours.is_audience),
    }


def _batch_webhook(hook: dict[str, Any], ours: OurWebhooks) -> dict[str, Any]:
    return {
        "id": hook["id"],
        "url": hook.get("url"),
        "enabled": hook.get("enabled"),
        "ours": ours.is_batch(hook.get("url")),
    }


def _first_id(hooks: list[dict[str, Any]], is_ours: Callable[[object], bool]) -> str | None:
    return next((str(h["id"]) for h in hooks if is_ours(h.get("url"))), None)
