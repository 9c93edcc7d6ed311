"""The simulator posts a finished batch to the app served by uvicorn; ProcessBatch follows."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from webhooks_support import SECRET, serve_in_thread, store_secret

from common.messages import Message, ProcessBatch
from services.webhooks.app import BATCH_WEBHOOK_PATH, Deps, create_app
from sim.mailchimp import RunningSimulator, Simulator, run_in_thread

pytestmark = pytest.mark.integration


@dataclass
class Sent:
    """A thread-safe stand-in for the broker: remembers every message sent."""

    messages: list[Message] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, *messages: Message) -> None:
        with self.lock:
            self.messages.extend(messages)

    def wait_for(self, expected: Message, seconds: float = 10.0) -> list[Message]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with self.lock:
                if expected in self.messages:
                    return list(self.messages)
            time.sleep(0.02)
        raise AssertionError(f"{expected} never sent; sent {self.messages}")


@dataclass
class Mailchimp:
    running: RunningSimulator
    session: requests.Session
    list_id: str

    def post(self, path: str, body: dict[str, Any]) -> requests.Response:
        return self.session.post(self.running.api_url + path, json=body, timeout=10)


@pytest.fixture
def sent() -> Sent:
    return Sent()


@pytest.fixture
def webhook_base(clean_tables: sa.Engine, sent: Sent) -> Iterator[str]:
    store_secret(clean_tables)
    with serve_in_thread(create_app(Deps(engine=clean_tables, send=sent))) as served:
        yield served.base_url + BATCH_WEBHOOK_PATH


@pytest.fixture
def mailchimp() -> Iterator[Mailchimp]:
    simulator = Simulator()
    account = simulator.create_account("Test Org")
    audience = simulator.create_list(account.api_key, "Newsletter")
    with run_in_thread(simulator) as running, requests.Session() as session:
        session.auth = ("anystring", account.api_key)
        yield Mailchimp(running, session, audience.id)


def test_a_finished_batch_reaches_the_app_which_enqueues_process_batch_for_it(
    mailchimp: Mailchimp, webhook_base: str, sent: Sent
) -> None:
    # Registering makes the simulator GET the URL first: the app must answer it with 200.
    hook = mailchimp.post("/batch-webhooks", {"url": f"{webhook_base}?secret={SECRET}"})
    assert hook.status_code == 200, hook.text
    operation = {"method": "GET", "path": f"/lists/{mailchimp.list_id}", "operation_id": "x"}
    batch = mailchimp.post("/batches", {"operations": [operation]})
    assert batch.status_code == 200, batch.text
    batch_id = batch.json()["id"]
    messages = sent.wait_for(ProcessBatch(mailchimp_batch_id=batch_id))
    assert messages == [ProcessBatch(mailchimp_batch_id=batch_id)]


def test_mailchimp_cannot_register_the_url_without_the_right_secret(
    mailchimp: Mailchimp, webhook_base: str, sent: Sent
) -> None:
    for url in (webhook_base, f"{webhook_base}?secret=guess"):
        refused = mailchimp.post("/batch-webhooks", {"url": url})
        assert refused.status_code == 400, refused.text
    assert sent.messages == []
