"""The seed actions that talk to Mailchimp: abortsync, fetchaccountinfo and updatewebhook.

Each is a pydantic model of the seed's parameters and a function answering a JSON-safe dict;
the work is in ``mailchimp_abort``, ``mailchimp_account`` and ``mailchimp_webhooks``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.admin.context import Action, AdminContext
from services.admin.mailchimp_abort import abort_sync
from services.admin.mailchimp_account import fetch_account_info
from services.admin.mailchimp_webhooks import update_webhook
from services.admin.params import RowId, Text


class AbortSyncParams(BaseModel):
    """``group_id``: the subscription group of the sync connection to abort."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    group_id: RowId = Field(description="subscription group of the sync connection")


class FetchAccountInfoParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    api_key: Text = Field(min_length=1, description="a Mailchimp API key, <hex>-<dc>")


class UpdateWebhookParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    api_key: Text = Field(min_length=1, description="the API key of a configured account")
    process: Literal[
        "add_batch_webhook", "delete_batch_webhook", "add_webhook", "delete_webhook"
    ] = Field(description="add_batch_webhook, delete_batch_webhook, add_webhook, delete_webhook")
    id: Text | None = Field(default=None, description="the webhook id (delete processes only)")


def _abortsync(ctx: AdminContext, params: AbortSyncParams) -> dict[str, Any]:
    return abort_sync(ctx, params.group_id).to_json()


def _fetchaccountinfo(ctx: AdminContext, params: FetchAccountInfoParams) -> dict[str, Any]:
    return fetch_account_info(ctx, params.api_key)


def _updatewebhook(ctx: AdminContext, params: UpdateWebhookParams) -> dict[str, Any]:
    return update_webhook(ctx, params.api_key, params.process, params.id)


ACTIONS: tuple[Action, ...] = (
    Action(
        "abortsync",
        AbortSyncParams,
        _abortsync,
        "Emergency stop of one sync: delete our unfinished batches at Mailchimp, abort them "
        "and the unsubmitted updates (their rows fail), release the audience's run.",
    ),
    Action(
        "fetchaccountinfo",
        FetchAccountInfoParams,
        _fetchaccountinfo,
        "Account, audiences, interests and webhooks at Mailchimp for an API key; ours "
        "flagged, each audience's connected group.",
    ),
    Action(
        "updatewebhook",
        UpdateWebhookParams,
        _updatewebhook,
        "Add or delete the account's batch webhook or its audiences' webhooks at Mailchimp.",
    ),
)
