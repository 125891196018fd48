"""The Grafana dashboard: current with its generator, structurally importable, and querying
only metrics the controller actually exports (so it cannot drift from the code)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from reconciler.controller.metrics import ControllerMetrics

REPO = Path(__file__).resolve().parent.parent
DASHBOARD = REPO / "deploy" / "grafana" / "ecs-reconciler.json"
SERIES_SUFFIXES = ("_bucket", "_count", "_sum", "_total")


def exported_series() -> set[str]:
    metrics = ControllerMetrics()
    names: set[str] = set()
    for family in text_string_to_metric_families(metrics.render()[0].decode()):
        names.add(family.name)
        for suffix in SERIES_SUFFIXES:
            names.add(family.name + suffix)
    return names


def test_committed_dashboard_is_current() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "deploy" / "grafana" / "dashboard.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def test_dashboard_structure() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert {"title", "uid", "schemaVersion", "panels", "templating", "time"} <= set(dashboard)
    assert dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["pool"]["type"] == "query"
    occupied: set[tuple[int, int]] = set()
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["type"] in {"timeseries", "heatmap", "stat", "bargauge", "table"}
        assert panel["title"] and panel["targets"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        cells = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & occupied, f"{panel['title']} overlaps another panel"
        occupied |= cells
        assert panel["datasource"]["uid"] == "${datasource}"


def test_every_query_uses_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exported = exported_series()
    used = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\b(ecs_reconciler_[a-z_]+)", target["expr"])
    }
    assert used, "no query found"
    assert used <= exported, used - exported


def test_operator_views_are_present() -> None:
    titles = " | ".join(p["title"] for p in json.loads(DASHBOARD.read_text())["panels"])
    for view in (
        "hour of day and weekday",
        "Queue wait p90",
        "SLO",
        "cost allocation",
        "by repository",
    ):
        assert view in titles
