"""Outgoing webhooks: PHP-style form payloads (§5, §6.3) and background delivery."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx

from sim.mailchimp.members import MemberEvent
from sim.mailchimp.model import Batch
from sim.mailchimp.render import unique_email_id, web_id
from sim.mailchimp.rules import iso

log = logging.getLogger(__name__)

AUDIENCE_USER_AGENT = "MailChimp.com"
VALIDATOR_USER_AGENT = "MailChimp.com WebHook Validator"
Form = list[tuple[str, str]]


@dataclass
class Delivery:
    url: str
    form: Form
    user_agent: str
    attempts: int = 0
    outcome: str = ""


def fired_at(now: float) -> str:
    """Webhook timestamps are `YYYY-MM-DD HH:MM:SS` (UTC), not ISO 8601."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(now))


def encode(form: Form) -> str:
    """`application/x-www-form-urlencoded` with the brackets percent-encoded."""
    return urlencode(form)


def _merges(event: MemberEvent) -> Form:
    audience, member = event.audience, event.member
    form: Form = [("data[merges][EMAIL]", member.email)]
    for n, spec in enumerate(audience.merge_fields):
        value = member.merges[n] if n < len(member.merges) else ""
        if isinstance(value, dict):
            form += [(f"data[merges][{spec.tag}][{k}]", str(v)) for k, v in value.items()]
        else:
            form.append((f"data[merges][{spec.tag}]", str(value)))
    return form + _groupings(event)


def _groupings(event: MemberEvent) -> Form:
    audience, member = event.audience, event.member
    if not audience.categories:
        return []
    chosen = dict(zip(audience.interest_ids, member.interests or (), strict=False))
    form: Form = []
    all_names: list[str] = []
    for n, category in enumerate(audience.categories):
        names = [i.name for i in category.interests if chosen.get(i.id)]
        all_names += names
        prefix = f"data[merges][GROUPINGS][{n}]"
        form += [
            (f"{prefix}[id]", str(int(category.id[:5], 16))),
            (f"{prefix}[unique_id]", category.id),
            (f"{prefix}[name]", category.title),
            (f"{prefix}[groups]", ",".join(names)),
        ]
    return [("data[merges][INTERESTS]", ",".join(all_names)), *form]


def audience_payload(event: MemberEvent, now: float) -> Form:
    """The form fields Mailchimp posts for one member event."""
    member, list_id = event.member, event.audience.id
    head: Form = [("type", event.kind), ("fired_at", fired_at(now))]
    extra = dict(event.extra)
    if event.kind == "upemail":
        return [
            *head,
            ("data[list_id]", list_id),
            ("data[new_id]", unique_email_id(member)),
            ("data[new_email]", extra["new_email"]),
            ("data[old_email]", extra["old_email"]),
        ]
    if event.kind == "cleaned":
        return [
            *head,
            ("data[list_id]", list_id),
            ("data[campaign_id]", ""),
            ("data[reason]", extra.get("reason", "hard")),
            ("data[email]", member.email),
        ]
    action: Form = []
    if event.kind == "unsubscribe":
        action = [("data[action]", extra["action"]), ("data[reason]", extra["reason"])]
    body: Form = [
        ("data[id]", unique_email_id(member)),
        ("data[list_id]", list_id),
        ("data[email]", member.email),
        ("data[email_type]", member.email_type),
        ("data[ip_opt]", member.ip_opt),
    ]
    if member.ip_signup:
        body.append(("data[ip_signup]", member.ip_signup))
    body.append(("data[web_id]", str(web_id(member))))
    return head + action + body + _merges(event)


def wants(
    webhook_events: dict[str, bool], webhook_sources: dict[str, bool], event: MemberEvent
) -> bool:
    """Whether a list webhook's events/sources filters let this event through."""
    return bool(webhook_events.get(event.kind)) and bool(webhook_sources.get(event.source))


def batch_payload(batch: Batch, response_body_url: str, now: float) -> Form:
    """The batch_operation_completed form for a finished batch."""
    return [
        ("type", "batch_operation_completed"),
        ("fired_at", fired_at(now)),
        ("data[id]", batch.id),
        ("data[status]", batch.status),
        ("data[total_operations]", str(batch.total_operations)),
        ("data[finished_operations]", str(batch.finished_operations)),
        ("data[errored_operations]", str(batch.errored_operations)),
        ("data[submitted_at]", iso(batch.submitted_at)),
        ("data[completed_at]", iso(batch.completed_at)),
        ("data[response_body_url]", response_body_url),
    ]


def validate_url(url: str) -> bool:
    """Mailchimp GETs a webhook URL before accepting it; any 2xx passes."""
    try:
        reply = httpx.get(url, headers={"User-Agent": VALIDATOR_USER_AGENT}, timeout=5.0)
    except httpx.HTTPError:
        return False
    return reply.is_success


@dataclass
class Deliverer:
    """Posts queued deliveries from the server's event loop, never from a request.

    Deliveries queued before a loop is attached (in-process use) wait in `waiting`.
    """

    retries: int = 2
    backoff_seconds: float = 0.5
    timeout_seconds: float = 10.0
    waiting: list[Delivery] = field(default_factory=list)
    delivered: list[Delivery] = field(default_factory=list)
    _loop: asyncio.AbstractEventLoop | None = None
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    # One client per event loop: a client per delivery built a TLS context (the CA bundle
    # loaded) every time, a quarter of the simulator's time during a big sync's batches.
    _client: httpx.AsyncClient | None = None
    _client_loop: asyncio.AbstractEventLoop | None = None

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        waiting, self.waiting = self.waiting, []
        for delivery in waiting:
            self.submit(delivery)

    def detach(self) -> None:
        self._loop = None

    def submit(self, delivery: Delivery) -> None:
        """Queue a delivery; safe from any thread."""
        if self._loop is None or self._loop.is_closed():
            self.waiting.append(delivery)
            return
        self._loop.call_soon_threadsafe(self._start, delivery)

    def _start(self, delivery: Delivery) -> None:
        task = asyncio.get_running_loop().create_task(self._deliver(delivery))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, delivery: Delivery) -> None:
        headers = {
            "User-Agent": delivery.user_agent,
            "Content-Type": "application/x-www-form-urlencoded",
        }
        client = self._client_of_running_loop()
        for attempt in range(self.retries + 1):
            delivery.attempts = attempt + 1
            if await self._post_once(client, delivery, headers):
                break
            await asyncio.sleep(self.backoff_seconds * 2**attempt)
        self.delivered.append(delivery)

    async def close_client(self) -> None:
        """Close the loop's client (its keep-alive connections) before the loop closes."""
        client, self._client, self._client_loop = self._client, None, None
        if client is not None:
            await client.aclose()

    def _client_of_running_loop(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            self._client = httpx.AsyncClient(timeout=self.timeout_seconds)
            self._client_loop = loop
        return self._client

    async def _post_once(
        self, client: httpx.AsyncClient, delivery: Delivery, headers: dict[str, str]
    ) -> bool:
        try:
            reply = await client.post(delivery.url, content=encode(delivery.form), headers=headers)
        except httpx.HTTPError as exc:
            delivery.outcome = f"error: {exc.__class__.__name__}"
            return False
        delivery.outcome = str(reply.status_code)
        return reply.is_success
