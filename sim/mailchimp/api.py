"""The Marketing API v3 service layer: one route table, HTTP-free.

The FastAPI app and the batch runner both call `dispatch`, so a batch operation behaves
exactly like the same request made over HTTP.
"""

from __future__ import annotations

import bisect
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from sortedcontainers import SortedKeyList

from sim.mailchimp import batches, errors, members, render, rules
from sim.mailchimp.model import STATUSES, Account, Audience, AudienceWebhook, BatchWebhook, Member

if TYPE_CHECKING:
    from sim.mailchimp.simulator import Simulator

MAX_COUNT = 1000
SORT_FIELDS = ("last_changed", "timestamp_opt", "timestamp_signup")
WEBHOOK_EVENTS = ("subscribe", "unsubscribe", "profile", "cleaned", "upemail", "campaign")
WEBHOOK_SOURCES = ("user", "admin", "api")


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    template: str = "unmatched"
    problem: bool = False


@dataclass
class Call:
    """One API call as the handlers see it."""

    sim: Simulator
    account: Account
    params: dict[str, str]
    query: Mapping[str, str]
    raw_body: bytes | str | None
    base_url: str

    def body(self) -> Any:
        if not self.raw_body:
            return {}
        try:
            return orjson.loads(self.raw_body)
        except orjson.JSONDecodeError:
            raise errors.ApiError(
                400, "JSON Parse Error", "We encountered an unspecified JSON parsing error."
            ) from None

    def audience(self) -> Audience:
        audience = self.account.lists.get(self.params["list_id"])
        if audience is None:
            raise errors.not_found()
        return audience

    def flag(self, name: str) -> bool:
        return self.query.get(name, "").lower() == "true"

    def shaped(self, value: dict[str, Any]) -> Reply:
        fields = render.parse_field_list(self.query.get("fields"))
        excluded = render.parse_field_list(self.query.get("exclude_fields"))
        return Reply(200, render.shape(value, fields, excluded))


Handler = Callable[[Call], Reply]
ROUTES: list[tuple[str, re.Pattern[str], dict[str, Handler]]] = []


def route(template: str, method: str) -> Callable[[Handler], Handler]:
    """Register a handler for METHOD template (templates like /lists/{list_id})."""
    pattern = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template) + "/?$")

    def register(handler: Handler) -> Handler:
        for known, _, handlers in ROUTES:
            if known == template:
                handlers[method] = handler
                return handler
        ROUTES.append((template, pattern, {method: handler}))
        return handler

    return register


def dispatch(
    sim: Simulator,
    account: Account,
    method: str,
    path: str,
    query: Mapping[str, str],
    raw_body: bytes | str | None,
    base_url: str,
) -> Reply:
    """Route one call and turn ApiErrors into problem documents."""
    template = "unmatched"
    try:
        template, params, handler = _match(method.upper(), path or "/")
        call = Call(sim, account, params, query, raw_body, base_url)
        reply = handler(call)
    except errors.ApiError as error:
        instance = str(uuid.uuid4())
        headers = {**error.headers, "X-Request-Id": instance}
        reply = Reply(error.status, error.problem(instance), headers, problem=True)
    reply.template = template
    return reply


def _match(method: str, path: str) -> tuple[str, dict[str, str], Handler]:
    for template, pattern, handlers in ROUTES:
        found = pattern.match(path)
        if found is None:
            continue
        if method not in handlers:
            allow = ", ".join(sorted(handlers))
            raise errors.ApiError(
                405,
                "Method Not Allowed",
                "The requested method and resource are not compatible.",
                headers={"Allow": allow},
            )
        return template, found.groupdict(), handlers[method]
    raise errors.not_found()


# ---- paging helpers ----------------------------------------------------------------------


def _int_param(call: Call, name: str, default: int) -> int:
    raw = call.query.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise errors.schema_invalid([{"field": name, "message": "Must be a positive integer."}])
    return value


def page_window(call: Call) -> tuple[int, int]:
    """(offset, count) with count <= 1000 (larger -> 400, as Mailchimp answers)."""
    count = _int_param(call, "count", 10)
    if count > MAX_COUNT:
        raise errors.schema_invalid(
            [{"field": "count", "message": f"count must be at most {MAX_COUNT}."}]
        )
    return _int_param(call, "offset", 0), count


def _page(call: Call, key: str, items: list[Any], extra: dict[str, Any]) -> Reply:
    offset, count = page_window(call)
    body = {key: items[offset : offset + count], **extra, "total_items": len(items), "_links": []}
    return call.shaped(body)


# ---- account -------------------------------------------------------------------------------


@route("/", "GET")
def get_root(call: Call) -> Reply:
    account = call.account
    total = sum(a.counts["subscribed"] for a in account.lists.values())
    since = rules.iso(account.created_at)
    return call.shaped(
        {
            "account_id": account.account_id,
            "login_id": account.account_id[:8],
            "account_name": account.account_name,
            "email": "admin@example.org",
            "first_name": "Sim",
            "last_name": "Ulator",
            "username": "simulator",
            "avatar_url": "",
            "role": "owner",
            "member_since": since,
            "pricing_plan_type": "monthly",
            "first_payment": since,
            "account_timezone": "UTC",
            "account_industry": "Nonprofit",
            "contact": {
                "company": account.account_name,
                "addr1": "",
                "addr2": "",
                "city": "",
                "state": "",
                "zip": "",
                "country": "GB",
            },
            "pro_enabled": False,
            "last_login": since,
            "total_subscribers": total,
            "industry_stats": {"open_rate": 0.25, "bounce_rate": 0.01, "click_rate": 0.03},
            "_links": [],
        }
    )


@route("/ping", "GET")
def get_ping(call: Call) -> Reply:
    return Reply(200, {"health_status": "Everything's Chimpy!"})


# ---- lists, interests, merge fields ----------------------------------------------------


@route("/lists", "GET")
def get_lists(call: Call) -> Reply:
    lists = [render.render_list(a) for a in call.account.lists.values()]
    constraints = {"may_create": True, "max_instances": 100, "current_total_instances": len(lists)}
    return _page(call, "lists", lists, {"constraints": constraints})


@route("/lists/{list_id}", "GET")
def get_list(call: Call) -> Reply:
    return call.shaped(render.render_list(call.audience()))


def _category_json(audience: Audience, index: int) -> dict[str, Any]:
    category = audience.categories[index]
    return {
        "list_id": audience.id,
        "id": category.id,
        "title": category.title,
        "display_order": category.display_order,
        "type": category.type,
        "_links": [],
    }


@route("/lists/{list_id}/interest-categories", "GET")
def get_categories(call: Call) -> Reply:
    audience = call.audience()
    items = [_category_json(audience, n) for n in range(len(audience.categories))]
    return _page(call, "categories", items, {"list_id": audience.id})


def _category_index(call: Call, audience: Audience) -> int:
    for n, category in enumerate(audience.categories):
        if category.id == call.params["category_id"]:
            return n
    raise errors.not_found()


@route("/lists/{list_id}/interest-categories/{category_id}", "GET")
def get_category(call: Call) -> Reply:
    audience = call.audience()
    return call.shaped(_category_json(audience, _category_index(call, audience)))


@route("/lists/{list_id}/interest-categories/{category_id}/interests", "GET")
def get_interests(call: Call) -> Reply:
    audience = call.audience()
    category = audience.categories[_category_index(call, audience)]
    position = {interest_id: n for n, interest_id in enumerate(audience.interest_ids)}
    items = [
        {
            "category_id": category.id,
            "list_id": audience.id,
            "id": i.id,
            "name": i.name,
            "subscriber_count": str(_interest_count(audience, position[i.id])),
            "display_order": i.display_order,
            "_links": [],
        }
        for i in category.interests
    ]
    return _page(call, "interests", items, {"list_id": audience.id, "category_id": category.id})


def _interest_count(audience: Audience, position: int) -> int:
    subscribed = audience.index.by_status["subscribed"]
    return sum(1 for m in subscribed if m.interests and m.interests[position])


@route("/lists/{list_id}/merge-fields", "GET")
def get_merge_fields(call: Call) -> Reply:
    audience = call.audience()
    items = [
        {
            "merge_id": f.merge_id,
            "tag": f.tag,
            "name": f.name,
            "type": f.type,
            "required": f.required,
            "default_value": f.default_value,
            "public": True,
            "display_order": f.merge_id + 1,
            "options": f.options,
            "help_text": "",
            "list_id": audience.id,
            "_links": [],
        }
        for f in audience.merge_fields
    ]
    return _page(call, "merge_fields", items, {"list_id": audience.id})


# ---- members ---------------------------------------------------------------------------


def _member_reply(call: Call, member: Member, audience: Audience) -> Reply:
    fields = render.parse_field_list(call.query.get("fields"))
    excluded = render.parse_field_list(call.query.get("exclude_fields"))
    body = render.render_member(member, audience, fields)
    return Reply(200, render.exclude(body, excluded) if excluded else body)


@dataclass(frozen=True)
class MemberWindow:
    """The members matching the filters: `ordered[start:end]`, not copied."""

    ordered: SortedKeyList  # slices of it are lists
    start: int
    end: int

    @property
    def total(self) -> int:
        return max(0, self.end - self.start)


def _member_window(call: Call, audience: Audience) -> MemberWindow:
    """Bisect the (last_changed, rank) index instead of scanning members."""
    status = call.query.get("status") or None
    if status is not None and status not in STATUSES:
        raise errors.schema_invalid([{"field": "status", "message": "Invalid status"}])
    include_archived = call.sim.switches.list_archived_without_status
    ordered = audience.index.view(status, include_archived)
    since, before = call.query.get("since_last_changed"), call.query.get("before_last_changed")
    start, end = 0, len(ordered)
    if since:
        # strictly after: skip everything changed at or before the moment
        moment = rules.parse_timestamp(since, "since_last_changed")
        start = bisect.bisect_right(ordered, moment, key=_last_changed)
    if before:
        moment = rules.parse_timestamp(before, "before_last_changed")
        end = bisect.bisect_left(ordered, moment, key=_last_changed)
    return MemberWindow(ordered, start, end)


def _last_changed(member: Member) -> float:
    return member.last_changed


def _sorted_page(call: Call, window: MemberWindow, offset: int, count: int) -> list[Member]:
    sort_field = call.query.get("sort_field") or "last_changed"
    if sort_field not in SORT_FIELDS:
        raise errors.schema_invalid([{"field": "sort_field", "message": "Invalid sort field"}])
    descending = (call.query.get("sort_dir") or "ASC").upper() == "DESC"
    if sort_field != "last_changed":
        # rare: no index for these, sort the window
        chosen: list[Member] = window.ordered[window.start : window.end]
        chosen.sort(key=lambda m: getattr(m, sort_field) or 0.0, reverse=descending)
        return chosen[offset : offset + count]
    if descending:
        stop = window.end - offset
        page: list[Member] = window.ordered[
            max(window.start, stop - count) : max(window.start, stop)
        ]
        return page[::-1]
    first = window.start + offset
    page = window.ordered[first : min(first + count, window.end)]
    return page


@route("/lists/{list_id}/members", "GET")
def list_members(call: Call) -> Reply:
    audience = call.audience()
    offset, count = page_window(call)
    window = _member_window(call, audience)
    page = _sorted_page(call, window, offset, count)
    fields = render.parse_field_list(call.query.get("fields"))
    excluded = render.parse_field_list(call.query.get("exclude_fields"))
    member_fields = fields.get("members") if fields else None
    if fields is not None and "members" not in fields:
        rendered: list[dict[str, Any]] | None = None
    else:
        plan = render.member_plan(audience, member_fields)
        rendered = [render.render_planned(m, audience, plan) for m in page]
    body: dict[str, Any] = {
        "members": rendered,
        "list_id": audience.id,
        "total_items": window.total,
        "_links": [],
    }
    if fields is not None:
        body = {k: v for k, v in body.items() if k in fields}
    return Reply(200, render.exclude(body, excluded) if excluded else body)


@route("/lists/{list_id}/members", "POST")
def create_member(call: Call) -> Reply:
    audience = call.audience()
    result = members.create_member(
        audience, call.body(), call.sim.policy(), call.sim.now(), call.flag("skip_merge_validation")
    )
    call.sim.emit(result.events)
    return _member_reply(call, result.member, audience)


@route("/lists/{list_id}/members/{subscriber_hash}", "GET")
def get_member(call: Call) -> Reply:
    audience = call.audience()
    return _member_reply(call, members.require(audience, call.params["subscriber_hash"]), audience)


@route("/lists/{list_id}/members/{subscriber_hash}", "PUT")
def put_member(call: Call) -> Reply:
    audience = call.audience()
    result = members.upsert_member(
        audience,
        call.params["subscriber_hash"],
        call.body(),
        call.sim.policy(),
        call.sim.now(),
        call.flag("skip_merge_validation"),
    )
    call.sim.emit(result.events)
    return _member_reply(call, result.member, audience)


@route("/lists/{list_id}/members/{subscriber_hash}", "PATCH")
def patch_member(call: Call) -> Reply:
    audience = call.audience()
    result = members.patch_member(
        audience, call.params["subscriber_hash"], call.body(), call.sim.policy(), call.sim.now()
    )
    call.sim.emit(result.events)
    return _member_reply(call, result.member, audience)


@route("/lists/{list_id}/members/{subscriber_hash}", "DELETE")
def delete_member(call: Call) -> Reply:
    events = members.archive_member(call.audience(), call.params["subscriber_hash"], call.sim.now())
    call.sim.emit(events)
    return Reply(204)


@route("/lists/{list_id}/members/{subscriber_hash}/actions/delete-permanent", "POST")
def delete_member_permanently(call: Call) -> Reply:
    call.sim.emit(members.delete_permanently(call.audience(), call.params["subscriber_hash"]))
    return Reply(204)


@route("/lists/{list_id}/members/{subscriber_hash}/tags", "POST")
def post_member_tags(call: Call) -> Reply:
    members.update_tags(
        call.audience(), call.params["subscriber_hash"], call.body(), call.sim.now()
    )
    return Reply(204)


@route("/lists/{list_id}/members/{subscriber_hash}/tags", "GET")
def get_member_tags(call: Call) -> Reply:
    audience = call.audience()
    member = members.require(audience, call.params["subscriber_hash"])
    names = {tag.id: tag.name for tag in audience.tags.values()}
    items = [
        {"id": tag_id, "name": names.get(tag_id, ""), "date_added": rules.iso(added)}
        for tag_id, added in (member.tags or {}).items()
    ]
    return _page(call, "tags", items, {})


# ---- list webhooks -----------------------------------------------------------------------


def _flags(given: Any, names: tuple[str, ...], default: bool) -> dict[str, bool]:
    given = given if isinstance(given, dict) else {}
    return {name: bool(given.get(name, default)) for name in names}


def _webhook_json(audience: Audience, hook: AudienceWebhook) -> dict[str, Any]:
    return {
        "id": hook.id,
        "url": hook.url,
        "events": hook.events,
        "sources": hook.sources,
        "list_id": audience.id,
        "_links": [],
    }


def _require_url(body: Any) -> str:
    url = body.get("url") if isinstance(body, dict) else None
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise errors.schema_invalid([{"field": "url", "message": "Please provide a valid URL."}])
    return url


@route("/lists/{list_id}/webhooks", "POST")
def create_list_webhook(call: Call) -> Reply:
    audience, body = call.audience(), call.body()
    url = _require_url(body)
    call.sim.check_webhook_url(url)
    hook = AudienceWebhook(
        id=uuid.uuid4().hex[:10],
        url=url,
        events=_flags(body.get("events"), WEBHOOK_EVENTS, True),
        sources=_flags(body.get("sources"), WEBHOOK_SOURCES, True),
    )
    audience.webhooks[hook.id] = hook
    return Reply(200, _webhook_json(audience, hook))


@route("/lists/{list_id}/webhooks", "GET")
def get_list_webhooks(call: Call) -> Reply:
    audience = call.audience()
    items = [_webhook_json(audience, h) for h in audience.webhooks.values()]
    return call.shaped(
        {"webhooks": items, "list_id": audience.id, "total_items": len(items), "_links": []}
    )


def _list_webhook(call: Call) -> tuple[Audience, AudienceWebhook]:
    audience = call.audience()
    hook = audience.webhooks.get(call.params["webhook_id"])
    if hook is None:
        raise errors.not_found()
    return audience, hook


@route("/lists/{list_id}/webhooks/{webhook_id}", "GET")
def get_list_webhook(call: Call) -> Reply:
    return call.shaped(_webhook_json(*_list_webhook(call)))


@route("/lists/{list_id}/webhooks/{webhook_id}", "PATCH")
def patch_list_webhook(call: Call) -> Reply:
    audience, hook = _list_webhook(call)
    body = call.body()
    if "url" in body:
        hook.url = _require_url(body)
    if isinstance(body.get("events"), dict):
        hook.events = {**hook.events, **_flags(body["events"], tuple(body["events"]), False)}
    if isinstance(body.get("sources"), dict):
        hook.sources = {**hook.sources, **_flags(body["sources"], tuple(body["sources"]), False)}
    return Reply(200, _webhook_json(audience, hook))


@route("/lists/{list_id}/webhooks/{webhook_id}", "DELETE")
def delete_list_webhook(call: Call) -> Reply:
    audience, hook = _list_webhook(call)
    del audience.webhooks[hook.id]
    return Reply(204)


# ---- batches -----------------------------------------------------------------------------


def batch_json(sim: Simulator, batch: Any) -> dict[str, Any]:
    return {
        "id": batch.id,
        "status": batch.status,
        "total_operations": batch.total_operations,
        "finished_operations": batch.finished_operations,
        "errored_operations": batch.errored_operations,
        "submitted_at": rules.iso(batch.submitted_at),
        "completed_at": rules.iso(batch.completed_at),
        "response_body_url": sim.results_url(batch),
        "_links": [],
    }


@route("/batches", "POST")
def create_batch(call: Call) -> Reply:
    operations = batches.parse_operations(call.body())
    batch = call.sim.submit_batch(call.account, operations, call.base_url)
    return Reply(200, batch_json(call.sim, batch))


@route("/batches", "GET")
def get_batches(call: Call) -> Reply:
    items = [batch_json(call.sim, b) for b in call.account.batches.values()]
    return _page(call, "batches", items, {})


@route("/batches/{batch_id}", "GET")
def get_batch(call: Call) -> Reply:
    batch = call.account.batches.get(call.params["batch_id"])
    if batch is None:
        raise errors.not_found()
    return call.shaped(batch_json(call.sim, batch))


@route("/batches/{batch_id}", "DELETE")
def delete_batch(call: Call) -> Reply:
    batch = call.account.batches.pop(call.params["batch_id"], None)
    if batch is None:
        raise errors.not_found()
    batch.cancelled = True
    return Reply(204)


# ---- batch webhooks ----------------------------------------------------------------------


def _batch_webhook_json(hook: BatchWebhook) -> dict[str, Any]:
    return {"id": hook.id, "url": hook.url, "enabled": hook.enabled, "_links": []}


@route("/batch-webhooks", "POST")
def create_batch_webhook(call: Call) -> Reply:
    body = call.body()
    url = _require_url(body)
    if len(call.account.batch_webhooks) >= 20:
        raise errors.invalid_resource("You may only have 20 batch webhooks.")
    call.sim.check_webhook_url(url)
    hook = BatchWebhook(uuid.uuid4().hex[:10], url, bool(body.get("enabled", True)))
    call.account.batch_webhooks[hook.id] = hook
    return Reply(200, _batch_webhook_json(hook))


@route("/batch-webhooks", "GET")
def get_batch_webhooks(call: Call) -> Reply:
    items = [_batch_webhook_json(h) for h in call.account.batch_webhooks.values()]
    return _page(call, "webhooks", items, {})


def _batch_webhook(call: Call) -> BatchWebhook:
    hook = call.account.batch_webhooks.get(call.params["batch_webhook_id"])
    if hook is None:
        raise errors.not_found()
    return hook


@route("/batch-webhooks/{batch_webhook_id}", "GET")
def get_batch_webhook(call: Call) -> Reply:
    return call.shaped(_batch_webhook_json(_batch_webhook(call)))


@route("/batch-webhooks/{batch_webhook_id}", "PATCH")
def patch_batch_webhook(call: Call) -> Reply:
    hook, body = _batch_webhook(call), call.body()
    if "url" in body:
        hook.url = _require_url(body)
    if "enabled" in body:
        hook.enabled = bool(body["enabled"])
    return Reply(200, _batch_webhook_json(hook))


@route("/batch-webhooks/{batch_webhook_id}", "DELETE")
def delete_batch_webhook(call: Call) -> Reply:
    hook = _batch_webhook(call)
    del call.account.batch_webhooks[hook.id]
    return Reply(204)
