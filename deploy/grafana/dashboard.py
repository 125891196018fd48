"""Generates deploy/grafana/ecs-reconciler.json, the operators' dashboard, from code.

    .venv/bin/python deploy/grafana/dashboard.py          # rewrite the JSON
    .venv/bin/python deploy/grafana/dashboard.py --check  # exit 1 when the JSON is stale

Views: demand as an hour-of-day x weekday heatmap, queue-wait p90 against the 30 s SLO and
the share of jobs within it, runners per pool, executions and durations per pool, runner
time per organization and repository (cost allocation), and the controller's own health.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OUTPUT = Path(__file__).with_name("ecs-reconciler.json")
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
SLO_SECONDS = 30
POOL = 'pool=~"$pool"'


def target(expr: str, legend: str = "", ref: str = "A", **extra: Any) -> dict[str, Any]:
    return {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend, "refId": ref, **extra}


def panel(
    panel_id: int,
    title: str,
    kind: str,
    grid: tuple[int, int, int, int],
    targets: list[dict[str, Any]],
    **options: Any,
) -> dict[str, Any]:
    x, y, w, h = grid
    return {
        "id": panel_id,
        "title": title,
        "type": kind,
        "datasource": DATASOURCE,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "targets": targets,
        **options,
    }


def slo_thresholds() -> dict[str, Any]:
    return {
        "defaults": {
            "unit": "s",
            "thresholds": {
                "mode": "absolute",
                "steps": [
                    {"color": "green", "value": None},
                    {"color": "red", "value": SLO_SECONDS},
                ],
            },
            "custom": {"thresholdsStyle": {"mode": "line"}},
        },
        "overrides": [],
    }


def panels() -> list[dict[str, Any]]:
    wait = f"ecs_reconciler_job_queue_wait_seconds_bucket{{{POOL}}}"
    return [
        panel(
            1,
            "Demand: jobs started by hour of day and weekday (UTC, last 4 weeks)",
            "heatmap",
            (0, 0, 12, 9),
            [
                target(
                    f"sum by (weekday, hour) (increase(ecs_reconciler_jobs_started_total{{{POOL}}}[4w]))",
                    "{{weekday}} {{hour}}",
                    format="table",
                    instant=True,
                )
            ],
            options={"calculate": False, "yAxis": {"axisLabel": "weekday"}},
        ),
        panel(
            2,
            f"Queue wait p90 by pool (SLO {SLO_SECONDS} s)",
            "timeseries",
            (12, 0, 12, 9),
            [
                target(
                    f"histogram_quantile(0.9, sum by (pool, le) (rate({wait}[15m])))",
                    "{{pool}} p90",
                )
            ],
            fieldConfig=slo_thresholds(),
        ),
        panel(
            3,
            f"Jobs started within {SLO_SECONDS} s (weekday working hours, 09-19 in the "
            "dashboard's time zone)",
            "stat",
            (0, 9, 6, 5),
            [
                target(
                    f'sum(increase(ecs_reconciler_job_queue_wait_seconds_bucket{{{POOL},le="{SLO_SECONDS}.0"}}[$__range]))'
                    f" / sum(increase(ecs_reconciler_job_queue_wait_seconds_count{{{POOL}}}[$__range]))",
                    "within SLO",
                )
            ],
            fieldConfig={"defaults": {"unit": "percentunit"}, "overrides": []},
        ),
        panel(
            4,
            "Queued jobs by repository",
            "timeseries",
            (6, 9, 18, 5),
            [
                target(
                    f"sum by (repository) (ecs_reconciler_queued_jobs{{{POOL}}})", "{{repository}}"
                )
            ],
        ),
        panel(
            5,
            "Runners by pool: desired, busy, idle",
            "timeseries",
            (0, 14, 12, 8),
            [
                target(f"ecs_reconciler_runners_desired{{{POOL}}}", "{{pool}} desired", "A"),
                target(
                    f"sum by (pool, state) (ecs_reconciler_runners{{{POOL}}})",
                    "{{pool}} {{state}}",
                    "B",
                ),
            ],
        ),
        panel(
            6,
            "Job executions and p90 duration by pool",
            "timeseries",
            (12, 14, 12, 8),
            [
                target(
                    f"sum by (pool) (increase(ecs_reconciler_job_duration_seconds_count{{{POOL}}}[1h]))",
                    "{{pool}} jobs/h",
                    "A",
                ),
                target(
                    "histogram_quantile(0.9, sum by (pool, le) "
                    f"(rate(ecs_reconciler_job_duration_seconds_bucket{{{POOL}}}[1h])))",
                    "{{pool}} p90 duration",
                    "B",
                ),
            ],
        ),
        panel(
            7,
            "Runner hours by organization (cost allocation)",
            "bargauge",
            (0, 22, 12, 9),
            [
                target(
                    f"sum by (organization) (increase(ecs_reconciler_runner_seconds_total{{{POOL}}}[$__range])) / 3600",
                    "{{organization}}",
                    instant=True,
                )
            ],
            fieldConfig={"defaults": {"unit": "h"}, "overrides": []},
        ),
        panel(
            8,
            "Runner hours by repository (top 20)",
            "table",
            (12, 22, 12, 9),
            [
                target(
                    "topk(20, sum by (organization, repository) "
                    f"(increase(ecs_reconciler_runner_seconds_total{{{POOL}}}[$__range])) / 3600)",
                    "{{repository}}",
                    format="table",
                    instant=True,
                )
            ],
        ),
        panel(
            9,
            "Reconcile duration p90 and errors",
            "timeseries",
            (0, 31, 12, 8),
            [
                target(
                    "histogram_quantile(0.9, sum by (le) "
                    "(rate(ecs_reconciler_reconcile_duration_seconds_bucket[15m])))",
                    "cycle p90",
                    "A",
                ),
                target(
                    f"sum by (pool) (increase(ecs_reconciler_reconcile_errors_total{{{POOL}}}[15m]))",
                    "{{pool}} errors",
                    "B",
                ),
            ],
        ),
        panel(
            10,
            "API calls by operation",
            "timeseries",
            (12, 31, 12, 8),
            [
                target(
                    "sum by (operation) (rate(ecs_reconciler_aws_api_calls_total[5m]))",
                    "AWS {{operation}}",
                    "A",
                ),
                target(
                    "sum by (endpoint) (rate(ecs_reconciler_github_api_calls_total[5m]))",
                    "GitHub {{endpoint}}",
                    "B",
                ),
            ],
        ),
    ]


def dashboard() -> dict[str, Any]:
    return {
        "title": "ecs-reconciler: GitHub Actions runners on ECS",
        "uid": "ecs-reconciler",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "tags": ["ecs-reconciler", "github-actions"],
        "timezone": "browser",
        "time": {"from": "now-7d", "to": "now"},
        "refresh": "1m",
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                },
                {
                    "name": "pool",
                    "label": "Pool",
                    "type": "query",
                    "datasource": DATASOURCE,
                    "query": "label_values(ecs_reconciler_runners_desired, pool)",
                    "includeAll": True,
                    "multi": True,
                    "current": {"text": "All", "value": "$__all"},
                    "allValue": ".*",
                    "refresh": 2,
                },
            ]
        },
        "annotations": {"list": []},
        "panels": panels(),
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"


def main() -> int:
    text = render()
    if "--check" in sys.argv:
        if not OUTPUT.exists() or OUTPUT.read_text() != text:
            print(f"{OUTPUT} is stale: run {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
