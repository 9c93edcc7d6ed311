"""``mcsync serve --admin-port``: the webhooks alone on the public port, the admin API and the
console on a port of their own; SIGTERM stops both, and the process, cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import requests
import sqlalchemy as sa
from server_checks import free_port

from common.webhook_urls import BATCH_WEBHOOK_PATH

pytestmark = pytest.mark.integration

TOKEN = "serve-ports-token-0123456789"


def _wait_until_answering(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, "mcsync serve exited"
        try:
            requests.get(url, timeout=1)
            return
        except requests.ConnectionError:
            time.sleep(0.1)
    raise AssertionError(f"nothing answered on {url}")


def test_the_admin_port_holds_the_console_and_api_and_the_public_port_only_the_webhooks(
    clean_tables: sa.Engine, database_url: str
) -> None:
    public, private = free_port(), free_port()
    env = {
        **os.environ,
        "MCSYNC_DATABASE_URL": database_url,
        "MCSYNC_ADMIN_TOKEN": TOKEN,
        "MCSYNC_SYNC_SCHEDULE": "",
        "MCSYNC_LOG_LEVEL": "WARNING",
    }
    env.pop("MCSYNC_BROKER_URL", None)
    args = ["serve", "--host", "127.0.0.1", "--port", str(public), "--admin-port", str(private)]
    process = subprocess.Popen([sys.executable, "-m", "mcsync.cli", *args], env=env)
    try:
        _wait_until_answering(f"http://127.0.0.1:{public}/livez", process)
        _wait_until_answering(f"http://127.0.0.1:{private}/livez", process)
        outside, inside = f"http://127.0.0.1:{public}", f"http://127.0.0.1:{private}"
        auth = {"authorization": f"Bearer {TOKEN}"}

        assert requests.get(outside + BATCH_WEBHOOK_PATH, timeout=5).status_code == 401
        for path in ("/", "/signin", "/docs", "/openapi.json"):
            assert requests.get(outside + path, timeout=5).status_code == 404, path
        api = "/api/Mailchimpsync/getstatus"
        assert requests.post(outside + api, json={}, headers=auth, timeout=5).status_code == 404

        assert requests.post(inside + api, json={}, headers=auth, timeout=5).status_code == 200
        assert requests.get(inside + "/signin", timeout=5).status_code == 200
        assert requests.get(inside + BATCH_WEBHOOK_PATH, timeout=5).status_code == 404
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=30)
    assert code == 0
