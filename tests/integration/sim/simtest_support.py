"""Helpers for the simulator's integration tests (imported by conftest and tests)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

from sim.mailchimp import RunningSimulator, Simulator


@dataclass
class Setup:
    """A fresh account with one list, and a requests session authenticated for it."""

    running: RunningSimulator
    api_key: str
    list_id: str
    session: requests.Session

    @property
    def sim(self) -> Simulator:
        return self.running.simulator

    def url(self, path: str) -> str:
        return self.running.api_url + path.replace("{list}", self.list_id)

    def control(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return requests.request(
            method, self.running.base_url + "/_sim" + path, timeout=10, **kwargs
        )


@dataclass
class Receiver:
    """Records every GET and POST it receives (a stand-in for the CRM's webhook endpoint)."""

    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)

    def posts(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["method"] == "POST"]

    def wait_for(
        self, predicate: Callable[[list[dict[str, Any]]], bool], seconds: float = 5.0
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if predicate(self.posts()):
                return self.posts()
            time.sleep(0.02)
        raise AssertionError(f"receiver never saw the expected posts: {self.posts()}")
