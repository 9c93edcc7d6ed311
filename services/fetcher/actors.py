"""Fetcher actors: parse the message, run the handler, send what it returns after commit."""

from __future__ import annotations

import dramatiq

from common.actors import declare, utc_now
from common.messages import FetchPage, StartSync
from common.runtime import Runtime
from services.fetcher import handlers


def register(runtime: Runtime) -> list[dramatiq.Actor[..., None]]:
    """Declare the fetcher's actors on the runtime's broker.

    ``start_sync`` is idempotent through the status row's compare-and-set: a second trigger
    while a run is active only logs. ``fetch_page`` merges a page to the same result however
    often it runs, and records the page as fetched once.
    """
    deps = handlers.Deps(runtime.engine, runtime.mailchimp, utc_now, runtime.settings.stale_after)
    return [
        declare(runtime, StartSync, lambda message: handlers.start_sync(deps, message)),
        declare(runtime, FetchPage, lambda message: handlers.fetch_page(deps, message)),
    ]
