"""The HTTP edge for Mailchimp's webhooks: check the secret, parse, store or enqueue, answer fast.

``GET|POST /mailchimp/batch-webhook?secret=...``: Mailchimp calls it when any batch of the
account finishes. The event is stored in the inbox and committed before the 200, and
``ProcessBatch`` sent after the answer (by the relay while the broker is down); the
submitter re-reads the batch from the API (never trusting the posted URL) and ignores
batches that are not ours. Batch ids are sent even when we do not know them yet: the
webhook can beat the commit that records a batch we just posted, and the poller covers it.

``GET|POST /mailchimp/webhook?secret=...``: an audience's member events. The secret must
belong to the account whose sync connection covers the audience (401 otherwise). An event
is validated, then stored in the inbox and committed in one short transaction before the
200; ``SyncMember`` is sent after the answer, and if the broker is down the event stays
unpublished for the relay (``services.webhooks.relay``): nothing is lost, and Mailchimp's
10 s limit never waits on RabbitMQ. ``campaign`` and audiences we do not sync are
acknowledged and dropped. Bad input gets a 4xx naming what is wrong, never a 5xx.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import anyio
import sqlalchemy as sa
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from common.audience_events import AudienceEvent
from common.db import inbox
from common.messages import Message
from common.outages import outage
from common.webhook_urls import AUDIENCE_WEBHOOK_PATH, BATCH_WEBHOOK_PATH
from services.webhooks.parse import (
    MAX_BODY_BYTES,
    AudienceWebhook,
    BatchCompleted,
    PayloadError,
    decode_form,
    parse_audience_webhook,
    parse_batch_webhook,
)
from services.webhooks.relay import SENT, done_when_sent, message_of

__all__ = ["AUDIENCE_WEBHOOK_PATH", "BATCH_WEBHOOK_PATH", "Deps", "create_app", "create_router"]

log = logging.getLogger(__name__)

FORM_TYPE = "application/x-www-form-urlencoded"
# Threads that may wait on the broker at once: a hung broker must not take the threads that
# store events (the threadpool's), or every answer would wait with it.
PUBLISHER_THREADS = 8
UNAUTHORIZED = {"ok": False, "error": "unauthorized"}


class Sender(Protocol):
    def __call__(self, *messages: Message) -> None: ...


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Deps:
    """What the app needs: the database (secrets, inbox), a way to enqueue, a clock."""

    engine: sa.Engine
    send: Sender
    clock: Callable[[], datetime] = field(default=utcnow)


class Unauthorized(Exception):
    """No secret, one we do not hold, or another account's; the answer never says which."""


def create_app(deps: Deps) -> FastAPI:
    """The webhooks app: both webhook routes and ``GET /healthz``."""
    app = FastAPI(title="mcsync webhooks", docs_url=None, redoc_url=None, openapi_url=None)
    app.include_router(create_router(deps))
    return app


def create_router(deps: Deps) -> APIRouter:
    """The batch and audience webhook routes and ``GET /healthz``, to mount in any app."""
    router = APIRouter()
    publishers = anyio.CapacityLimiter(PUBLISHER_THREADS)

    @router.get("/healthz")
    def healthz() -> dict[str, bool]:
        return {"ok": True}

    @router.api_route(BATCH_WEBHOOK_PATH, methods=["GET", "POST"])
    async def batch_webhook(request: Request) -> JSONResponse:
        try:
            await run_in_threadpool(check_secret, deps.engine, request.query_params.get("secret"))
            stored = await _accept_batch_webhook(request, deps)
        except Unauthorized:
            log.warning("batch webhook refused: missing or unknown secret")
            return JSONResponse(UNAUTHORIZED, status_code=401)
        except PayloadError as error:
            return _refused("batch", error)
        if stored is None:
            return JSONResponse({"ok": True})
        publishing = BackgroundTask(_publish_later, deps, stored, publishers)
        return JSONResponse({"ok": True}, background=publishing)

    @router.api_route(AUDIENCE_WEBHOOK_PATH, methods=["GET", "POST"])
    async def audience_webhook(request: Request) -> JSONResponse:
        parsed = await _parse_audience_request(request)
        secret = request.query_params.get("secret")
        try:
            stored = await run_in_threadpool(accept, deps, secret, parsed)
        except Unauthorized:
            log.warning("audience webhook refused: missing or unknown secret")
            return JSONResponse(UNAUTHORIZED, status_code=401)
        except PayloadError as error:
            return _refused("audience", error)
        if stored is None:
            return JSONResponse({"ok": True})
        publishing = BackgroundTask(_publish_later, deps, stored, publishers)
        return JSONResponse({"ok": True}, background=publishing)

    return router


def _refused(kind: str, error: PayloadError) -> JSONResponse:
    log.warning("%s webhook refused: %s", kind, error)
    return JSONResponse({"ok": False, "error": str(error), "field": error.field}, status_code=400)


# --- secrets ---------------------------------------------------------------------------------


def check_secret(engine: sa.Engine, given: str | None) -> None:
    """Raise Unauthorized unless ``given`` equals a stored secret (constant-time compare)."""
    if not given:
        raise Unauthorized
    with engine.connect() as conn:
        _accounts_of(given, inbox.secret_accounts(conn))


def _accounts_of(given: str | None, stored: Iterable[tuple[str, int]]) -> frozenset[int]:
    """The accounts whose secret is ``given``; Unauthorized if none."""
    if not given:
        raise Unauthorized
    candidate = given.encode("utf-8", "surrogatepass")
    # Compare with every secret (no early exit) so timing says nothing about which matched.
    matches = [
        (hmac.compare_digest(candidate, secret.encode()), account) for secret, account in stored
    ]
    accounts = frozenset(account for matched, account in matches if matched)
    if not accounts:
        raise Unauthorized
    return accounts


# --- batch webhook ---------------------------------------------------------------------------


async def _accept_batch_webhook(request: Request, deps: Deps) -> inbox.Taken | None:
    """Store a finished batch's event in the inbox (its ``ProcessBatch`` is sent after the
    answer, or by the relay while the broker is down); None for a URL check."""
    if request.method == "GET":
        return None  # Mailchimp checking the URL
    event = parse_batch_webhook(await _read_form(request))
    if not isinstance(event, BatchCompleted):
        return None
    return await run_in_threadpool(_store_batch, deps, event)


def _store_batch(deps: Deps, event: BatchCompleted) -> inbox.Taken:
    data = {"batch_id": event.batch_id}
    with deps.engine.begin() as conn:
        event_id = inbox.record(conn, "", inbox.BATCH_COMPLETED, data, deps.clock())
    log.info("batch %s finished: stored as event %d", event.batch_id, event_id)
    return inbox.Taken(event_id, inbox.BATCH_COMPLETED, data)


# --- audience webhook ------------------------------------------------------------------------


async def _parse_audience_request(request: Request) -> AudienceWebhook | PayloadError:
    """The parsed request, or the error to answer once the secret is known to be good (an
    unauthenticated caller learns nothing about its payload)."""
    if request.method == "GET":
        return parse_audience_webhook({})  # Mailchimp checking the URL
    try:
        return parse_audience_webhook(await _read_form(request))
    except PayloadError as error:
        return error


def accept(
    deps: Deps, secret: str | None, parsed: AudienceWebhook | PayloadError
) -> inbox.Taken | None:
    """Check the secret, then store a member event in the inbox (noted as published: the
    caller sends ``SyncMember`` next) and commit; return it.

    None when there is nothing to store: a URL check, ``campaign``, or an audience without
    a sync connection. One short transaction: the secrets, the audience's account, the insert.
    """
    if not secret:
        raise Unauthorized
    with deps.engine.begin() as conn:
        accounts = _accounts_of(secret, inbox.secret_accounts(conn))
        if isinstance(parsed, PayloadError):
            raise parsed
        if not isinstance(parsed, AudienceEvent):
            return None
        return _store(conn, accounts, parsed, deps.clock())


def _store(
    conn: sa.Connection, accounts: frozenset[int], event: AudienceEvent, now: datetime
) -> inbox.Taken | None:
    owner = inbox.audience_account(conn, event.list_id)
    if owner is None:
        log.info("%s for audience %s ignored: not synced", event.type, event.list_id)
        return None
    if owner not in accounts:
        # A secret speaks for its own account's audiences only.
        log.warning(
            "%s for audience %s refused: another account's secret", event.type, event.list_id
        )
        raise Unauthorized
    data = event.to_json()
    event_id = inbox.record(conn, event.list_id, event.type.value, data, now)
    log.info("%s for audience %s stored as event %d", event.type, event.list_id, event_id)
    return inbox.Taken(event_id, event.type.value, data)


async def _publish_later(
    deps: Deps, stored: inbox.Taken, publishers: anyio.CapacityLimiter
) -> None:
    await anyio.to_thread.run_sync(publish, deps, stored, limiter=publishers)


def publish(deps: Deps, stored: inbox.Taken) -> None:
    """Send the message of a stored event (noted as published when stored); if that fails,
    undo the note so the relay sends it later. A batch event is then done with.

    Runs after the answer (a background task), so a slow or absent broker never delays it.
    Nothing touches an audience event's row after a successful send (``common.db.inbox``).
    """
    event_id = stored.id
    try:
        deps.send(message_of(*stored))
    except Exception as error:  # any broker failure: the event is safe in the inbox
        what = outage(error)
        log.warning(
            "event %d: message not sent (%s); the relay will publish it",
            event_id,
            f"{what} does not answer" if what else error,
            exc_info=what is None,
        )
        _unpublish(deps.engine, event_id)
        return
    if done_when_sent(stored.event_type):
        with deps.engine.begin() as conn:
            inbox.finish(conn, event_id, SENT, deps.clock())


def _unpublish(engine: sa.Engine, event_id: int) -> None:
    try:
        with engine.begin() as conn:
            inbox.unpublish(conn, [event_id])
    except sa.exc.SQLAlchemyError:
        # Marked published but never sent: the relay's pass for stale events resends it.
        log.warning("event %d not sent and still marked published", event_id, exc_info=True)


# --- request bodies --------------------------------------------------------------------------


async def _read_form(request: Request) -> dict[str, str]:
    body = await _read_body(request)
    if body.strip():
        _check_content_type(request)
    return decode_form(body)


async def _read_body(request: Request) -> bytes:
    """The body, refusing (without reading it all) anything over MAX_BODY_BYTES."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise PayloadError("body", f"larger than {MAX_BODY_BYTES} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise PayloadError("body", f"larger than {MAX_BODY_BYTES} bytes")
    return bytes(body)


def _check_content_type(request: Request) -> None:
    given = request.headers.get("content-type", "")
    media_type = given.split(";", 1)[0].strip().lower()
    if media_type and media_type != FORM_TYPE:
        raise PayloadError("Content-Type", f"must be {FORM_TYPE}, got {given[:60]!r}")
