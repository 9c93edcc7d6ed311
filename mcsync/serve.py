"""``mcsync serve``: the webhooks service, the admin API and the web console.

One FastAPI app holds Mailchimp's webhook endpoints, the admin API with its OpenAPI
description (``/openapi.json``, ``/docs``) and the console (``/``). With ``admin_port`` the
admin API and the console listen on a port of their own, so a deployment can expose only
the webhooks (``/mailchimp/*``) to the internet. Beside them runs the relay that
republishes webhook events whose message was never sent. With the embedded default (no
``MCSYNC_BROKER_URL``) every worker runs in this process too; with a broker, the workers
are processes of their own (``mcsync worker``) and this one only serves HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import uvicorn
from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from prometheus_client.registry import CollectorRegistry

from common import health
from common.broker import build_broker
from common.metrics import AudienceCollector
from common.periodic import Periodic
from common.runtime import Runtime
from common.settings import Settings
from mcsync import probes, schedule, workers
from services.admin import app as admin
from services.admin.console import app as console
from services.admin.context import AdminContext
from services.webhooks import app as webhooks
from services.webhooks.relay import Relay

log = logging.getLogger(__name__)

TITLE = "mcsync"
DESCRIPTION = (
    "Mailchimp's webhooks (a secret in the URL) and the admin API (a bearer token: "
    "MCSYNC_ADMIN_TOKEN) of the CiviCRM <-> Mailchimp sync."
)


def build_app(
    runtime: Runtime,
    periodic: Callable[[], list[Periodic]] = list,
    public: bool = True,
    private: bool = True,
) -> FastAPI:
    """The probes (``/livez``, ``/readyz``, ``/metrics``) with the webhooks (``public``) and
    the admin API and console (``private``), on the process's engine, broker and Mailchimp
    clients; ``periodic``: the process's periodic work, for readiness."""
    if private:
        # /docs from the assets of a package (fastapi-offline): no CDN, so it renders offline.
        app = FastAPIOffline(title=TITLE, description=DESCRIPTION, redoc_url=None)
    else:
        app = FastAPI(title=TITLE, docs_url=None, redoc_url=None, openapi_url=None)
    if public:
        deps = webhooks.Deps(engine=runtime.engine, send=runtime.send)
        # Out of the OpenAPI description: Mailchimp's callbacks (a secret in the URL) are not
        # an API to call, and their GET+POST routes would share one operation id there.
        app.include_router(webhooks.create_router(deps), include_in_schema=False)
    if private:
        context = admin_context(runtime)
        app.include_router(admin.create_router(context))
        console.mount(app, context)
    audiences = CollectorRegistry()
    audiences.register(AudienceCollector(runtime.engine))

    def problems() -> list[str]:
        return health.problems(runtime.engine, runtime.settings, periodic())

    app.include_router(probes.router(problems, [audiences]))
    return app


def admin_context(runtime: Runtime) -> AdminContext:
    return AdminContext(
        settings=runtime.settings,
        engine=runtime.engine,
        mailchimp=runtime.mailchimp,
        send=runtime.send,
        clock=lambda: datetime.now(UTC),
    )


def run(settings: Settings, host: str, port: int, admin_port: int | None = None) -> None:
    """Serve until SIGTERM or SIGINT, then stop what was started; with ``admin_port``, the
    admin API and the console on that port, the webhooks alone on ``port``."""
    runtime, stop, embedded = _start(settings)
    relay = Relay(runtime.engine, runtime.send)
    relay.start()
    scheduled = schedule.start(runtime.engine, runtime.send, settings.sync_schedule)
    running = [relay.periodic, *embedded, *([scheduled] if scheduled else [])]

    def app(public: bool, private: bool) -> FastAPI:
        return build_app(runtime, lambda: running, public=public, private=private)

    if admin_port is None:
        listeners = [(port, app(public=True, private=True))]
    else:
        listeners = [(port, app(public=True, private=False)), (admin_port, app(False, True))]
    try:
        asyncio.run(_serve([_server(settings, host, at, served) for at, served in listeners]))
    finally:
        if scheduled is not None:
            scheduled.stop()
        relay.stop()
        stop()


class _Server(uvicorn.Server):
    """uvicorn's server, leaving SIGINT and SIGTERM to ``_serve`` (which stops them all)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _server(settings: Settings, host: str, port: int, app: FastAPI) -> _Server:
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=settings.log_level.lower(),
        proxy_headers=True,
        access_log=False,  # access lines would print webhook secrets from query strings
    )
    return _Server(config)


async def _serve(servers: list[_Server]) -> None:
    """Run the servers until SIGINT or SIGTERM; a second SIGINT stops them at once."""
    loop = asyncio.get_running_loop()

    def stop() -> None:
        for server in servers:
            server.force_exit = server.should_exit
            server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    await asyncio.gather(*(server.serve() for server in servers))


def _start(settings: Settings) -> tuple[Runtime, Callable[[], None], list[Periodic]]:
    """The process's runtime, how to stop it, and the periodic work of its workers (when
    embedded, every worker runs in this process)."""
    if settings.embedded_broker:
        running = workers.build(settings, workers.SERVICES)
        running.start()
        log.info("embedded: every worker runs in this process")
        return running.runtime, running.stop, running.periodic
    runtime = Runtime.start(settings, build_broker(settings))

    def stop() -> None:
        runtime.broker.close()
        runtime.close()

    return runtime, stop, []
