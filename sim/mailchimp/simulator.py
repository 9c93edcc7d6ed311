"""The Simulator: all state of the fake Mailchimp plus the switches and faults.

Usable in-process (create accounts, lists, import members, call `execute`) or behind
the FastAPI app. One re-entrant lock serialises state access between the server's event
loop and test threads.
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from sim.mailchimp import api, batches, errors, seeding, webhooks
from sim.mailchimp.members import CONTACT_ACTIONS, MemberEvent, Policy, act_as_contact
from sim.mailchimp.model import (
    Account,
    Audience,
    Batch,
    BatchOperation,
    BatchResult,
    Interest,
    InterestCategory,
    MergeField,
)

DEFAULT_MERGE_FIELDS = (
    {"tag": "FNAME", "name": "First Name", "type": "text"},
    {"tag": "LNAME", "name": "Last Name", "type": "text"},
)


@dataclass
class Switches:
    """Behaviour switches; every one can be changed at runtime via the control API."""

    list_archived_without_status: bool = True
    refuse_resubscribe_after_admin_unsubscribe: bool = False
    fake_email_patterns: list[str] = field(default_factory=list)
    concurrency_limit_enabled: bool = True
    concurrency_limit: int = 10
    batch_operation_delay_seconds: float = 0.0
    batch_stuck: bool = False
    batch_empty_file: bool = True
    batch_operations_per_file: int = 500
    batch_results_ttl_seconds: int = 600
    max_pending_batches: int = 500
    validate_webhook_urls: bool = True
    webhook_retries: int = 2
    webhook_backoff_seconds: float = 0.5


@dataclass
class Fault:
    """One injected fault. kind: `latency` (delay, then answer normally), `status`
    (problem+json with `status`, 429 adds Retry-After), `html` (HTML error page with
    `status`), `timeout` (hang `seconds`, then 504 HTML). `remaining` None = unlimited."""

    kind: str
    remaining: int | None = 1
    status: int = 503
    seconds: float = 0.0
    retry_after: int = 1
    path_prefix: str = ""
    method: str | None = None

    def matches(self, method: str, path: str) -> bool:
        method_ok = self.method is None or self.method.upper() == method
        return method_ok and path.startswith(self.path_prefix)


FAULT_KINDS = ("latency", "status", "html", "timeout")


def _hex(length: int) -> str:
    return secrets.token_hex(length // 2 + 1)[:length]


class Simulator:
    """All accounts, lists, batches and webhooks of one simulated Mailchimp."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.lock = threading.RLock()
        self.secret = secrets.token_bytes(16)
        self.deliverer = webhooks.Deliverer()
        self.url_checker: Callable[[str], bool] = webhooks.validate_url
        self.on_batch_submitted: Callable[[str], None] = lambda api_key: None
        self.reset()

    # ---- lifecycle and switches -------------------------------------------------------

    def reset(self) -> None:
        """Forget everything: accounts, lists, faults, switches, logs."""
        with self.lock:
            self.accounts: dict[str, Account] = {}
            self.lists: dict[str, tuple[Account, Audience]] = {}
            self.switches = Switches()
            self.faults: list[Fault] = []
            self.request_counts: Counter[str] = Counter()
            self.operation_counts: Counter[str] = Counter()
            self.request_log: deque[dict[str, Any]] = deque(maxlen=10_000)
            self.deliverer.delivered.clear()
            self.deliverer.waiting.clear()

    def set_switches(self, **changes: Any) -> Switches:
        """Change some switches; unknown names are an error."""
        with self.lock:
            known = asdict(self.switches)
            unknown = set(changes) - set(known)
            if unknown:
                raise errors.invalid_resource(f"Unknown switches: {sorted(unknown)}")
            self.switches = Switches(**{**known, **changes})
            self.deliverer.retries = self.switches.webhook_retries
            self.deliverer.backoff_seconds = self.switches.webhook_backoff_seconds
            return self.switches

    def add_fault(self, fault: Fault) -> None:
        if fault.kind not in FAULT_KINDS:
            raise errors.invalid_resource(f"Unknown fault kind {fault.kind!r}")
        with self.lock:
            self.faults.append(fault)

    def take_fault(self, method: str, path: str) -> Fault | None:
        """The first fault matching this request, consuming one of its uses."""
        with self.lock:
            for fault in self.faults:
                if fault.matches(method, path):
                    if fault.remaining is not None:
                        fault.remaining -= 1
                        if fault.remaining <= 0:
                            self.faults.remove(fault)
                    return fault
        return None

    def policy(self) -> Policy:
        return Policy(
            refuse_after_admin_unsubscribe=self.switches.refuse_resubscribe_after_admin_unsubscribe,
            fake_email_patterns=tuple(self.switches.fake_email_patterns),
        )

    def now(self) -> float:
        # Mailchimp timestamps have one-second resolution.
        return float(int(self.clock()))

    # ---- accounts and lists -----------------------------------------------------------

    def create_account(self, name: str = "Simulated Org", api_key: str | None = None) -> Account:
        """A new account; its API key is `<32 hex>-us1` unless given."""
        with self.lock:
            key = api_key or f"{_hex(32)}-us1"
            account = Account(key, _hex(25), name, self.now())
            self.accounts[key] = account
            return account

    def account_for_key(self, api_key: str) -> Account | None:
        return self.accounts.get(api_key)

    def create_list(
        self,
        api_key: str,
        name: str = "Newsletter",
        list_id: str | None = None,
        merge_fields: Iterable[Mapping[str, Any]] = DEFAULT_MERGE_FIELDS,
        interest_categories: Iterable[Mapping[str, Any]] = (),
        double_optin: bool = False,
    ) -> Audience:
        """A list on an account; categories are `{title, type?, interests: [name|{id,name}]}`."""
        with self.lock:
            account = self.accounts[api_key]
            audience = Audience(
                id=list_id or _hex(10),
                name=name,
                web_id=int(_hex(6), 16),
                date_created=self.now(),
                merge_fields=[_merge_field(n, spec) for n, spec in enumerate(merge_fields)],
                categories=[_category(n, spec) for n, spec in enumerate(interest_categories)],
                double_optin=double_optin,
            )
            account.lists[audience.id] = audience
            self.lists[audience.id] = (account, audience)
            return audience

    def audience(self, list_id: str) -> Audience:
        try:
            return self.lists[list_id][1]
        except KeyError:
            raise errors.not_found() from None

    def import_members(self, list_id: str, records: Iterable[Mapping[str, Any]]) -> int:
        """Bulk-load members (no webhooks, no rules beyond the shape); returns the count."""
        with self.lock:
            return seeding.import_records(self.audience(list_id), records, self.now())

    def seed_members(self, list_id: str, count: int, seed: int = 1) -> int:
        """Deterministic members with a mix of statuses; see `seeding.seed`."""
        with self.lock:
            return seeding.seed(self.audience(list_id), count, seed, self.now())

    def act(
        self, list_id: str, slot: str, action: str, source: str, details: Mapping[str, Any]
    ) -> list[MemberEvent]:
        """Act as the subscriber (`user`) or an admin in the UI (`admin`); fires webhooks."""
        if action not in CONTACT_ACTIONS:
            raise errors.invalid_resource(f"action must be one of {CONTACT_ACTIONS}")
        if source not in ("user", "admin"):
            raise errors.invalid_resource("source must be user or admin")
        with self.lock:
            audience = self.audience(list_id)
            events = act_as_contact(audience, slot, action, source, self.now(), dict(details))
            self.emit(events)
            return events

    # ---- requests ---------------------------------------------------------------------

    def execute(
        self,
        account: Account,
        method: str,
        path: str,
        query: Mapping[str, str],
        body: bytes | str | None,
        base_url: str,
    ) -> api.Reply:
        """Run one API call (from HTTP or from a batch) against the state."""
        with self.lock:
            reply = api.dispatch(self, account, method, path, query, body, base_url)
        self.record(method, reply.template, reply.status, via="api")
        return reply

    def record(self, method: str, template: str, status: int, via: str) -> None:
        """Count a call by `METHOD /route/{template}`; batch operations count separately."""
        with self.lock:
            counts = self.request_counts if via == "api" else self.operation_counts
            counts[f"{method} {template}"] += 1
            self.request_log.append(
                {"method": method, "route": template, "status": status, "via": via}
            )

    # ---- webhooks ---------------------------------------------------------------------

    def emit(self, events: Iterable[MemberEvent]) -> None:
        """Queue audience webhook deliveries for events whose filters match."""
        now = self.clock()
        for event in events:
            for hook in event.audience.webhooks.values():
                if webhooks.wants(hook.events, hook.sources, event):
                    form = webhooks.audience_payload(event, now)
                    self.deliverer.submit(
                        webhooks.Delivery(hook.url, form, webhooks.AUDIENCE_USER_AGENT)
                    )

    def check_webhook_url(self, url: str) -> None:
        if self.switches.validate_webhook_urls and not self.url_checker(url):
            raise errors.invalid_resource(
                "The URL you provided did not return a 2xx response to our GET request.",
                [{"field": "url", "message": "Could not validate the webhook URL"}],
            )

    # ---- batches ----------------------------------------------------------------------

    def submit_batch(self, account: Account, operations: list[BatchOperation], base: str) -> Batch:
        if account.open_batches() >= self.switches.max_pending_batches:
            raise errors.too_many_requests(
                "You have more than 500 pending batches. Please wait for some to finish."
            )
        batch = Batch(id=_hex(10), operations=operations, submitted_at=self.now(), base_url=base)
        account.batches[batch.id] = batch
        self.on_batch_submitted(account.api_key)
        return batch

    def start_next_batch(self, api_key: str) -> Batch | None:
        """The account's oldest pending batch, now `started`."""
        with self.lock:
            account = self.accounts.get(api_key)
            if account is None:
                return None
            for batch in account.batches.values():
                if batch.status == "pending":
                    batch.status = "started"
                    batch.total_operations = len(batch.operations)
                    return batch
        return None

    def run_batch_operation(self, api_key: str, batch: Batch, operation: BatchOperation) -> None:
        """Execute one operation through the same dispatch the HTTP routes use."""
        account = self.accounts.get(api_key)
        if account is None:
            batch.cancelled = True
            return
        query = {k: str(v) for k, v in operation.params.items()}
        path = operation.path.removeprefix("/3.0")
        with self.lock:
            reply = api.dispatch(
                self, account, operation.method, path, query, operation.body, batch.base_url
            )
        self.record(operation.method, reply.template, reply.status, via="batch")
        response = "" if reply.body is None else orjson.dumps(reply.body).decode()
        batch.results.append(BatchResult(reply.status, operation.operation_id, response))
        batch.finished_operations += 1
        if not 200 <= reply.status < 300:
            batch.errored_operations += 1

    def finish_batch(self, api_key: str, batch: Batch) -> None:
        """Build the archive, mark finished and notify batch webhooks."""
        switches = self.switches
        if batch.operations:
            batch.archive = batches.build_archive(
                batch.results, switches.batch_operations_per_file, switches.batch_empty_file
            )
        with self.lock:
            batch.completed_at = self.now()
            batch.status = "finished"
            account = self.accounts.get(api_key)
            hooks = [h for h in account.batch_webhooks.values() if h.enabled] if account else []
        form = webhooks.batch_payload(batch, self.results_url(batch), self.clock())
        for hook in hooks:
            self.deliverer.submit(webhooks.Delivery(hook.url, form, webhooks.AUDIENCE_USER_AGENT))

    def results_url(self, batch: Batch) -> str:
        """A fresh pre-signed URL, or "" while unfinished / for empty batches."""
        if batch.archive is None:
            return ""
        expires = int(self.clock()) + self.switches.batch_results_ttl_seconds
        return batches.results_url(batch.base_url, self.secret, batch.id, expires)

    def batch_archive(self, batch_id: str, expires: int, signature: str) -> bytes | None:
        """The archive for a signed download, or None when expired/invalid."""
        if not batches.check_signature(self.secret, batch_id, expires, signature, self.clock()):
            return None
        with self.lock:
            for account in self.accounts.values():
                batch = account.batches.get(batch_id)
                if batch is not None:
                    return batch.archive
        return None


def _merge_field(position: int, spec: Mapping[str, Any]) -> MergeField:
    return MergeField(
        merge_id=position + 1,
        tag=spec["tag"],
        name=spec.get("name", spec["tag"].title()),
        type=spec.get("type", "text"),
        required=bool(spec.get("required", False)),
        default_value=spec.get("default_value", ""),
        options=dict(spec.get("options", {})),
    )


def _category(position: int, spec: Mapping[str, Any]) -> InterestCategory:
    interests = []
    for n, item in enumerate(spec.get("interests", [])):
        named = {"name": item} if isinstance(item, str) else item
        interests.append(
            Interest(id=named.get("id") or _hex(10), name=named["name"], display_order=n)
        )
    return InterestCategory(
        id=spec.get("id") or _hex(10),
        title=spec["title"],
        type=spec.get("type", "checkboxes"),
        display_order=position,
        interests=interests,
    )


def new_request_id() -> str:
    return str(uuid.uuid4())
