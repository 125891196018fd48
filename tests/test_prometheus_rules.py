"""The SLO as code (deploy/prometheus): every expression parses and names only series and
labels the controller exports (or rules of the same file), and `promtool test rules` passes
when promtool is installed (`make slo-check` runs it in CI and fails without it)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import promql_parser
import pytest
from ruamel.yaml import YAML

from tests.test_dashboard import exported_series, selectors, series_labels

RULES_DIR = Path(__file__).resolve().parent.parent / "deploy" / "prometheus"
RULES = RULES_DIR / "ecs-reconciler-rules.yaml"


def rules() -> list[dict[str, Any]]:
    document = YAML(typ="safe").load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_rules_name_only_exported_series_labels_and_their_own_records() -> None:
    exported, labels = exported_series(), series_labels()
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    used: set[str] = set()
    for rule in rules():
        name = rule.get("record") or rule["alert"]
        expr = promql_parser.parse(rule["expr"])
        found = selectors(expr)
        assert found, f"{name}: no series in {rule['expr']}"
        for selector in found:
            series = selector.name
            if series in recorded:
                continue
            assert series in exported, f"{name}: {series} is not exported by the controller"
            used.add(exported[series])
            for matcher in selector.matchers.matchers:
                assert matcher.name in labels[series], f"{name}: {series} has no {matcher.name}"

        def check_grouping(node: promql_parser.Expr, title: str = name) -> None:
            if isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
                inner = [s.name or "" for s in selectors(node.expr)]
                available = set().union(*(labels.get(s, frozenset()) for s in inner))
                if any(s in recorded for s in inner):
                    available.add("pool")  # every recording rule here keeps `pool`
                assert set(node.modifier.labels) <= available, f"{title}: {node.modifier}"

        promql_parser.walk(expr, check_grouping)
    # the four subjects the issue names each have a rule
    families = {
        "ecs_reconciler_job_queue_wait_seconds",
        "ecs_reconciler_runners_desired",
        "ecs_reconciler_runner_version_stale",
        "ecs_reconciler_rollout_halted",
    }
    assert families <= used, families - used


def test_the_slo_threshold_is_a_bucket_bound_of_the_queue_wait_histogram() -> None:
    from reconciler.controller.metrics import QUEUE_WAIT_BUCKETS

    assert 30 in QUEUE_WAIT_BUCKETS
    assert 'le=~"30|30[.]0"' in RULES.read_text()


def test_alerts_carry_a_severity_and_a_summary() -> None:
    for rule in rules():
        if "alert" in rule:
            assert rule["labels"]["severity"] in ("page", "ticket"), rule["alert"]
            assert rule["annotations"]["summary"], rule["alert"]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_unit_tests_pass() -> None:
    result = subprocess.run(
        ["promtool", "test", "rules", "ecs-reconciler-rules.test.yaml"],
        cwd=RULES_DIR,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
