"""What the Mailchimp simulator saw, for tests in any folder."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests
from server_checks import free_port

from sim.mailchimp import Simulator

ROOT = Path(__file__).resolve().parents[1]


def posted_operation_ids(simulator: Simulator) -> Counter[str]:
    """How often each operation id reached the simulator, across every batch it received."""
    seen: Counter[str] = Counter()
    with simulator.lock:
        for account in simulator.accounts.values():
            for batch in account.batches.values():
                seen.update(str(op.operation_id) for op in batch.operations)
    return seen


@dataclass(frozen=True)
class SeededSimulator:
    """The simulator in a process of its own (``python -m sim.mailchimp``), one audience
    seeded with members ``seed<seed>.member<n>@example.org``; seconds until it answered."""

    process: subprocess.Popen[str]
    api_url: str
    api_key: str
    list_id: str
    seed_seconds: float


@contextmanager
def seeded_simulator(members: int, seed: int = 1) -> Iterator[SeededSimulator]:
    """Start the simulator process on a free port with ``members`` seeded; stop it after."""
    started = time.perf_counter()
    port = free_port()
    command = [sys.executable, "-m", "sim.mailchimp", "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--seed-members", str(members), "--seed", str(seed)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        said = _settings_printed(process)
        _wait_until_answering(said["api_url"], said["api_key"])
        seconds = time.perf_counter() - started
        yield SeededSimulator(process, said["api_url"], said["api_key"], said["list_id"], seconds)
    finally:
        process.terminate()
        process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()


def _settings_printed(process: subprocess.Popen[str]) -> dict[str, str]:
    said: dict[str, str] = {}
    assert process.stdout is not None
    while "api_url" not in said:
        line = process.stdout.readline()
        if not line:
            raise RuntimeError("the simulator exited before printing its settings")
        key, _, value = line.strip().partition("=")
        said[key] = value
    return said


def _wait_until_answering(api_url: str, api_key: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if requests.get(api_url + "/ping", auth=("bench", api_key), timeout=2).ok:
                return
        except requests.ConnectionError:
            time.sleep(0.1)
    raise RuntimeError("the simulator did not come up")
