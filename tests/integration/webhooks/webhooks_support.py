"""Helpers for the webhooks service's tests: a stored secret, a stub broker, a served app."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import dramatiq
import sqlalchemy as sa
import uvicorn
from asgi_client import TestClient
from dramatiq.brokers.stub import StubBroker
from fastapi import FastAPI

from common.db.config import add_account, add_webhook_secret
from common.messages import SUBMITTER, ProcessBatch

__all__ = ["TestClient"]

SECRET = "s3cret-0123456789abcdef"
FORM = {"content-type": "application/x-www-form-urlencoded"}


def store_secret(engine: sa.Engine, secret: str = SECRET, api_key: str = "k" * 32) -> None:
    with engine.begin() as conn:
        add_webhook_secret(conn, add_account(conn, "Test Org", api_key), secret)


def stub_broker() -> StubBroker:
    broker = StubBroker()
    broker.declare_queue(SUBMITTER)
    return broker


def enqueued(broker: StubBroker) -> list[ProcessBatch]:
    """The ProcessBatch messages waiting on the submitter's queue, decoded."""
    queue = broker.queues[SUBMITTER]
    messages = [dramatiq.Message.decode(raw) for raw in list(queue.queue)]
    assert all(m.actor_name == ProcessBatch.actor for m in messages)
    return [ProcessBatch.from_wire(m.kwargs) for m in messages]


@dataclass
class Served:
    base_url: str


@contextmanager
def serve_in_thread(app: FastAPI) -> Iterator[Served]:
    """uvicorn on 127.0.0.1, any free port, in a daemon thread; stopped on exit."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", lifespan="on", ws="none"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="webhooks-app", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the app did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield Served(f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
