"""Helpers for the webhooks service's tests: a stored secret, a stub broker, a served app."""

from __future__ import annotations

import dramatiq
import sqlalchemy as sa
from asgi_client import Served, TestClient, serve_in_thread
from dramatiq.brokers.stub import StubBroker

from common.db.config import add_account, add_webhook_secret
from common.messages import SUBMITTER, ProcessBatch

__all__ = ["Served", "TestClient", "serve_in_thread"]

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
