"""The Mailchimp client tells a failure Mailchimp may have carried out from one it did not.

A POST that may have been processed can still create its batch later, so the submitter
must not post its operations again; one that surely was not can be posted again at once.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from common.mailchimp import MailchimpClient, MailchimpTransientError
from sim.mailchimp import RunningSimulator, Simulator, run_in_thread

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server() -> Iterator[RunningSimulator]:
    with run_in_thread(Simulator()) as running:
        yield running


@pytest.fixture
def client(server: RunningSimulator) -> Iterator[MailchimpClient]:
    server.simulator.reset()
    account = server.simulator.create_account("Test Org")
    built = MailchimpClient(account.api_key, base_url=server.api_url, timeout=0.3, retries=0)
    yield built
    built.close()


def _fault(server: RunningSimulator, **fault: Any) -> None:
    fault |= {"count": 1, "method": "POST", "path_prefix": "/batches"}
    requests.post(server.base_url + "/_sim/faults", json=fault, timeout=5).raise_for_status()


def _post_failure(client: MailchimpClient) -> MailchimpTransientError:
    with pytest.raises(MailchimpTransientError) as failed:
        client.post("/batches", {"operations": []})
    return failed.value


def test_a_timeout_or_a_server_error_may_have_been_carried_out(
    server: RunningSimulator, client: MailchimpClient
) -> None:
    _fault(server, kind="latency", seconds=1.0)
    assert _post_failure(client).maybe_processed
    _fault(server, kind="status", status=503)
    assert _post_failure(client).maybe_processed
    _fault(server, kind="html", status=502)
    assert _post_failure(client).maybe_processed


def test_a_rate_limit_or_no_connection_was_not(
    server: RunningSimulator, client: MailchimpClient
) -> None:
    _fault(server, kind="status", status=429, retry_after=0)
    assert not _post_failure(client).maybe_processed

    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # closed again below: nothing listens there
    nowhere = MailchimpClient(client.api_key, base_url=f"http://127.0.0.1:{port}/3.0", retries=0)
    try:
        assert not _post_failure(nowhere).maybe_processed
    finally:
        nowhere.close()
