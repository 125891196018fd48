"""Running policies on a trace and reporting: queue-wait percentiles, hours, SLO share.

`simulate` runs each named policy on the same jobs; `PolicyReport.to_json` is the `--format
json` object of one policy; `render_text` prints the comparison tables; `render_plot` draws
queued jobs, runners and instances over time (needs matplotlib, the `plot` extra).
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
        if job.pool is None or job.started is None:
            report.unserved += 1
            continue
        wait = job.started - job.trace.arrival
        report.waits.append(wait)
        report.by_pool.setdefault(job.pool.name, []).append(wait)
        report.busy_by_pool[job.pool.name] = (
            report.busy_by_pool.get(job.pool.name, 0.0) + job.trace.run_time
        )
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


def render_plot(reports: Sequence[PolicyReport], out: str | Path) -> None:
    """A PNG of queued jobs, runners and instances over time, one line per policy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(3, 1, figsize=(14, 10), sharex=True)
    titles = ("queued jobs", "runner tasks", "instances")
    for report in reports:
        samples = report.totals.samples
        times = [datetime.datetime.fromtimestamp(s[0], datetime.UTC) for s in samples]
        for axis, column in zip(axes, (1, 2, 4), strict=True):
            axis.plot(times, [s[column] for s in samples], label=report.policy, linewidth=0.8)
    for axis, title in zip(axes, titles, strict=True):
        axis.set_ylabel(title)
        axis.grid(alpha=0.3)
    axes[0].legend(loc="upper right", ncol=len(reports))
    axes[-1].set_xlabel("time (UTC)")
    figure.tight_layout()
    figure.savefig(out, dpi=100)
    plt.close(figure)
