"""The Grafana dashboard (deploy/grafana): current with its generator byte for byte, fit for
Grafana's dashboard schema, and querying only series and labels that the controller
exports, so it cannot drift from reconciler/controller/metrics.py."""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import promql_parser
import pytest
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as dashboard_model
from grafana_foundation_sdk.models import prometheus as prometheus_model
from prometheus_client.parser import text_string_to_metric_families

from reconciler.controller.metrics import ControllerMetrics
from tests.test_metrics import populated_metrics

REPO = Path(__file__).resolve().parent.parent
GENERATOR = REPO / "deploy" / "grafana" / "dashboard.py"
DASHBOARD = REPO / "deploy" / "grafana" / "ecs-reconciler.json"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
GRID_COLUMNS = 24
# The series a family of each type is written as. prometheus-client also writes
# `<name>_created` timestamps (as gauge families of their own in the text format); no
# dashboard should query those.
SERIES_SUFFIXES = {
    "gauge": ("",),
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
}
# What Grafana substitutes before a query reaches Prometheus
MACROS = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "7d",
    "$pool": "linux|arm",
    "$organization": "acme",
}


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("grafana_dashboard", GENERATOR)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@cache
def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def targets() -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for panel in panels():
        for target in panel["targets"]:
            yield panel, target


@cache
def exported_series() -> dict[str, str]:
    """Series name -> family, from a fresh registry's exposition (families without samples
    still carry their name and type): a counter `x` is written as `x_total`, a histogram as
    `x_bucket`, `x_sum` and `x_count`, a gauge under its own name."""
    text = ControllerMetrics().render()[0].decode()
    series: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        if family.name.endswith("_created"):
            continue
        for suffix in SERIES_SUFFIXES[family.type]:
            series[family.name + suffix] = family.name
    return series


@cache
def series_labels() -> dict[str, frozenset[str]]:
    """Series name -> its label names, from a registry fed through every recording method."""
    text = populated_metrics().render()[0].decode()
    labels: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels.setdefault(sample.name, set()).update(sample.labels)
    return {name: frozenset(names) for name, names in labels.items()}


def parse(expr: str) -> promql_parser.Expr:
    for macro, value in sorted(MACROS.items(), key=lambda item: -len(item[0])):
        expr = expr.replace(macro, value)
    assert "$" not in expr, f"unknown Grafana variable in {expr}"
    return promql_parser.parse(expr)


def selectors(expr: promql_parser.Expr) -> list[promql_parser.VectorSelector]:
    found: list[promql_parser.VectorSelector] = []

    def visit(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            found.append(node)

    promql_parser.walk(expr, visit)
    return found


# ---------------------------------------------------------------- generator


def test_committed_json_is_what_the_generator_writes() -> None:
    generator = load_generator()
    assert DASHBOARD.read_bytes() == generator.render().encode(), (
        "deploy/grafana/ecs-reconciler.json is stale: run "
        ".venv/bin/python deploy/grafana/dashboard.py"
    )
    assert generator.main(["--check"]) == 0


# ---------------------------------------------------------------- Grafana's schema


def test_round_trips_through_the_schema_generated_models() -> None:
    """grafana-foundation-sdk's models are generated from Grafana's dashboard schema and drop
    what they do not know: a misspelt or unknown field changes the round trip."""
    data = dashboard()
    model = dashboard_model.Dashboard.from_json(data)
    back = json.loads(json.dumps(model, cls=JSONEncoder))
    assert back == data, f"not in Grafana's schema: {differences(data, back)}"
    for panel, target in targets():
        query = json.loads(
            json.dumps(prometheus_model.Dataquery.from_json(target), cls=JSONEncoder)
        )
        assert query == target, f"{panel['title']}: {differences(target, query)}"


def differences(original: Any, round_trip: Any, path: str = "") -> list[str]:
    """Where a round trip changed the JSON: dropped fields, changed values."""
    if isinstance(original, dict) and isinstance(round_trip, dict):
        found = [f"{path}/{key} dropped" for key in original if key not in round_trip]
        found += [f"{path}/{key} added" for key in round_trip if key not in original]
        for key in original.keys() & round_trip.keys():
            found += differences(original[key], round_trip[key], f"{path}/{key}")
        return found
    if (
        isinstance(original, list)
        and isinstance(round_trip, list)
        and len(original) == len(round_trip)
    ):
        return [
            diff
            for i, (a, b) in enumerate(zip(original, round_trip, strict=True))
            for diff in differences(a, b, f"{path}[{i}]")
        ]
    return [] if original == round_trip else [f"{path}: {original!r} -> {round_trip!r}"]


def test_top_level_structure() -> None:
    data = dashboard()
    assert {"title", "uid", "schemaVersion", "panels", "templating", "time"} <= set(data)
    assert isinstance(data["title"], str) and data["title"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", data["uid"])
    assert isinstance(data["schemaVersion"], int) and data["schemaVersion"] >= 36
    assert set(data["time"]) == {"from", "to"}
    assert isinstance(data["templating"]["list"], list)
    assert "id" not in data or data["id"] is None, "an exported dashboard has no database id"
    assert isinstance(data["annotations"]["list"], list)


def test_template_variables() -> None:
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    pool = variables["pool"]
    assert pool["type"] == "query"
    assert pool["datasource"] == DATASOURCE
    assert pool["includeAll"] and pool["multi"]
    for variable in variables.values():
        if variable["type"] != "query":
            continue
        match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", variable["query"])
        assert match, variable["query"]
        (selector,) = selectors(parse(match.group(1)))
        assert selector.name in exported_series(), selector.name
        assert match.group(2) in series_labels()[selector.name], variable["name"]
    assert re.fullmatch(r"label_values\(ecs_reconciler_\w+, pool\)", pool["query"])
    # every variable a query uses is defined
    used = {
        name
        for _panel, target in targets()
        for name in re.findall(r"\$(?!__)(\w+)", target["expr"])
    }
    assert used <= set(variables), used - set(variables)


def test_panels_sit_on_the_grid_without_overlapping() -> None:
    occupied: dict[tuple[int, int], str] = {}
    ids = [panel["id"] for panel in dashboard()["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in dashboard()["panels"]:
        assert isinstance(panel["type"], str) and panel["type"]
        assert isinstance(panel["title"], str) and panel["title"]
        grid = panel["gridPos"]
        assert set(grid) >= {"h", "w", "x", "y"}
        assert all(isinstance(grid[k], int) for k in "hwxy"), panel["title"]
        assert grid["x"] >= 0 and grid["y"] >= 0 and grid["w"] >= 1 and grid["h"] >= 1
        assert grid["x"] + grid["w"] <= GRID_COLUMNS, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in occupied, f"{panel['title']} overlaps {occupied[(x, y)]}"
                occupied[(x, y)] = panel["title"]
        if panel["type"] == "row":
            assert grid["w"] == GRID_COLUMNS and grid["h"] == 1


def test_panels_query_the_datasource_variable() -> None:
    assert panels()
    for panel in panels():
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert all(refs) and len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
            assert target["expr"].strip(), panel["title"]


# ---------------------------------------------------------------- no drift from the code


def test_queries_name_only_exported_series_and_labels() -> None:
    exported = exported_series()
    labels = series_labels()
    used: set[str] = set()
    for panel, target in targets():
        try:
            expr = parse(target["expr"])
        except ValueError as error:  # promql_parser raises on syntax errors
            pytest.fail(f"{panel['title']}: {error}: {target['expr']}")
        found = selectors(expr)
        assert found, f"{panel['title']}: no metric in {target['expr']}"
        for selector in found:
            name = selector.name
            assert name in exported, f"{panel['title']}: {name} is not exported"
            used.add(exported[name])
            for matcher in selector.matchers.matchers:
                assert matcher.name in labels.get(name, frozenset()), (
                    f"{panel['title']}: {name} has no {matcher.name}"
                )

        def check_grouping(node: promql_parser.Expr, title: str = panel["title"]) -> None:
            if isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
                available = set().union(
                    *(labels.get(s.name or "", frozenset()) for s in selectors(node.expr))
                )
                missing = set(node.modifier.labels) - available
                assert not missing, f"{title}: grouping by unknown labels {missing}"

        promql_parser.walk(expr, check_grouping)
    # the dashboard shows every family the controller exports
    assert used == set(exported.values()), set(exported.values()) - used


def test_the_views_operators_asked_for() -> None:
    by_title = {panel["title"]: panel for panel in panels()}

    def exprs(panel: dict[str, Any]) -> str:
        return " ".join(target["expr"] for target in panel["targets"])

    def find(*words: str) -> dict[str, Any]:
        matches = [p for t, p in by_title.items() if all(w.lower() in t.lower() for w in words)]
        assert len(matches) == 1, (words, list(by_title))
        return matches[0]

    # an hour-of-day x weekday heatmap of demand
    demand = find("demand", "hour of day", "weekday")
    assert "sum by (weekday, hour)" in exprs(demand)
    matrix = [t for t in demand["transformations"] if t["id"] == "groupingToMatrix"]
    assert matrix and {matrix[0]["options"]["rowField"], matrix[0]["options"]["columnField"]} == {
        "hour",
        "weekday",
    }
    order = next(t for t in demand["transformations"] if t["id"] == "organize")
    weekdays = sorted(
        (k for k in order["options"]["indexByName"] if len(k) == 3),
        key=order["options"]["indexByName"].get,
    )
    assert weekdays == ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    assert demand["fieldConfig"]["defaults"]["custom"]["cellOptions"]["type"] == "color-background"
    # queue-wait p90 against the SLO
    p90 = find("queue wait p90", "pool")
    assert "histogram_quantile(0.9" in exprs(p90)
    steps = p90["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert 30 in [step["value"] for step in steps]
    assert p90["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] in {"line", "dashed"}
    share = find("within 30 s", "mon-fri")
    assert share["type"] == "stat" and "day_of_week()" in exprs(share) and "hour()" in exprs(share)
    # SLO attainment and error budget, per pool: the bucket at the SLO over the count
    attainment = find("slo attainment", "pool")
    assert 'le=~"30|30[.]0"' in exprs(attainment) and "[$__range]" in exprs(attainment)
    assert [s["value"] for s in attainment["fieldConfig"]["defaults"]["thresholds"]["steps"]] == [
        None,
        0.9,
    ]
    budget = find("error budget remaining", "pool")
    assert exprs(budget).startswith("1 - (1 - (") and "[30d]" in exprs(budget)
    assert "/ 0.1" in exprs(budget)
    assert "/ 0.1" in exprs(find("burn rate", "pool")) and "[1h]" in exprs(find("burn rate"))
    # runners per pool
    runners = exprs(find("runners per pool"))
    for series in ("runners_desired", "runners_running", "busy", "idle"):
        assert series in runners
    # executions and durations per pool
    assert "job_duration_seconds_count" in exprs(find("executions", "pool"))
    assert "histogram_quantile" in exprs(find("duration", "pool", "p90"))
    # usage per organization and repository, for cost allocation
    assert "by (organization)" in exprs(find("organization", "cost allocation"))
    assert "repository" in exprs(find("repository", "cost allocation"))
    # the controller itself
    assert "reconcile_duration_seconds_bucket" in exprs(find("reconcile duration"))
    assert "reconcile_errors_total" in exprs(find("reconcile errors"))
    assert "by (service, operation)" in exprs(find("aws api calls"))
    assert "github_api_calls_total" in exprs(find("github api calls"))
