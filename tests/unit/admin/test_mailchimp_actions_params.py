"""The Mailchimp admin actions without servers: parameters, refusals made before any request,
errors as action errors, recognising our webhooks, paging, and the abort's report."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import pytest
import sqlalchemy as sa
from pydantic import BaseModel, ValidationError

from common.mailchimp import MailchimpClient, MailchimpError, MailchimpTransientError
from common.settings import Settings
from services.admin.context import AdminContext, Conflict, ParamError, UpstreamError
from services.admin.mailchimp_abort import AbortReport
from services.admin.mailchimp_actions import ACTIONS
from services.admin.mailchimp_support import (
    OurWebhooks,
    all_pages,
    check_api_key,
    mailchimp_errors,
)
from services.admin.mailchimp_webhooks import EVENTS, SOURCES, update_webhook

KEY = "0123456789abcdef0123456789abcdef-us6"


def _model(name: str) -> type[BaseModel]:
    return next(a.params for a in ACTIONS if a.name == name)


def _unused(*_: Any) -> Any:
    raise AssertionError("no database or Mailchimp before the parameters are checked")


def _ctx(webhook_base_url: str = "https://crm.example.org") -> AdminContext:
    return AdminContext(
        Settings(webhook_base_url=webhook_base_url),
        cast(sa.Engine, None),
        _unused,
        _unused,
        lambda: datetime(2026, 1, 1, tzinfo=UTC),
    )


def test_the_three_actions_keep_the_seed_names() -> None:
    assert [a.name for a in ACTIONS] == ["abortsync", "fetchaccountinfo", "updatewebhook"]


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("abortsync", {}),
        ("abortsync", {"group_id": 0}),
        ("abortsync", {"group_id": 2**31}),
        ("abortsync", {"group_id": 1, "force": True}),
        ("fetchaccountinfo", {}),
        ("fetchaccountinfo", {"api_key": KEY, "id": "x"}),
        ("updatewebhook", {"api_key": KEY}),
        ("updatewebhook", {"api_key": KEY, "process": "add_everything"}),
        ("updatewebhook", {"api_key": KEY, "process": "add_webhook", "list_id": "x"}),
    ],
)
def test_malformed_parameters_are_refused_by_the_model(name: str, params: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        _model(name)(**params)


def test_parameters_parse_to_the_seed_names_and_types() -> None:
    parsed = _model("abortsync")(group_id="12")
    assert parsed.model_dump() == {"group_id": 12}
    hook = _model("updatewebhook")(api_key=KEY, process="delete_webhook", id="abc")
    assert hook.model_dump() == {"api_key": KEY, "process": "delete_webhook", "id": "abc"}


@pytest.mark.parametrize(
    "api_key",
    ["", KEY.upper(), "0123456789abcdef-us6", KEY + "x-", "0123456789abcdef0123456789abcdef"],
)
def test_an_api_key_not_shaped_hex_dash_datacenter_is_a_param_error(api_key: str) -> None:
    with pytest.raises(ParamError) as raised:
        check_api_key(api_key)
    assert raised.value.param == "api_key"


def test_a_well_shaped_api_key_passes() -> None:
    assert check_api_key(KEY) == KEY


@pytest.mark.parametrize("process", ["delete_webhook", "delete_batch_webhook"])
def test_a_delete_without_an_id_names_id(process: str) -> None:
    with pytest.raises(ParamError) as raised:
        update_webhook(_ctx(), KEY, process, None)
    assert raised.value.param == "id"


@pytest.mark.parametrize("webhook_id", ["../batches/1", "a b", "x?y=1", "a" * 65])
def test_a_webhook_id_that_could_change_mailchimps_path_is_refused(webhook_id: str) -> None:
    with pytest.raises(ParamError) as raised:
        update_webhook(_ctx(), KEY, "delete_webhook", webhook_id)
    assert raised.value.param == "id"


def test_an_add_with_an_id_names_id() -> None:
    with pytest.raises(ParamError) as raised:
        update_webhook(_ctx(), KEY, "add_webhook", "abc")
    assert raised.value.param == "id"


@pytest.mark.parametrize("process", ["add_webhook", "add_batch_webhook"])
def test_an_add_without_a_webhook_base_url_is_a_conflict_naming_the_variable(
    process: str,
) -> None:
    with pytest.raises(Conflict, match="MCSYNC_WEBHOOK_BASE_URL"):
        update_webhook(_ctx(webhook_base_url=""), KEY, process, None)


def test_audience_webhooks_take_member_events_from_users_and_admins_never_the_api() -> None:
    assert EVENTS == {
        "subscribe": True,
        "unsubscribe": True,
        "profile": True,
        "cleaned": True,
        "upemail": True,
        "campaign": False,
    }
    assert SOURCES == {"user": True, "admin": True, "api": False}


def test_our_webhooks_are_the_urls_of_our_service_with_a_secret_of_the_account() -> None:
    ours = OurWebhooks.of("https://crm.example.org/base/", ("s1", "s2"))
    assert ours.is_batch("https://crm.example.org/base/mailchimp/batch-webhook?secret=s2")
    assert ours.is_audience("https://crm.example.org/base/mailchimp/webhook?secret=s1")
    assert not ours.is_audience("https://crm.example.org/base/mailchimp/batch-webhook?secret=s1")
    assert not ours.is_batch("https://crm.example.org/base/mailchimp/batch-webhook?secret=s3")
    assert not ours.is_batch(None)


def test_without_a_base_url_nothing_is_ours() -> None:
    ours = OurWebhooks.of("", ("s1",))
    assert (ours.batch_urls, ours.audience_urls) == ((), ())


def _raised_by(error: Exception, key_is_param: bool = True) -> Exception:
    with pytest.raises(Exception) as raised, mailchimp_errors("doing", key_is_param):
        raise error
    return raised.value


def test_a_key_mailchimp_refuses_is_a_param_error_when_the_caller_gave_it() -> None:
    error = _raised_by(MailchimpError(401, "API Key Invalid", "Your API key may be invalid"))
    assert isinstance(error, ParamError)
    assert (error.param, error.message) == (
        "api_key",
        "api_key: Mailchimp refused the key (401 API Key Invalid)",
    )


def test_a_configured_key_mailchimp_refuses_is_an_upstream_error() -> None:
    error = _raised_by(MailchimpError(401, "API Key Invalid"), key_is_param=False)
    assert isinstance(error, UpstreamError)
    assert str(error) == "doing: Mailchimp answered 401 API Key Invalid"


def test_other_refusals_and_failures_are_upstream_errors_carrying_the_title() -> None:
    refused = _raised_by(MailchimpError(400, "Invalid Resource", "The URL did not answer"))
    failed = _raised_by(MailchimpTransientError("GET /: HTTP 500 Internal Error", status=500))
    silent = _raised_by(MailchimpTransientError("GET /: Read timed out."))
    assert isinstance(refused, UpstreamError) and isinstance(failed, UpstreamError)
    assert str(refused) == "doing: Mailchimp answered 400 Invalid Resource: The URL did not answer"
    assert str(failed) == "doing: Mailchimp failed (GET /: HTTP 500 Internal Error)"
    assert str(silent) == "doing: Mailchimp did not answer (GET /: Read timed out.)"


class _PagedClient:
    """Answers a collection of ``total`` items, recording the offsets asked for."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.asked: list[tuple[str, dict[str, Any]]] = []

    def get(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        self.asked.append((path, params))
        start, end = params["offset"], min(params["offset"] + params["count"], self.total)
        return {"items": [{"id": n} for n in range(start, end)], "total_items": self.total}


def test_all_pages_reads_every_page_of_a_collection_once() -> None:
    fake = _PagedClient(2500)
    items = all_pages(cast(MailchimpClient, fake), "/lists", "items", {"fields": "x"})
    assert [i["id"] for i in items] == list(range(2500))
    assert fake.asked == [
        ("/lists", {"fields": "x", "count": 1000, "offset": offset}) for offset in (0, 1000, 2000)
    ]


def test_all_pages_of_an_empty_collection_is_one_request() -> None:
    fake = _PagedClient(0)
    assert all_pages(cast(MailchimpClient, fake), "/lists", "items") == []
    assert len(fake.asked) == 1


def test_an_abort_in_two_passes_adds_up_and_reports_the_last_passes_leftovers() -> None:
    first = AbortReport(1, "L", ("b1",), (), 1, 3, 2, run_released=True, batches_still_posting=(7,))
    second = AbortReport(1, "L", ("b2",), ("b3",), 2, 4, 3)
    assert first.then(second).to_json() == {
        "group_id": 1,
        "list_id": "L",
        "batches_deleted_at_mailchimp": 2,
        "batches_already_gone": 1,
        "mailchimp_batch_ids": ["b1", "b2", "b3"],
        "batches_aborted": 3,
        "updates_aborted": 7,
        "rows_failed": 5,
        "run_released": True,
        "batches_still_posting": 0,
        "batches_posted_meanwhile": 0,
    }
