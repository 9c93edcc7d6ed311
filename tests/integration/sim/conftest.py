"""Fixtures: one simulator server per module (state reset per test) and a webhook receiver."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

import pytest
import requests
from simtest_support import Receiver, Setup

from sim.mailchimp import RunningSimulator, Simulator, run_in_thread


@pytest.fixture(scope="module")
def server() -> Iterator[RunningSimulator]:
    with run_in_thread(Simulator()) as running:
        yield running


@pytest.fixture
def setup(server: RunningSimulator) -> Iterator[Setup]:
    server.simulator.reset()
    base = server.base_url + "/_sim"
    api_key = requests.post(base + "/accounts", json={"name": "Test Org"}, timeout=5).json()[
        "api_key"
    ]
    created = requests.post(
        base + "/lists",
        timeout=5,
        json={
            "api_key": api_key,
            "name": "Newsletter",
            "interest_categories": [{"title": "Topics", "interests": ["Events", "News"]}],
        },
    ).json()
    session = requests.Session()
    session.auth = ("anystring", api_key)
    yield Setup(server, api_key, created["id"], session)
    session.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    seen: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def _record(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode() if length else ""
            seen.append(
                {
                    "method": method,
                    "path": self.path,
                    "headers": dict(self.headers),
                    "raw": raw,
                    "form": dict(parse_qsl(raw, keep_blank_values=True)),
                }
            )
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            self._record("GET")

        def do_POST(self) -> None:
            self._record("POST")

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield Receiver(f"http://127.0.0.1:{httpd.server_address[1]}/hook?secret=s", seen)
    httpd.shutdown()
    httpd.server_close()
