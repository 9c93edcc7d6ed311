"""The HTTP edge: auth, concurrency limit, injected faults, then `Simulator.execute`."""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI, Request, Response

from sim.mailchimp import batches, control, errors
from sim.mailchimp.api import Reply
from sim.mailchimp.model import Account
from sim.mailchimp.simulator import Fault, Simulator, new_request_id

API_PREFIX = "/3.0"
JSON = "application/json; charset=utf-8"
PROBLEM = "application/problem+json; charset=utf-8"
PROBLEM_LINK = (
    '<https://us1.api.mailchimp.com/schema/3.0/ProblemDetailDocument.json>; rel="describedBy"'
)
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
HTML_ERROR = (
    "<html><head><title>{status} Gateway Error</title></head>"
    "<body><h1>{status} Gateway Error</h1><p>The server did not answer in time.</p></body></html>"
)


def problem_response(error: errors.ApiError) -> Response:
    """An ApiError as problem+json with X-Request-Id = instance."""
    instance = new_request_id()
    headers = {**error.headers, "X-Request-Id": instance, "Link": PROBLEM_LINK}
    return Response(orjson.dumps(error.problem(instance)), error.status, headers, PROBLEM)


def reply_response(reply: Reply) -> Response:
    """Turn a service Reply into HTTP; 204s keep `Content-Type: application/json`."""
    if reply.status == 204:
        return Response(b"", 204, {"Content-Type": "application/json"})
    headers = dict(reply.headers)
    if reply.problem:
        headers["Link"] = PROBLEM_LINK
    media = PROBLEM if reply.problem else JSON
    return Response(orjson.dumps(reply.body), reply.status, headers, media)


def api_key_from(header: str | None) -> str | None:
    """The key from `Basic user:key`, `apikey <key>`, `Bearer <key>` or `OAuth <key>`."""
    if not header or " " not in header:
        return None
    scheme, _, value = header.strip().partition(" ")
    scheme = scheme.lower()
    if scheme == "basic":
        try:
            decoded = base64.b64decode(value.strip()).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
    if scheme in ("apikey", "bearer", "oauth"):
        return value.strip() or None
    return None


async def fault_response(fault: Fault) -> Response | None:
    """Act out an injected fault; None means carry on with the real answer."""
    if fault.kind == "latency":
        await asyncio.sleep(fault.seconds)
        return None
    if fault.kind == "timeout":
        await asyncio.sleep(fault.seconds)
        return Response(HTML_ERROR.format(status=504), 504, media_type="text/html")
    if fault.kind == "html":
        return Response(
            HTML_ERROR.format(status=fault.status), fault.status, media_type="text/html"
        )
    titles = {
        429: "Too Many Requests",
        500: "Internal Server Error",
        502: "Bad Gateway",
        503: "Service Unavailable",
        504: "Gateway Timeout",
    }
    error = errors.ApiError(fault.status, titles.get(fault.status, "Error"), "Injected fault.")
    if fault.status == 429:
        error.headers["Retry-After"] = str(fault.retry_after)
    return problem_response(error)


def _concurrency_error(sim: Simulator, account: Account) -> errors.ApiError | None:
    switches = sim.switches
    if switches.concurrency_limit_enabled and account.in_flight > switches.concurrency_limit:
        return errors.too_many_requests(
            "You have exceeded the limit of 10 simultaneous connections."
        )
    return None


async def handle_api_call(sim: Simulator, request: Request, path: str) -> Response:
    """Auth -> concurrency slot -> body -> faults -> dispatch."""
    method, route_path = request.method, "/" + path
    account = sim.account_for_key(api_key_from(request.headers.get("authorization")) or "")
    if account is None:
        sim.record(method, "unauthenticated", 401, via="api")
        return problem_response(errors.api_key_invalid())
    account.in_flight += 1
    account.peak_in_flight = max(account.peak_in_flight, account.in_flight)
    try:
        too_many = _concurrency_error(sim, account)
        if too_many is not None:
            sim.record(method, "concurrency-limit", 429, via="api")
            return problem_response(too_many)
        # The body is read first: a request that arrived is processed whether or not its
        # client is still waiting when a fault's delay is over (a POST answered too late).
        body = await request.body()
        fault = sim.take_fault(method, route_path)
        if fault is not None and (faulted := await fault_response(fault)) is not None:
            sim.record(method, f"fault:{fault.kind}", faulted.status_code, via="api")
            return faulted
        base_url = str(request.base_url).rstrip("/")
        query = dict(request.query_params)
        reply = sim.execute(account, method, route_path, query, body, base_url)
        return reply_response(reply)
    finally:
        account.in_flight -= 1


def create_app(sim: Simulator) -> FastAPI:
    """The FastAPI app serving `/3.0/...`, `/_sim/...` and batch result downloads."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        runner = batches.BatchRunner(sim, loop)
        sim.deliverer.attach(loop)
        sim.on_batch_submitted = runner.kick
        for api_key in list(sim.accounts):
            runner.kick(api_key)
        yield
        sim.on_batch_submitted = lambda api_key: None
        runner.stop()
        sim.deliverer.detach()
        await sim.deliverer.close_client()

    app = FastAPI(lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None)

    @app.exception_handler(errors.ApiError)
    async def on_api_error(request: Request, error: Any) -> Response:
        return problem_response(error)

    @app.api_route(API_PREFIX, methods=METHODS)
    @app.api_route(API_PREFIX + "/{path:path}", methods=METHODS)
    async def api_call(request: Request, path: str = "") -> Response:
        return await handle_api_call(sim, request, path)

    @app.get(batches.RESULTS_PATH + "/{name}")
    async def batch_results(name: str, expires: int = 0, signature: str = "") -> Response:
        archive = sim.batch_archive(name.removesuffix(".tar.gz"), expires, signature)
        if archive is None:
            return Response(
                b"<Error><Code>AccessDenied</Code></Error>", 403, media_type="application/xml"
            )
        return Response(archive, 200, media_type="application/x-gzip")

    app.include_router(control.build_router(sim))
    return app
