"""Fixtures: one simulator per module (reset per test), an account and audience, the DB engine."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from submitter_support import Audience

from common.mailchimp import MailchimpClient
from sim.mailchimp import RunningSimulator, Simulator, run_in_thread


@pytest.fixture(scope="module")
def server() -> Iterator[RunningSimulator]:
    with run_in_thread(Simulator()) as running:
        yield running


@pytest.fixture
def audience(server: RunningSimulator, clean_tables: sa.Engine) -> Iterator[Audience]:
    server.simulator.reset()
    account = server.simulator.create_account("Test Org")
    created = server.simulator.create_list(account.api_key, "Newsletter")
    client = MailchimpClient(account.api_key, base_url=server.api_url, retries=0)
    yield Audience(server, clean_tables, account.api_key, created.id, client)
    client.close()
