"""The Grafana dashboard shipped in deploy/ asks only for metrics the processes serve."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import REGISTRY

from common import metrics

DASHBOARD = Path(__file__).resolve().parents[3] / "deploy" / "grafana" / "mcsync-dashboard.json"


def _served() -> set[str]:
    families = {family.name for family in REGISTRY.collect()}
    families |= {f"mcsync_{name}" for name in metrics._GAUGES} | {"mcsync_run_parked"}
    suffixes = ("", "_total", "_bucket", "_sum", "_count")
    return {name + suffix for name in families for suffix in suffixes}


def test_every_metric_the_dashboard_asks_for_is_served() -> None:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    asked = {
        name
        for panel in panels
        for target in panel["targets"]
        for name in re.findall(r"mcsync_[a-z_]+", target["expr"])
    }

    assert asked and asked <= _served()
