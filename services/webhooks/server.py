"""Serve the webhooks app with uvicorn: broker and engine built from Settings at start."""

from __future__ import annotations

import logging
from functools import partial

import uvicorn

from common.broker import build_broker, send
from common.db.engine import create_engine, database_url
from common.settings import Settings
from services.webhooks.app import Deps, create_app

log = logging.getLogger(__name__)

DEFAULT_HOST = "0.0.0.0"
DEFAULT_PORT = 8080


def run(settings: Settings, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
    """Serve the webhook endpoints on host:port until SIGTERM/SIGINT (uvicorn's handlers)."""
    broker = build_broker(settings)
    engine = create_engine(database_url(settings))
    try:
        serve(Deps(engine=engine, send=partial(send, broker)), settings, host, port)
    finally:
        broker.close()
        engine.dispose()


def serve(deps: Deps, settings: Settings, host: str, port: int) -> None:
    """Serve the app on ``deps`` (the embedded default passes its in-process workers' own)."""
    uvicorn.run(
        create_app(deps),
        host=host,
        port=port,
        log_level=settings.log_level.lower(),
        proxy_headers=True,
        access_log=False,  # access lines would print the secret in the query string
    )
