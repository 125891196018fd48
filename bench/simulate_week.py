"""The issue-6 comparison: every policy on the generated one-week trace (seed 1), as shipped,
then ours with the tuned scaling documented in docs/simulator.md; prints the tables, the
noisy-neighbour isolation and the done-when checks.

    .venv/bin/python bench/simulate_week.py [--seed N] [--json FILE] [--plot FILE.png]

About 3 minutes on one core (the three planner-driven policies dominate).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from reconciler.simulate.parameters import SimulationParameters
from reconciler.simulate.policies import POLICY_NAMES
from reconciler.simulate.report import (
    PolicyReport,
    percentile,
    render_plot,
    render_text,
    run_policy,
)
from reconciler.simulate.trace import NOISY_REPOSITORY, generate_trace, read_trace, write_trace
from reconciler.spec.loader import SpecSet, load_specs

REPO = Path(__file__).resolve().parent.parent
WORKDAY = ["mon", "tue", "wed", "thu", "fri"]

#: idle runners per window (business 09-19, shoulders 07-09 and 19-23 Tokyo; none otherwise)
#: and the per-repository cap, found with this script; docs/simulator.md explains each choice
TUNED = {
    "enterprise-linux-large": {"business": 6, "shoulder": 2, "max_per_repository": 40},
    "platform-linux-dind": {"business": 3, "shoulder": 1, "max_per_repository": 10},
    "mobile-app-arm64": {"business": 2, "shoulder": 1, "max_per_repository": None},
}
#: empty instances kept 10 minutes instead of 2: a warm slot with the image cached starts a
#: runner in ~25 s, inside the SLO, for far less than an idle runner held all day
TUNED_PARAMETERS = {"empty_instance_grace_s": 600.0}


def tuned(spec_set: SpecSet) -> SpecSet:
    """The spec set with TUNED scaling (min 0, idle 0 outside the windows)."""
    from reconciler.spec.models import IdleSchedule, RunnerPool

    def window(start: str, end: str, idle: int) -> IdleSchedule:
        return IdleSchedule.model_validate(
            {"days": WORKDAY, "from": start, "to": end, "timezone": "Asia/Tokyo", "idle": idle}
        )

    resources = []
    for loaded in spec_set.resources:
        resource = loaded.resource
        if isinstance(resource, RunnerPool) and resource.metadata.name in TUNED:
            choice = TUNED[resource.metadata.name]
            schedules = [window("09:00", "19:00", choice["business"])]
            if choice["shoulder"]:
                schedules += [
                    window("07:00", "09:00", choice["shoulder"]),
                    window("19:00", "23:00", choice["shoulder"]),
                ]
            scaling = resource.spec.scaling.model_copy(
                update={
                    "min": 0,
                    "idle": 0,
                    "schedules": schedules,
                    "max_per_repository": choice["max_per_repository"],
                }
            )
            spec = resource.spec.model_copy(update={"scaling": scaling})
            resource = resource.model_copy(update={"spec": spec})
        resources.append(dataclasses.replace(loaded, resource=resource))
    return dataclasses.replace(spec_set, resources=resources)


def p90_without_noisy(report: PolicyReport) -> float:
    """Queue-wait p90 over every job but the noisy repository's."""
    waits = sorted(
        wait
        for name, values in report.by_repository.items()
        if name != NOISY_REPOSITORY
        for wait in values
    )
    return percentile(waits, 90)


def isolation(report: PolicyReport) -> tuple[float, str]:
    """The worst p90 of any repository but the noisy one."""
    repositories = report.to_json()["repositories"]
    return max((f["p90"], name) for name, f in repositories.items() if name != NOISY_REPOSITORY)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", metavar="FILE", help="also write every report as JSON")
    parser.add_argument("--plot", metavar="FILE.png")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "week.jsonl"
        with open(path, "w", encoding="utf-8") as out:
            write_trace(generate_trace(7, args.seed), out)
        jobs = read_trace(path)
    shipped = load_specs([REPO / "specs"])
    parameters = SimulationParameters()
    reports = []
    for name in POLICY_NAMES:
        print(f"running {name} ...", file=sys.stderr)
        reports.append(run_policy(name, jobs, shipped, parameters))
    print("running reconciler (tuned) ...", file=sys.stderr)
    ours = run_policy(
        "reconciler",
        jobs,
        tuned(shipped),
        SimulationParameters(**TUNED_PARAMETERS),
    )
    ours.policy = "reconciler-tuned"
    reports.append(ours)
    print(f"one-week trace, seed {args.seed}: {len(jobs)} jobs\n")
    print(render_text(reports))
    print(f"noisy-neighbour isolation: worst p90 of a repository other than {NOISY_REPOSITORY}")
    for report in reports:
        worst, name = isolation(report)
        print(
            f"  {report.policy:17} {worst:6.0f} s  ({name}); p90 of all other jobs "
            f"{p90_without_noisy(report):.0f} s"
        )
    print()
    print(done_when(reports))
    if args.json:
        document: dict[str, Any] = {"jobs": len(jobs), "policies": [r.to_json() for r in reports]}
        Path(args.json).write_text(json.dumps(document, indent=2) + "\n")
    if args.plot:
        render_plot(reports, args.plot)
    return 0


def done_when(reports: list[PolicyReport]) -> str:
    """The issue's targets for each of our variants, against every other policy."""
    figures = {r.policy: r.to_json() for r in reports}
    lines = []
    for ours in ("reconciler", "reconciler-tuned"):
        mine = figures[ours]
        p90, ratio = mine["queue_wait_s"]["p90"], mine["hours"]["idle_to_busy"]
        lines.append(
            f"{ours}: p90 {p90:.0f} s (target <= 30: {'met' if p90 <= 30 else 'MISSED'}), "
            f"idle/busy {100 * ratio:.0f}% (target <= 20%: {'met' if ratio <= 0.2 else 'MISSED'})"
        )
        for other, theirs in figures.items():
            if other.startswith("reconciler"):
                continue
            their_p90, their_ratio = theirs["queue_wait_s"]["p90"], theirs["hours"]["idle_to_busy"]
            better = (p90 < their_p90, ratio < their_ratio)
            worse = (p90 > their_p90, ratio > their_ratio)
            verdict = (
                "dominates"
                if any(better) and not any(worse)
                else ("trade-off" if any(better) else "dominated")
            )
            lines.append(
                f"  vs {other:12} p90 {their_p90:5.0f} s, idle/busy {100 * their_ratio:4.0f}%: "
                f"{verdict}"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
