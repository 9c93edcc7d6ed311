"""``mcsync serve``: the webhooks service and the admin API in one HTTP app.

One FastAPI app holds Mailchimp's webhook endpoints and the admin API, and publishes the
admin API's OpenAPI description (``/openapi.json``, ``/docs``). Beside it runs the relay that
republishes webhook events whose message was never sent. With the embedded default (no
``MCSYNC_BROKER_URL``) every worker runs in this process too; with a broker, the workers
are processes of their own (``mcsync worker``) and this one only serves HTTP.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
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


def build_app(runtime: Runtime, periodic: Callable[[], list[Periodic]] = list) -> FastAPI:
    """The webhooks, the admin API and the probes (``/livez``, ``/readyz``, ``/metrics``)
    on the process's engine, broker and Mailchimp clients; ``periodic``: the process's
    periodic work, for readiness."""
    # /docs from the assets of a package (fastapi-offline): no CDN, so it renders offline.
    app = FastAPIOffline(title=TITLE, description=DESCRIPTION, redoc_url=None)
    deps = webhooks.Deps(engine=runtime.engine, send=runtime.send)
    # Out of the OpenAPI description: Mailchimp's callbacks (a secret in the URL) are not an
    # API to call, and their GET+POST routes would share one operation id there.
    app.include_router(webhooks.create_router(deps), include_in_schema=False)
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


def run(settings: Settings, host: str, port: int) -> None:
    """Serve until SIGTERM/SIGINT (uvicorn's handlers), then stop what was started."""
    runtime, stop, embedded = _start(settings)
    relay = Relay(runtime.engine, runtime.send)
    relay.start()
    scheduled = schedule.start(runtime.engine, runtime.send, settings.sync_schedule)
    running = [relay.periodic, *embedded, *([scheduled] if scheduled else [])]
    try:
        uvicorn.run(
            build_app(runtime, lambda: running),
            host=host,
            port=port,
            log_level=settings.log_level.lower(),
            proxy_headers=True,
            access_log=False,  # access lines would print webhook secrets from query strings
        )
    finally:
        if scheduled is not None:
            scheduled.stop()
        relay.stop()
        stop()


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
