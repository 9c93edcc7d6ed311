"""The HTTP edge for Mailchimp's webhooks: check the secret, parse, enqueue, answer fast.

``GET|POST /mailchimp/batch-webhook?secret=...``: Mailchimp calls it when any batch of the
account finishes. The answer is 200 as soon as ``ProcessBatch`` is enqueued; the submitter
re-reads the batch from the API (never trusting the posted URL) and ignores batches that
are not ours. Batch ids are enqueued even when we do not know them yet: the webhook can
beat the commit that records a batch we just posted, and the submitter's poller covers it.
Bad input gets a 4xx naming what is wrong, never a 5xx.
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass
from typing import Protocol

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from common.db.config import webhook_secrets
from common.messages import Message, ProcessBatch
from common.webhook_urls import BATCH_WEBHOOK_PATH
from services.webhooks.parse import (
    MAX_BODY_BYTES,
    BatchCompleted,
    PayloadError,
    decode_form,
    parse_batch_webhook,
)

log = logging.getLogger(__name__)


FORM_TYPE = "application/x-www-form-urlencoded"


class Sender(Protocol):
    def __call__(self, *messages: Message) -> None: ...


@dataclass(frozen=True)
class Deps:
    """What the app needs: the database (for secrets) and a way to enqueue messages."""

    engine: sa.Engine
    send: Sender


class Unauthorized(Exception):
    """No secret, or one we do not hold; the answer never says which."""


def create_app(deps: Deps) -> FastAPI:
    """The webhooks app: the batch webhook route and ``GET /healthz``."""
    app = FastAPI(title="mcsync webhooks", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/healthz")
    def healthz() -> dict[str, bool]:
        return {"ok": True}

    @app.api_route(BATCH_WEBHOOK_PATH, methods=["GET", "POST"])
    async def batch_webhook(request: Request) -> JSONResponse:
        try:
            await run_in_threadpool(check_secret, deps.engine, request.query_params.get("secret"))
            await _handle_batch_webhook(request, deps.send)
        except Unauthorized:
            log.warning("batch webhook refused: missing or unknown secret")
            return JSONResponse({"ok": False, "error": "unauthorized"}, status_code=401)
        except PayloadError as error:
            log.warning("batch webhook refused: %s", error)
            body = {"ok": False, "error": str(error), "field": error.field}
            return JSONResponse(body, status_code=400)
        return JSONResponse({"ok": True})

    return app


def check_secret(engine: sa.Engine, given: str | None) -> None:
    """Raise Unauthorized unless ``given`` equals a stored secret (constant-time compare)."""
    if not given:
        raise Unauthorized
    with engine.connect() as conn:
        stored = webhook_secrets(conn)
    candidate = given.encode("utf-8", "surrogatepass")
    # Compare with every secret (no early exit) so timing says nothing about which matched.
    matches = [hmac.compare_digest(candidate, secret.encode()) for secret in stored]
    if not any(matches):
        raise Unauthorized


async def _handle_batch_webhook(request: Request, send: Sender) -> None:
    if request.method == "GET":
        return  # Mailchimp checking the URL
    body = await _read_body(request)
    if body.strip():
        _check_content_type(request)
    event = parse_batch_webhook(decode_form(body))
    if isinstance(event, BatchCompleted):
        await run_in_threadpool(send, ProcessBatch(mailchimp_batch_id=event.batch_id))
        log.info("batch %s finished: ProcessBatch enqueued", event.batch_id)


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
