"""Running policies on a trace and reporting: queue-wait percentiles, hours, SLO share.

`simulate` runs each named policy on the same jobs; `PolicyReport.to_json` is the `--format
json` object of one policy; `render_text` prints the comparison tables; `render_plot` draws
queued jobs, runners and instances over time in the pools' time zone, the queue-wait
distribution per policy and cost against p90 (needs matplotlib, the `plot` extra).
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..spec.loader import SpecSet
from .parameters import SimulationParameters
from .policies import make_policy
from .trace import TraceJob
from .world import SimPool, Totals, World

PERCENTILES = (50, 90, 99)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of sorted `values` (0 when empty)."""
    if not values:
        return 0.0
    return values[max(0, math.ceil(q / 100 * len(values)) - 1)]


def wait_figures(waits: list[float]) -> dict[str, float | int]:
    """p50 / p90 / p99 / max (seconds) and the job count."""
    ordered = sorted(waits)
    figures: dict[str, float | int] = {
        f"p{q}": round(percentile(ordered, q), 1) for q in PERCENTILES
    }
    figures["max"] = round(ordered[-1], 1) if ordered else 0.0
    figures["jobs"] = len(ordered)
    return figures


@dataclass
class PolicyReport:
    """What one policy achieved on the trace."""

    policy: str
    waits: list[float]
    by_pool: dict[str, list[float]]
    by_repository: dict[str, list[float]]
    busy_by_pool: dict[str, float]
    unserved: int
    totals: Totals
    slo_s: float
    world: World | None = field(default=None, repr=False)  # the replayed world, for tests
    #: jobs GitHub cancelled after 24 h queued; each counts in the waits at that 24 h (a
    #: lower bound of what it would have waited), so that it cannot flatter a percentile
    cancelled: int = 0

    def to_json(self) -> dict[str, Any]:
        """The `--format json` object for this policy."""
        totals = self.totals
        busy, idle = totals.busy_s / 3600, totals.idle_s / 3600
        within = sum(1 for wait in self.waits if wait <= self.slo_s)
        return {
            "policy": self.policy,
            "queue_wait_s": wait_figures(self.waits),
            "slo": {
                "wait_s": self.slo_s,
                "share_within": round(within / len(self.waits), 4) if self.waits else 1.0,
            },
            "hours": {
                "busy_runner": round(busy, 1),
                "idle_runner": round(idle, 1),
                "starting_runner": round(totals.starting_s / 3600, 1),
                "idle_to_busy": round(idle / busy, 4) if busy else 0.0,
                "instance": round(totals.instance_s / 3600, 1),
                "instance_vcpu": round(totals.vcpu_s / 3600, 1),
            },
            "cost_usd": round(totals.usd, 2),
            "runners_started": totals.runners_started,
            "instances_launched": totals.instances_launched,
            "spot": {
                "interruptions": totals.spot_interruptions,
                "jobs_interrupted": totals.jobs_interrupted,
                "idle_runners_reclaimed": totals.idle_reclaimed,
            },
            "unserved_jobs": self.unserved,
            "cancelled_jobs": self.cancelled,
            "pools": {
                name: {
                    **wait_figures(waits),
                    "busy_runner_hours": round(self.busy_by_pool.get(name, 0.0) / 3600, 1),
                    "idle_runner_hours": round(totals.idle_s_by_pool.get(name, 0.0) / 3600, 1),
                }
                for name, waits in sorted(self.by_pool.items())
            },
            "repositories": {
                name: wait_figures(w) for name, w in sorted(self.by_repository.items())
            },
        }


def run_policy(
    name: str,
    jobs: Sequence[TraceJob],
    spec_set: SpecSet,
    parameters: SimulationParameters,
    progress: Callable[[float], None] | None = None,
    history: Sequence[TraceJob] = (),
) -> PolicyReport:
    """Replay the jobs under one policy (`history`: earlier weeks' jobs, learned from)."""
    world = World(
        jobs,
        [SimPool.of(pool) for pool in spec_set.pools],
        make_policy(name, spec_set, parameters, history),
        parameters,
        progress,
    )
    totals = world.run()
    report = PolicyReport(name, [], {}, {}, {}, 0, totals, parameters.slo_wait_s, world)
    for job in world.jobs:
        pool = job.pool
        if pool is None or (job.started is None and not job.cancelled):
            report.unserved += 1
            continue
        if job.cancelled:
            report.cancelled += 1
            wait = parameters.queued_job_timeout_s
        else:
            assert job.started is not None
            wait = job.started - job.trace.arrival
            report.busy_by_pool[pool.name] = (
                report.busy_by_pool.get(pool.name, 0.0) + job.trace.run_time
            )
        report.waits.append(wait)
        report.by_pool.setdefault(pool.name, []).append(wait)
        report.by_repository.setdefault(job.trace.event.repository, []).append(wait)
    return report


def render_text(reports: Sequence[PolicyReport]) -> str:
    """The comparison: one row per policy, then p90 per pool and per repository."""
    data = [report.to_json() for report in reports]
    rows = [
        (
            "policy",
            "p50 s",
            "p90 s",
            "p99 s",
            f"<= {reports[0].slo_s:g} s" if reports else "SLO",
            "busy h",
            "idle h",
            "idle/busy",
            "instance h",
            "vCPU h",
            "USD",
        )
    ]
    for item in data:
        waits, hours = item["queue_wait_s"], item["hours"]
        rows.append(
            (
                item["policy"],
                f"{waits['p50']:.0f}",
                f"{waits['p90']:.0f}",
                f"{waits['p99']:.0f}",
                f"{100 * item['slo']['share_within']:.1f}%",
                f"{hours['busy_runner']:.0f}",
                f"{hours['idle_runner']:.0f}",
                f"{100 * hours['idle_to_busy']:.0f}%",
                f"{hours['instance']:.0f}",
                f"{hours['instance_vcpu']:.0f}",
                f"{item['cost_usd']:.0f}",
            )
        )
    out = [_table(rows)]
    for section in ("pools", "repositories"):
        names = sorted({name for item in data for name in item[section]})
        header = (f"p90 s by {section[:-1] if section == 'pools' else 'repository'}",)
        table = [header + tuple(item["policy"] for item in data)]
        for name in names:
            p90s = (f"{item[section].get(name, {}).get('p90', 0):.0f}" for item in data)
            table.append((name, *p90s))
        out.append(_table(table))
    if any(item["spot"]["interruptions"] for item in data):
        spot = [
            f"{item['policy']}: {item['spot']['interruptions']} reclaimed, "
            f"{item['spot']['jobs_interrupted']} job(s) failed, "
            f"{item['spot']['idle_runners_reclaimed']} idle runner(s) lost"
            for item in data
        ]
        out.append("spot interruptions: " + "; ".join(spot) + "\n")
    unserved = [f"{item['policy']}: {item['unserved_jobs']}" for item in data]
    if any(item["unserved_jobs"] for item in data):
        out.append("jobs no pool could run (or never started): " + ", ".join(unserved) + "\n")
    if any(item["cancelled_jobs"] for item in data):
        cancelled = [f"{item['policy']}: {item['cancelled_jobs']}" for item in data]
        out.append(
            "jobs GitHub cancelled after 24 h queued (counted as 24 h waits): "
            + ", ".join(cancelled)
            + "\n"
        )
    return "\n".join(out)


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for index, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines) + "\n"


def pools_time_zone(spec_set: SpecSet, override: str | None = None) -> str:
    """The time zone the plot's clock reads: `override`, else the one time zone the pools'
    schedules and SLO windows name (UTC when they name none). Pools in several zones need
    `override` (ValueError naming them)."""
    if override is not None:
        try:
            ZoneInfo(override)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ValueError(f"unknown time zone {override!r}") from error
        return override
    zones = {
        window.timezone
        for pool in spec_set.pools
        for window in [
            *pool.spec.scaling.schedules,
            *(pool.spec.scaling.slo.windows if pool.spec.scaling.slo else []),
        ]
    }
    if len(zones) > 1:
        raise ValueError(
            f"the pools' schedules use several time zones ({', '.join(sorted(zones))}): "
            "pass --plot-timezone"
        )
    return zones.pop() if zones else "UTC"


def pareto_front(points: Sequence[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    """The (p90, cost, name) points no other point beats on both (lower p90 and lower cost,
    at least one strictly), by p90."""
    return sorted(
        point
        for point in points
        if not any(
            other[0] <= point[0] and other[1] <= point[1] and other[:2] != point[:2]
            for other in points
        )
    )


def render_plot(reports: Sequence[PolicyReport], out: str | Path, timezone: str = "UTC") -> None:
    """A PNG: queued jobs, runners and instances over time (clock in `timezone`), one line per
    policy; below, the queue-wait distribution per policy (CDF) and cost against p90 (the
    trade-off frontier: the policies no other beats on both)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates
    import matplotlib.pyplot as plt

    zone = ZoneInfo(timezone)
    figure = plt.figure(figsize=(14, 14))
    grid = figure.add_gridspec(4, 2, height_ratios=(1, 1, 1, 1.3))
    series = [figure.add_subplot(grid[0, :])]
    series += [figure.add_subplot(grid[row, :], sharex=series[0]) for row in (1, 2)]
    titles = ("queued jobs", "runner tasks", "instances")
    for report in reports:
        samples = report.totals.samples
        times = matplotlib.dates.date2num(
            [datetime.datetime.fromtimestamp(s[0], zone) for s in samples]
        )
        for axis, column in zip(series, (1, 2, 4), strict=True):
            axis.plot(times, [s[column] for s in samples], label=report.policy, linewidth=0.8)
    for axis, title in zip(series, titles, strict=True):
        axis.set_ylabel(title)
        axis.grid(alpha=0.3)
    series[0].legend(loc="upper right", ncol=len(reports))
    series[-1].xaxis.set_major_locator(matplotlib.dates.AutoDateLocator(tz=zone))
    series[-1].xaxis.set_major_formatter(matplotlib.dates.DateFormatter("%a %H:%M", tz=zone))
    series[-1].set_xlabel(f"time ({timezone})")
    cdf, frontier = figure.add_subplot(grid[3, 0]), figure.add_subplot(grid[3, 1])
    for report in reports:
        waits = sorted(max(wait, 0.1) for wait in report.waits)
        shares = [(index + 1) / len(waits) for index in range(len(waits))]
        cdf.step(waits, shares, where="post", label=report.policy, linewidth=1)
    slo_s = reports[0].slo_s if reports else 0.0
    cdf.axvline(slo_s, color="grey", linestyle="--", linewidth=0.8, label=f"SLO {slo_s:g} s")
    cdf.axhline(0.9, color="grey", linestyle=":", linewidth=0.8)
    _log_x_panel(cdf, "queue-wait distribution", "queue wait", "share of jobs started within")
    points = [(percentile(sorted(r.waits), 90), r.totals.usd, r.policy) for r in reports if r.waits]
    for p90, usd, name in points:
        frontier.scatter([max(p90, 0.1)], [usd])
        frontier.annotate(name, (max(p90, 0.1), usd), textcoords="offset points", xytext=(4, 4))
    front = pareto_front(points)
    frontier.plot(
        [max(p90, 0.1) for p90, _, _ in front],
        [usd for _, usd, _ in front],
        color="grey",
        linestyle="--",
        linewidth=0.8,
        label="frontier (no policy better on both)",
    )
    frontier.axvline(slo_s, color="grey", linestyle=":", linewidth=0.8)
    _log_x_panel(frontier, "cost against p90", "queue wait p90", "cost (USD)")
    figure.tight_layout()
    figure.savefig(out, dpi=100)
    plt.close(figure)


def _log_x_panel(axis: Any, title: str, seconds: str, ylabel: str) -> None:
    """Title, labels, grid and legend of a panel whose x axis is seconds on a log scale."""
    axis.set_xscale("log")
    axis.set_xlabel(f"{seconds} (s, log)")
    axis.set_ylabel(ylabel)
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend(loc="best", fontsize="small")
