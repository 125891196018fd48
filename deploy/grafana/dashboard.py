"""Generates deploy/grafana/ecs-reconciler.json, the operators' dashboard, from code.

    .venv/bin/python deploy/grafana/dashboard.py          # rewrite the JSON
    .venv/bin/python deploy/grafana/dashboard.py --check  # exit 1 when the JSON is stale

Built with grafana-foundation-sdk (typed builders generated from Grafana's own schema,
pinned to the Grafana 11.6 schema): a field Grafana does not know cannot be written.
tests/test_dashboard.py checks that the committed JSON is what this script writes, that it
is structurally importable, and that every query names only metrics that
reconciler/controller/metrics.py exports.

Views (what the operators asked for):
- demand: jobs started by hour of day x weekday (UTC), a table coloured like a heatmap
  (Grafana's heatmap panel needs a time X axis, so a weekday x hour matrix is a table
  built with the groupingToMatrix transformation);
- queue wait p90 against the 30 s SLO, and for weekday working hours the share of jobs
  that started within the SLO and the p90 itself;
- SLO attainment per pool over the range, the error budget left over 30 days, and the
  1-hour burn rate against the fast-burn page of deploy/prometheus;
- runners desired / running / busy / idle per pool, utilisation, queued jobs;
- job executions and durations per pool;
- runner hours per organization and repository, for cost allocation;
- the controller: reconcile duration p90, errors, last cycle, spec errors; AWS and GitHub
  API calls by operation; pools on a stale runner version;
- spot: pools on their on-demand fallback, busy runners on draining instances.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import bargauge, stat, table, timeseries
from grafana_foundation_sdk.builders.common import (
    GraphThresholdsStyleConfig,
    ReduceDataOptions,
    TableSortByFieldState,
    VizLegendOptions,
)
from grafana_foundation_sdk.builders.dashboard import (
    AnnotationQuery,
    Dashboard,
    DatasourceVariable,
    FieldColor,
    QueryVariable,
    Row,
    ThresholdsConfig,
)
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import (
    BarGaugeDisplayMode,
    BigValueColorMode,
    BigValueGraphMode,
    GraphDrawStyle,
    GraphThresholdsStyleMode,
    LegendDisplayMode,
    LegendPlacement,
    TableCellBackgroundDisplayMode,
    TableCellHeight,
    TableColoredBackgroundCellOptions,
    VizOrientation,
)
from grafana_foundation_sdk.models.dashboard import (
    DataSourceRef,
    DataTransformerConfig,
    DynamicConfigValue,
    FieldColorModeId,
    GridPos,
    Threshold,
    ThresholdsMode,
    VariableOption,
    VariableRefresh,
    VariableSort,
)
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from reconciler.controller.metrics import QUEUE_WAIT_BUCKETS, WEEKDAYS

OUTPUT = Path(__file__).with_name("ecs-reconciler.json")
UID = "ecs-reconciler"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")

SLO_SECONDS = 30
SLO_SHARE = 0.9  # the SLO: 90 % of jobs start within SLO_SECONDS (queue-wait p90 <= 30 s)
WORKING_HOURS_UTC = (8, 18)  # Monday to Friday, [from, to) in UTC
if SLO_SECONDS not in QUEUE_WAIT_BUCKETS:
    raise SystemExit("the SLO must be a bucket bound of the queue-wait histogram")

POOL = 'pool=~"$pool"'
JOBS = 'pool=~"$pool", organization=~"$organization"'
# prometheus-client writes le="30.0"; accept "30" too, whatever the server normalises to
SLO_BUCKET = f'le=~"{SLO_SECONDS}|{SLO_SECONDS}[.]0"'
# At the end of each 1-hour subquery step: true when that hour lies in weekday working
# hours (UTC). hour() is the hour the step ends in, so the hour that started at 08:00
# ends with hour() = 9.
WORKING_HOUR = (
    "on() (day_of_week() >= 1 <= 5 and "
    f"hour() >= {WORKING_HOURS_UTC[0] + 1} <= {WORKING_HOURS_UTC[1]})"
)
MATRIX_CORNER = "hour\\weekday"  # groupingToMatrix names the row-key field row\column


def query(expr: str, legend: str = "", ref: str = "A") -> Dataquery:
    """A range query over the dashboard's data source variable."""
    return (
        Dataquery().expr(expr).legend_format(legend or "__auto").ref_id(ref).datasource(DATASOURCE)
    )


def instant(expr: str, legend: str = "", ref: str = "A", table_format: bool = False) -> Dataquery:
    """An instant query (one value per series, at the end of the range)."""
    built = query(expr, legend, ref).instant()
    return built.format(PromQueryFormat.TABLE) if table_format else built


def within_working_hours(expr: str) -> str:
    """Sum the hourly increases of `expr` over the range, weekday working hours only."""
    return f"sum_over_time(({expr} and {WORKING_HOUR})[$__range:1h])"


def thresholds(*steps: tuple[float | None, str]) -> ThresholdsConfig:
    return (
        ThresholdsConfig()
        .mode(ThresholdsMode.ABSOLUTE)
        .steps([Threshold(value=value, color=color) for value, color in steps])
    )


def legend_table() -> VizLegendOptions:
    return (
        VizLegendOptions()
        .show_legend(True)
        .display_mode(LegendDisplayMode.TABLE)
        .placement(LegendPlacement.BOTTOM)
        .calcs(["mean", "max", "lastNotNull"])
    )


def place(x: int, y: int, w: int, h: int) -> GridPos:
    return GridPos(x=x, y=y, w=w, h=h)


# ---------------------------------------------------------------- demand and queue wait


def demand_heatmap(y: int) -> table.Panel:
    organize = {
        "indexByName": {MATRIX_CORNER: 0, **{day: i + 1 for i, day in enumerate(WEEKDAYS)}},
        "renameByName": {MATRIX_CORNER: "hour (UTC)"},
        "excludeByName": {},
    }
    return (
        table.Panel()
        .title("Demand heatmap: jobs started by hour of day x weekday (UTC)")
        .description(
            "Jobs started in each hour of the week over the selected range, summed; rows are "
            "hours (UTC), columns weekdays. Darker cells need more runners at that time."
        )
        .datasource(DATASOURCE)
        .grid_pos(place(0, y, 12, 22))
        .with_target(
            instant(
                "sum by (weekday, hour) "
                f"(increase(ecs_reconciler_jobs_started_total{{{JOBS}}}[$__range]))",
                table_format=True,
            )
        )
        .with_transformation(
            DataTransformerConfig(
                id_val="groupingToMatrix",
                options={
                    "columnField": "weekday",
                    "rowField": "hour",
                    "valueField": "Value",
                    "emptyValue": "null",
                },
            )
        )
        .with_transformation(
            DataTransformerConfig(
                id_val="sortBy", options={"fields": {}, "sort": [{"field": MATRIX_CORNER}]}
            )
        )
        .with_transformation(DataTransformerConfig(id_val="organize", options=organize))
        .cell_height(TableCellHeight.SM)
        .cell_options(
            TableColoredBackgroundCellOptions(mode=TableCellBackgroundDisplayMode.GRADIENT)
        )
        .color_scheme(_continuous(FieldColorModeId.CONTINUOUS_GR_YL_RD))
        .min(0)
        .decimals(0)
        .override_by_field_type(
            "string", [DynamicConfigValue(id_val="custom.cellOptions", value={"type": "auto"})]
        )
    )


def queue_wait_p90(y: int) -> timeseries.Panel:
    bucket = f"ecs_reconciler_job_queue_wait_seconds_bucket{{{JOBS}}}"
    return (
        timeseries.Panel()
        .title(f"Queue wait p90 by pool (SLO {SLO_SECONDS} s)")
        .description(
            "90th percentile of the time from a job being queued to it starting on a runner. "
            f"The red line is the SLO ({SLO_SECONDS} s)."
        )
        .datasource(DATASOURCE)
        .grid_pos(place(12, y, 12, 10))
        .with_target(
            query(
                f"histogram_quantile(0.9, sum by (pool, le) (rate({bucket}[$__rate_interval])))",
                "{{pool}}",
                "A",
            )
        )
        .with_target(
            query(
                f"histogram_quantile(0.9, sum by (le) (rate({bucket}[$__rate_interval])))",
                "all pools",
                "B",
            )
        )
        .unit("s")
        .min(0)
        .thresholds(thresholds((None, "green"), (SLO_SECONDS, "red")))
        .thresholds_style(GraphThresholdsStyleConfig().mode(GraphThresholdsStyleMode.DASHED))
        .legend(legend_table())
    )


def single_value(title: str, description: str, position: GridPos) -> stat.Panel:
    """A big number on a coloured background: the last value of one instant query."""
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .grid_pos(position)
        .color_mode(BigValueColorMode.BACKGROUND)
        .graph_mode(BigValueGraphMode.NONE)
        .reduce_options(ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )


def share_within_slo(y: int) -> stat.Panel:
    start, end = WORKING_HOURS_UTC
    within = within_working_hours(
        f"sum(increase(ecs_reconciler_job_queue_wait_seconds_bucket{{{JOBS}, {SLO_BUCKET}}}[1h]))"
    )
    total = within_working_hours(
        f"sum(increase(ecs_reconciler_job_queue_wait_seconds_count{{{JOBS}}}[1h]))"
    )
    return (
        single_value(
            f"Jobs started within {SLO_SECONDS} s, Mon-Fri {start:02d}-{end:02d} UTC",
            f"Share of the jobs started in weekday working hours ({start:02d}:00-{end:02d}:00 "
            f"UTC) over the selected range that waited at most {SLO_SECONDS} s. The SLO is "
            f"met at {SLO_SHARE:.0%}.",
            place(12, y, 6, 6),
        )
        .with_target(instant(f"{within} / {total}", "within SLO"))
        .unit("percentunit")
        .decimals(1)
        .min(0)
        .max(1)
        .thresholds(thresholds((None, "red"), (SLO_SHARE, "green")))
    )


def working_hours_p90(y: int) -> stat.Panel:
    start, end = WORKING_HOURS_UTC
    buckets = within_working_hours(
        f"sum by (le) (increase(ecs_reconciler_job_queue_wait_seconds_bucket{{{JOBS}}}[1h]))"
    )
    return (
        single_value(
            f"Queue wait p90, Mon-Fri {start:02d}-{end:02d} UTC",
            "90th percentile of the queue wait of the jobs started in weekday working hours "
            f"over the selected range; red above the SLO ({SLO_SECONDS} s).",
            place(18, y, 6, 6),
        )
        .with_target(instant(f"histogram_quantile(0.9, {buckets})", "p90"))
        .unit("s")
        .decimals(1)
        .thresholds(thresholds((None, "green"), (SLO_SECONDS, "red")))
    )


ERROR_BUDGET_WINDOW = "30d"  # the SLO's period, as deploy/prometheus's budget rule reads it
BURN_PAGE = 7.2  # deploy/prometheus: the fast-burn page (1 h and 5 m windows)


def within_slo_share(window: str) -> str:
    """Per pool, the share of the jobs started over `window` that waited at most the SLO."""
    bucket = f"ecs_reconciler_job_queue_wait_seconds_bucket{{{JOBS}, {SLO_BUCKET}}}"
    count = f"ecs_reconciler_job_queue_wait_seconds_count{{{JOBS}}}"
    return (
        f"sum by (pool) (increase({bucket}[{window}])) / "
        f"sum by (pool) (increase({count}[{window}]))"
    )


def bars(title: str, description: str, position: GridPos) -> bargauge.Panel:
    """One horizontal bar per series (pool, organization), the last value of an instant
    query."""
    return (
        bargauge.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .grid_pos(position)
        .orientation(VizOrientation.HORIZONTAL)
        .display_mode(BarGaugeDisplayMode.BASIC)
        .reduce_options(ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )


def slo_attainment(y: int) -> bargauge.Panel:
    return (
        bars(
            f"SLO attainment by pool: jobs started within {SLO_SECONDS} s",
            f"Share of each pool's jobs over the selected range that waited at most "
            f"{SLO_SECONDS} s for a runner. The SLO is met at {SLO_SHARE:.0%} (green).",
            place(0, y, 8, 8),
        )
        .with_target(instant(within_slo_share("$__range"), "{{pool}}"))
        .unit("percentunit")
        .decimals(1)
        .min(0)
        .max(1)
        .thresholds(thresholds((None, "red"), (SLO_SHARE, "green")))
    )


def error_budget_remaining(y: int) -> bargauge.Panel:
    budget = 1 - SLO_SHARE
    return (
        bars(
            f"Error budget remaining by pool ({ERROR_BUDGET_WINDOW})",
            f"The SLO allows {budget:.0%} of a pool's jobs to wait longer than {SLO_SECONDS} s "
            f"over {ERROR_BUDGET_WINDOW}; this is the part of that allowance not yet used "
            "(below 0: the SLO is missed over the period). Red below 0, orange below 25%. "
            "Prometheus records the same as "
            "pool:ecs_reconciler_queue_wait_slo_error_budget_remaining:ratio30d.",
            place(8, y, 8, 8),
        )
        .with_target(
            instant(f"1 - (1 - ({within_slo_share(ERROR_BUDGET_WINDOW)})) / {budget:g}", "{{pool}}")
        )
        .unit("percentunit")
        .decimals(0)
        .min(-1)
        .max(1)
        .thresholds(thresholds((None, "red"), (0, "orange"), (0.25, "green")))
    )


def error_budget_burn(y: int) -> timeseries.Panel:
    budget = 1 - SLO_SHARE
    return (
        timeseries.Panel()
        .title("Error budget burn rate by pool (1 h)")
        .description(
            f"Share of the last hour's jobs over {SLO_SECONDS} s, divided by the budget "
            f"({budget:.0%}): 1 spends the budget exactly over the period; the fast-burn "
            f"page (EcsReconcilerQueueWaitBudgetBurn) is at {BURN_PAGE:g} (dashed red)."
        )
        .datasource(DATASOURCE)
        .grid_pos(place(16, y, 8, 8))
        .with_target(query(f"(1 - ({within_slo_share('1h')})) / {budget:g}", "{{pool}}"))
        .unit("short")
        .decimals(1)
        .min(0)
        .thresholds(thresholds((None, "green"), (1, "orange"), (BURN_PAGE, "red")))
        .thresholds_style(GraphThresholdsStyleConfig().mode(GraphThresholdsStyleMode.DASHED))
    )


def queued_jobs(y: int) -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title("Queued jobs by pool")
        .description("Jobs waiting for a runner, per pool.")
        .datasource(DATASOURCE)
        .grid_pos(place(12, y, 12, 6))
        .with_target(
            query(
                "sum by (pool) (max by (pool, organization, repository) "
                f"(ecs_reconciler_queued_jobs{{{JOBS}}}))",
                "{{pool}}",
            )
        )
        .unit("short")
        .min(0)
        .decimals(0)
    )


# ---------------------------------------------------------------- runner scale sets


def scale_set_jobs(y: int) -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title("Scale-set jobs and runners by pool")
        .description(
            "Pools whose demand comes from a runner scale set: jobs and runners by state in "
            "the last message's statistics (assigned includes running: what the pool is "
            "sized on; the desired count is 'Runners per pool'). ARC's gha_assigned_jobs, "
            "gha_running_jobs, gha_busy_runners and gha_idle_runners."
        )
        .datasource(DATASOURCE)
        .grid_pos(place(0, y, 12, 8))
        .with_target(
            query(
                f"max by (pool, state) (ecs_reconciler_scale_set_jobs{{{POOL}, "
                f'state=~"assigned|running|available"}})',
                "{{pool}} {{state}} jobs",
                "A",
            )
        )
        .with_target(
            query(
                f"max by (pool, state) (ecs_reconciler_scale_set_runners{{{POOL}, "
                f'state=~"busy|idle"}})',
                "{{pool}} {{state}} runners",
                "B",
            )
        )
        .unit("short")
        .min(0)
        .decimals(0)
        .legend(legend_table())
    )


def job_startup_p90(y: int) -> timeseries.Panel:
    bucket = f"ecs_reconciler_job_startup_seconds_bucket{{{JOBS}}}"
    return (
        timeseries.Panel()
        .title("Scale-set job startup p90 by pool")
        .description(
            "90th percentile of the time from a job being assigned to the pool's scale set "
            "to a runner taking it (ARC's gha_job_startup_duration_seconds)."
        )
        .datasource(DATASOURCE)
        .grid_pos(place(12, y, 12, 8))
        .with_target(
            query(
                f"histogram_quantile(0.9, sum by (pool, le) (rate({bucket}[$__rate_interval])))",
                "{{pool}}",
            )
        )
        .unit("s")
        .min(0)
        .legend(legend_table())
    )


# ---------------------------------------------------------------- runners and jobs


def runners(y: int) -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title("Runners per pool: desired, running, busy, idle")
        .description(
            "Runner tasks per pool as the last reconcile cycle observed them (max over "
            "replicas); desired (dashed) is the scaling target. Unknown runners are running "
            "but neither busy nor idle; outdated ones still run an older task definition."
        )
        .datasource(DATASOURCE)
        .grid_pos(place(0, y, 12, 9))
        .with_target(
            query(
                f"max by (pool) (ecs_reconciler_runners_desired{{{POOL}}})", "{{pool}} desired", "A"
            )
        )
        .with_target(
            query(
                f"max by (pool) (ecs_reconciler_runners_running{{{POOL}}})", "{{pool}} running", "B"
            )
        )
        .with_target(
            query(
                f'max by (pool, state) (ecs_reconciler_runners{{{POOL}, state=~"busy|idle"}})',
                "{{pool}} {{state}}",
                "C",
            )
        )
        .with_target(
            query(
                f"max by (pool) (ecs_reconciler_runners_outdated{{{POOL}}})",
                "{{pool}} outdated",
                "D",
            )
        )
        .override_by_query(
            "A",
            [
                DynamicConfigValue(
                    id_val="custom.lineStyle", value={"fill": "dash", "dash": [10, 10]}
                )
            ],
        )
        .unit("short")
        .min(0)
        .decimals(0)
        .legend(legend_table())
    )


def executions(y: int) -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title("Job executions per pool (jobs per hour)")
        .description("Jobs completed per hour, per pool.")
        .datasource(DATASOURCE)
        .grid_pos(place(12, y, 12, 9))
        .with_target(
            query(
                "sum by (pool) (rate(ecs_reconciler_job_duration_seconds_count"
                f"{{{JOBS}}}[$__rate_interval])) * 3600",
                "{{pool}}",
            )
        )
        .unit("short")
        .min(0)
        .draw_style(GraphDrawStyle.BARS)
        .fill_opacity(60)
        .legend(legend_table())
    )


def durations(y: int) -> timeseries.Panel:
    bucket = f"ecs_reconciler_job_duration_seconds_bucket{{{JOBS}}}"
    return (
        timeseries.Panel()
        .title("Job duration per pool: p50 and p90")
        .description("How long jobs run on a runner (in_progress to completed).")
        .datasource(DATASOURCE)
        .grid_pos(place(0, y, 12, 9))
        .with_target(
            query(
                f"histogram_quantile(0.5, sum by (pool, le) (rate({bucket}[$__rate_interval])))",
                "{{pool}} p50",
                "A",
            )
        )
        .with_target(
            query(
                f"histogram_quantile(0.9, sum by (pool, le) (rate({bucket}[$__rate_interval])))",
                "{{pool}} p90",
                "B",
            )
        )
        .unit("s")
        .min(0)
        .legend(legend_table())
    )


def utilisation(y: int) -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title("Runner utilisation per pool (busy / running)")
        .description(
            "Share of the running runners that are busy. Close to 100 % with queued jobs: the "
            "pool is too small; low for long: it is larger than the demand."
        )
        .datasource(DATASOURCE)
        .grid_pos(place(12, y, 12, 9))
        .with_target(
            query(
                f'max by (pool) (ecs_reconciler_runners{{{POOL}, state="busy"}}) / '
                f"max by (pool) (ecs_reconciler_runners_running{{{POOL}}} > 0)",
                "{{pool}}",
            )
        )
        .unit("percentunit")
        .min(0)
        .max(1)
        .legend(legend_table())
    )


# ---------------------------------------------------------------- cost allocation


def hours_by_organization(y: int) -> bargauge.Panel:
    return (
        bars(
            "Runner hours by organization (cost allocation)",
            "Runner time spent on jobs over the selected range, per organization: the basis "
            "for charging runner costs back.",
            place(0, y, 10, 11),
        )
        .with_target(
            instant(
                "sort_desc(sum by (organization) "
                f"(increase(ecs_reconciler_runner_seconds_total{{{JOBS}}}[$__range])) / 3600)",
                "{{organization}}",
            )
        )
        .unit("h")
        .decimals(1)
        .min(0)
        .display_mode(BarGaugeDisplayMode.GRADIENT)
        .color_scheme(_continuous(FieldColorModeId.CONTINUOUS_BL_PU))
    )


def hours_by_repository(y: int) -> table.Panel:
    hours = (
        "sum by (organization, repository, pool) "
        f"(increase(ecs_reconciler_runner_seconds_total{{{JOBS}}}[$__range])) / 3600"
    )
    jobs = (
        "sum by (organization, repository, pool) "
        f"(increase(ecs_reconciler_job_duration_seconds_count{{{JOBS}}}[$__range]))"
    )
    organize = {
        "excludeByName": {"Time": True},
        "indexByName": {
            "organization": 0,
            "repository": 1,
            "pool": 2,
            "Value #A": 3,
            "Value #B": 4,
        },
        "renameByName": {"Value #A": "runner hours", "Value #B": "jobs"},
    }
    return (
        table.Panel()
        .title("Runner hours and jobs by repository (cost allocation)")
        .description(
            "Per organization, repository and pool over the selected range. Repositories "
            "beyond the controller's cardinality limit are counted as _other."
        )
        .datasource(DATASOURCE)
        .grid_pos(place(10, y, 14, 11))
        .with_target(instant(hours, ref="A", table_format=True))
        .with_target(instant(jobs, ref="B", table_format=True))
        .with_transformation(DataTransformerConfig(id_val="merge", options={}))
        .with_transformation(DataTransformerConfig(id_val="organize", options=organize))
        .sort_by([TableSortByFieldState().display_name("runner hours").desc(True)])
        .cell_height(TableCellHeight.SM)
        .override_by_name("runner hours", [_unit("h"), _decimals(1)])
        .override_by_name("jobs", [_unit("short"), _decimals(0)])
    )


# ---------------------------------------------------------------- the controller


def reconcile_duration(y: int) -> timeseries.Panel:
    bucket = "ecs_reconciler_reconcile_duration_seconds_bucket"
    return (
        timeseries.Panel()
        .title("Reconcile duration p50 and p90")
        .description("How long one cycle takes: observe, plan and, when leading, apply.")
        .datasource(DATASOURCE)
        .grid_pos(place(0, y, 9, 8))
        .with_target(
            query(
                f"histogram_quantile(0.5, sum by (le) (rate({bucket}[$__rate_interval])))",
                "p50",
                "A",
            )
        )
        .with_target(
            query(
                f"histogram_quantile(0.9, sum by (le) (rate({bucket}[$__rate_interval])))",
                "p90",
                "B",
            )
        )
        .unit("s")
        .min(0)
    )


def reconcile_errors(y: int) -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title("Reconcile errors by pool")
        .description(
            "apply_failed: an action failed (the pool backs off); blocked: the plan holds an "
            "error for the pool; cycle_failed: a cycle raised. Pool _cluster: no pool "
            "concerned."
        )
        .datasource(DATASOURCE)
        .grid_pos(place(9, y, 9, 8))
        .with_target(
            query(
                "sum by (pool, kind) (increase(ecs_reconciler_reconcile_errors_total"
                '{pool=~"$pool|_cluster"}[$__rate_interval]))',
                "{{pool}} {{kind}}",
            )
        )
        .unit("short")
        .min(0)
        .draw_style(GraphDrawStyle.BARS)
        .fill_opacity(80)
    )


def last_reconcile(y: int) -> stat.Panel:
    return (
        single_value(
            "Since the last reconcile",
            "Red when no cycle finished for longer than five resync intervals (5 min).",
            place(18, y, 6, 4),
        )
        .with_target(
            instant("time() - max(ecs_reconciler_last_reconcile_timestamp_seconds)", "age")
        )
        .unit("s")
        .decimals(0)
        .thresholds(thresholds((None, "green"), (300, "red")))
    )


def spec_errors(y: int) -> stat.Panel:
    return (
        single_value(
            "Spec errors",
            "Errors in the specs at the last cycle; while any, nothing is applied.",
            place(18, y, 6, 4),
        )
        .with_target(instant("max(ecs_reconciler_spec_errors)", "errors"))
        .unit("short")
        .decimals(0)
        .thresholds(thresholds((None, "green"), (1, "red")))
    )


#: per-pool flags shown as one tile per pool: (title, description, gauge, colour from 1)
STALE_RUNNER_VERSION = (
    "Stale runner version by pool",
    "1 (orange): a runner release newer than the pool's spec.runner.version is older "
    "than the controller's --runner-version-max-age (RunnerVersionStale). GitHub "
    "stops giving jobs to a runner version 30 days after a newer one is published.",
    "ecs_reconciler_runner_version_stale",
    "orange",
)
ROLLOUT_HALTED = (
    "Halted rollout by pool",
    "1 (red): the pool's new revision failed rollout.maxFailures times, its rollout is "
    "halted and the previous revision keeps serving (Degraded, RolloutHalted) until "
    "the spec changes again.",
    "ecs_reconciler_rollout_halted",
    "red",
)
SPOT_FALLBACK = (
    "On the on-demand fallback by pool",
    "1 (orange): the pool's spot group failed to launch an instance (Auto Scaling "
    "activity) and no launch succeeded since: its new runners go to its "
    "spec.spot.fallbackCapacityProvider until spot launches or spec.spot.retryAfter passes.",
    "ecs_reconciler_spot_fallback",
    "orange",
)
RUNNERS_DRAINING = (
    "Busy runners on draining instances by pool",
    "Busy or starting runners on instances set DRAINING (a spot interruption, or by "
    "hand): never stopped, their jobs are lost if the instance goes first. Idle ones "
    "are replaced on other instances at once.",
    "ecs_reconciler_runners_draining",
    "red",
)


def pool_stat(flag: tuple[str, str, str, str], x: int, y: int) -> stat.Panel:
    """The last value of a per-pool gauge, one tile per pool, green at 0."""
    title, description, metric, colour = flag
    return (
        single_value(title, description, place(x, y, 12, 4))
        .with_target(instant(f"max by (pool) ({metric}{{{POOL}}})", "{{pool}}"))
        .unit("short")
        .decimals(0)
        .thresholds(thresholds((None, "green"), (1, colour)))
    )


def aws_calls(y: int) -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title("AWS API calls by operation (per second)")
        .description("Calls the controller makes, by service and operation (retries excluded).")
        .datasource(DATASOURCE)
        .grid_pos(place(0, y, 12, 9))
        .with_target(
            query(
                "sum by (service, operation) "
                "(rate(ecs_reconciler_aws_api_calls_total[$__rate_interval]))",
                "{{service}}:{{operation}}",
            )
        )
        .unit("reqps")
        .min(0)
        .legend(legend_table())
    )


def github_calls(y: int) -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title("GitHub API calls by endpoint (per second)")
        .description("Calls to the GitHub API by route template.")
        .datasource(DATASOURCE)
        .grid_pos(place(12, y, 12, 9))
        .with_target(
            query(
                "sum by (endpoint) (rate(ecs_reconciler_github_api_calls_total[$__rate_interval]))",
                "{{endpoint}}",
            )
        )
        .unit("reqps")
        .min(0)
        .legend(legend_table())
    )


# ---------------------------------------------------------------- the dashboard


def _continuous(mode: FieldColorModeId) -> FieldColor:
    return FieldColor().mode(mode)


def _unit(unit: str) -> DynamicConfigValue:
    return DynamicConfigValue(id_val="unit", value=unit)


def _decimals(decimals: int) -> DynamicConfigValue:
    return DynamicConfigValue(id_val="decimals", value=decimals)


def _row(title: str, y: int) -> Row:
    return Row(title).grid_pos(place(0, y, 24, 1)).collapsed(False)


def _all() -> VariableOption:
    return VariableOption(selected=True, text="All", value="$__all")


def _variables() -> list[Any]:
    return [
        DatasourceVariable("datasource").label("Data source").type("prometheus"),
        QueryVariable("pool")
        .label("Pool")
        .datasource(DATASOURCE)
        .query("label_values(ecs_reconciler_runners_desired, pool)")
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(_all()),
        QueryVariable("organization")
        .label("Organization")
        .datasource(DATASOURCE)
        .query(
            'label_values(ecs_reconciler_job_queue_wait_seconds_count{pool=~"$pool"}, organization)'
        )
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(_all()),
    ]


# Each section: its row's title, the height of its panels, and its panels placed from a top
# y. Within a section, panels are placed on the 24-column grid explicitly.
SECTIONS: tuple[tuple[str, int, Callable[[int], list[Any]]], ...] = (
    (
        f"Demand and queue wait (SLO: p90 <= {SLO_SECONDS} s)",
        22,
        lambda y: [
            demand_heatmap(y),  # left, 22 high
            queue_wait_p90(y),  # right column: 10 + 6 + 6
            share_within_slo(y + 10),
            working_hours_p90(y + 10),
            queued_jobs(y + 16),
        ],
    ),
    (
        f"SLO: attainment and error budget ({SLO_SHARE:.0%} of jobs within {SLO_SECONDS} s)",
        8,
        lambda y: [slo_attainment(y), error_budget_remaining(y), error_budget_burn(y)],
    ),
    (
        "Runners and jobs per pool",
        18,
        lambda y: [runners(y), executions(y), durations(y + 9), utilisation(y + 9)],
    ),
    (
        "Runner scale sets",
        8,
        lambda y: [scale_set_jobs(y), job_startup_p90(y)],
    ),
    (
        "Usage per organization and repository (cost allocation)",
        11,
        lambda y: [hours_by_organization(y), hours_by_repository(y)],
    ),
    (
        "Controller",
        21,
        lambda y: [
            reconcile_duration(y),
            reconcile_errors(y),
            last_reconcile(y),
            spec_errors(y + 4),
            aws_calls(y + 8),
            github_calls(y + 8),
            pool_stat(STALE_RUNNER_VERSION, 0, y + 17),
            pool_stat(ROLLOUT_HALTED, 12, y + 17),
        ],
    ),
    (
        "Spot capacity",
        4,
        lambda y: [pool_stat(SPOT_FALLBACK, 0, y), pool_stat(RUNNERS_DRAINING, 12, y)],
    ),
)


def build() -> Dashboard:
    """The dashboard, panel by panel, each at an explicit place on the 24-column grid."""
    builder = (
        Dashboard("ecs-reconciler: GitHub Actions runners on ECS")
        .uid(UID)
        .description(
            "Demand, queue wait against the SLO, runners per pool, cost allocation per "
            "organization and repository, and the health of the ecs-reconciler controller."
        )
        .tags(["ecs-reconciler", "github-actions", "ecs"])
        .editable()
        .timezone("utc")
        .time("now-7d", "now")
        .refresh("1m")
        .version(1)
        .annotation(
            AnnotationQuery()
            .name("Annotations & Alerts")
            .datasource(DataSourceRef(type_val="grafana", uid="-- Grafana --"))
            .enable(True)
            .hide(True)
            .icon_color("rgba(0, 211, 255, 1)")
            .type("dashboard")
            .built_in(1)
        )
    )
    for variable in _variables():
        builder = builder.with_variable(variable)

    y, panel_id = 0, 0
    for title, height, section in SECTIONS:
        panel_id += 1
        builder = builder.with_row(_row(title, y).id(panel_id))
        for panel in section(y + 1):
            panel_id += 1
            builder = builder.with_panel(panel.id(panel_id))
        y += 1 + height
    return builder


def render() -> str:
    """The dashboard JSON exactly as committed (sorted keys, two-space indent)."""
    return json.dumps(build().build(), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    text = render()
    if "--check" in args:
        if not OUTPUT.exists() or OUTPUT.read_text() != text:
            print(f"{OUTPUT} is stale: run {Path(__file__).name} to regenerate", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
