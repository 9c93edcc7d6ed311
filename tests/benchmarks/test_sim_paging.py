"""Benchmark: page 1,000,000 seeded members out of the simulator (run with `-m slow -s`)."""

from __future__ import annotations

import resource
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import requests
from simulator_support import SeededSimulator, seeded_simulator

pytestmark = pytest.mark.slow

MEMBERS = 1_000_000
PAGE = 1000
SYNC_FIELDS = (
    "members.id,members.email_address,members.status,members.last_changed,"
    "members.merge_fields.FNAME,members.merge_fields.LNAME,members.interests,total_items"
)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def seeded() -> Iterator[SeededSimulator]:
    with seeded_simulator(MEMBERS) as running:
        yield running


def _peak_rss_mb(pid: int) -> float:
    """VmHWM (peak resident set) from /proc; falls back to current RSS."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float(psutil.Process(pid).memory_info().rss) / 2**20


def test_paging_a_million_members(seeded: SeededSimulator) -> None:
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
