"""Benchmark: page 1,000,000 seeded members out of the simulator (run with `-m slow -s`)."""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import requests

pytestmark = pytest.mark.slow

MEMBERS = 1_000_000
PAGE = 1000
SYNC_FIELDS = (
    "members.id,members.email_address,members.status,members.last_changed,"
    "members.merge_fields.FNAME,members.merge_fields.LNAME,members.interests,total_items"
)
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class SeededServer:
    process: subprocess.Popen[str]
    api_url: str
    api_key: str
    list_id: str
    seed_seconds: float


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _read_settings(process: subprocess.Popen[str]) -> dict[str, str]:
    settings: dict[str, str] = {}
    assert process.stdout is not None
    while "api_url" not in settings:
        line = process.stdout.readline()
        if not line:
            raise RuntimeError("simulator exited before printing its settings")
        key, _, value = line.strip().partition("=")
        settings[key] = value
    return settings


@pytest.fixture(scope="module")
def seeded() -> Iterator[SeededServer]:
    port = _free_port()
    started = time.perf_counter()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sim.mailchimp",
            "--port",
            str(port),
            "--seed-members",
            str(MEMBERS),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        settings = _read_settings(process)
        _wait_until_up(settings["api_url"], settings["api_key"])
        yield SeededServer(
            process,
            settings["api_url"],
            settings["api_key"],
            settings["list_id"],
            time.perf_counter() - started,
        )
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def _wait_until_up(api_url: str, api_key: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if requests.get(api_url + "/ping", auth=("u", api_key), timeout=2).ok:
                return
        except requests.ConnectionError:
            time.sleep(0.1)
    raise RuntimeError("simulator did not come up")


def _peak_rss_mb(pid: int) -> float:
    """VmHWM (peak resident set) from /proc; falls back to current RSS."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float(psutil.Process(pid).memory_info().rss) / 2**20


def test_paging_a_million_members(seeded: SeededServer) -> None:
    session = requests.Session()
    session.auth = ("bench", seeded.api_key)
    url = f"{seeded.api_url}/lists/{seeded.list_id}/members"
    seen, offset, total = 0, 0, None
    started = time.perf_counter()
    while total is None or offset < total:
        reply = session.get(
            url,
            params={
                "count": PAGE,
                "offset": offset,
                "fields": SYNC_FIELDS,
                "sort_field": "last_changed",
                "sort_dir": "ASC",
            },
        )
        reply.raise_for_status()
        page = reply.json()
        total = page["total_items"]
        seen += len(page["members"])
        offset += PAGE
    seconds = time.perf_counter() - started
    session.close()
    client_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"\nseeded {MEMBERS:,} members and started in {seeded.seed_seconds:.1f}s"
        f"\npaged {seen:,} members in {seconds:.1f}s = {seen / seconds:,.0f} members/s"
        f"\npeak RSS: simulator {_peak_rss_mb(seeded.process.pid):,.0f} MB, "
        f"client {client_peak:,.0f} MB"
    )
    assert seen == MEMBERS == total
