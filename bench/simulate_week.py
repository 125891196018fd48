"""The issue-18 comparison: every policy on two weeks, with cost in USD and the queue-wait SLO.

Weeks (each learned from its three weeks before, other seeds of the same shape, as the
controller's arrival store would have them):

- `generated`: the generator's week (seed 7 by default);
- `surge-storm`: a Monday-morning surge, a 03:00 JST cron storm every day, and
  `platform/e2e` firing ~400-job matrices into the shared organization pool (max 40).

Specs (`--specs`): `groups` (default), the team's design: `specs/capacity-providers.yaml`
with the pools of `docs/examples/groups/` (the shared organization pool's runner group admits
the organization's everyday repositories, `platform/e2e` has a group and pool of its own;
every pool is sized by its queue-wait objective alone, no hand-set idle floor; the enterprise
pool lets one repository take 80 runners); `shipped`: `specs/` as they are (one group admits
every repository; the objective over hand-set idle floors). Group access is GitHub's
dispatch rule, so every policy gets it alike.

Policies: the six of `simulate`, plus variants of ours: `reconciler-floors` (the objective
over the hand-set `min`, idle floors and schedules of the same pools in `specs/`: what the
floors add), `reconciler-p97` (the objective at percentile 97: the next point of the cost
frontier) and `reconciler-pooled` (`slo.largeRuns: false`: the objective on each pool's jobs
as a whole, no room held for matrices). `reconciler` runs the design as it is; the peers,
which have no objective, run it with the hand-set warm pools of `specs/` (the
`reconciler-floors` specs: ARC's minRunners, TAGR's idle pool and ecs-managed's floors are
those counts), as their users would set them.

    .venv/bin/python bench/simulate_week.py [--week generated|surge-storm|both]
        [--seed 7] [--storm-seed 7] [--specs groups|shipped] [--policy NAME ...] [--json FILE]

About 12 minutes for both weeks on one core (the planner-driven policies dominate).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from reconciler.simulate.parameters import SimulationParameters
from reconciler.simulate.policies import POLICY_NAMES
from reconciler.simulate.report import PolicyReport, percentile, render_text, run_policy
from reconciler.simulate.trace import (
    DEFAULT_START,
    MATRIX_REPOSITORY,
    NOISY_REPOSITORY,
    SHAPES,
    TraceJob,
    generate_trace,
    read_trace,
    write_trace,
)
from reconciler.spec.loader import SpecSet, load_specs
from reconciler.spec.models import RunnerPool

REPO = Path(__file__).resolve().parent.parent
HISTORY_WEEKS = 3
#: spec designs: the paths loaded (`groups` replaces the shared pool's file by the example)
SPEC_DESIGNS = {
    "shipped": [REPO / "specs"],
    "groups": [REPO / "specs" / "capacity-providers.yaml", REPO / "docs" / "examples" / "groups"],
}
#: the repository each week's "worst other repository" leaves out: the one whose bursts are
#: the week's point (generated: 40-80-job matrices; surge-storm: 400 jobs beyond max 40)
EXCLUDED = {"generated": NOISY_REPOSITORY, "surge-storm": MATRIX_REPOSITORY}
#: variant -> (objective percentile, or None: as the pools say; whether the hand-set idle
#: floors and schedules of the same pools in specs/ are added; slo.largeRuns)
VARIANTS: dict[str, tuple[float | None, bool, bool]] = {
    "reconciler-floors": (None, True, True),
    "reconciler-p97": (97, False, True),
    "reconciler-pooled": (None, False, False),
}


def week(shape: str, seed: int, weeks_before: int = 0) -> list[TraceJob]:
    """Seven days of the shape, `weeks_before` weeks before DEFAULT_START."""
    start = DEFAULT_START - datetime.timedelta(weeks=weeks_before)
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "week.jsonl"
        with open(path, "w", encoding="utf-8") as out:
            write_trace(generate_trace(7, seed, start, SHAPES[shape]), out)
        return read_trace(path)


def history(shape: str, seed: int) -> list[TraceJob]:
    """The weeks before: other draws (seeds) of the same shape, so recurring parts recur."""
    return [
        job
        for before in range(1, HISTORY_WEEKS + 1)
        for job in week(shape, seed * 1000 + before, before)
    ]


def variant(
    spec_set: SpecSet, percentile_: float | None, floors: bool, large_runs: bool
) -> SpecSet:
    """The spec set with every objective at another percentile (None: unchanged) and
    `largeRuns` as given and, with `floors`, each pool's `min`, `idle` and `schedules` taken
    from its namesake in specs/."""
    shipped = {pool.metadata.name: pool.spec.scaling for pool in load_design("shipped").pools}
    resources = []
    for loaded in spec_set.resources:
        resource = loaded.resource
        if isinstance(resource, RunnerPool) and resource.spec.scaling.slo is not None:
            scaling = resource.spec.scaling
            objective: dict[str, Any] = {"large_runs": large_runs}
            if percentile_ is not None:
                objective["percentile"] = percentile_
            update: dict[str, Any] = {"slo": scaling.slo.model_copy(update=objective)}
            hand_set = shipped.get(resource.metadata.name)
            if floors and hand_set is not None:
                update.update(min=hand_set.min, idle=hand_set.idle, schedules=hand_set.schedules)
            spec = resource.spec.model_copy(update={"scaling": scaling.model_copy(update=update)})
            resource = resource.model_copy(update={"spec": spec})
        resources.append(dataclasses.replace(loaded, resource=resource))
    return dataclasses.replace(spec_set, resources=resources)


def worst_other(report: PolicyReport, excluded: str) -> tuple[float, str]:
    """The worst p90 of any repository but `excluded`."""
    repositories = report.to_json()["repositories"]
    return max((f["p90"], name) for name, f in repositories.items() if name != excluded)


def load_design(design: str) -> SpecSet:
    """The spec set of a design (SPEC_DESIGNS); refuses one with errors."""
    spec_set = load_specs(SPEC_DESIGNS[design])
    if spec_set.errors:
        raise SystemExit("\n".join(str(error) for error in spec_set.errors))
    return spec_set


def run_week(shape: str, seed: int, names: list[str], design: str) -> list[PolicyReport]:
    jobs, learned = week(shape, seed), history(shape, seed)
    shipped = load_design(design)
    parameters = SimulationParameters()
    specs = {name: variant(shipped, *settings) for name, settings in VARIANTS.items()}
    reports = []
    for name in names:
        print(f"{shape}: running {name} ...", file=sys.stderr, flush=True)
        policy = "reconciler" if name in VARIANTS else name
        # the peers have no objective: they get the hand-set warm pools of specs/
        spec_set = shipped if name == "reconciler" else specs.get(name, specs["reconciler-floors"])
        report = run_policy(policy, jobs, spec_set, parameters, history=learned)
        report.policy = name
        reports.append(report)
    print(
        f"## week {shape} (seed {seed}, specs {design}): {len(jobs)} jobs, learned from "
        f"{len(learned)} jobs"
    )
    print(f"of the {HISTORY_WEEKS} weeks before\n")
    print(summary(reports, EXCLUDED[shape]))
    print(render_text(reports))
    print(done_when(shape, reports))
    print()
    return reports


def summary(reports: list[PolicyReport], excluded: str) -> str:
    """The issue's table: p90, worst other-repository p90, idle and instance hours, USD."""
    lines = [
        f"{'policy':18} {'p90 s':>6} {'worst other p90 s':>24} {'busy h':>7} {'idle h':>7} "
        f"{'idle/busy':>9} {'instance h':>10} {'USD':>7}",
    ]
    for report in reports:
        item = report.to_json()
        hours = item["hours"]
        worst, name = worst_other(report, excluded)
        lines.append(
            f"{report.policy:18} {item['queue_wait_s']['p90']:6.0f} "
            f"{worst:6.0f} ({name[:15]:>15}) {hours['busy_runner']:7.0f} "
            f"{hours['idle_runner']:7.0f} {100 * hours['idle_to_busy']:8.0f}% "
            f"{hours['instance']:10.0f} {item['cost_usd']:7.0f}"
        )
    without = [f"{r.policy} {p90_without(r, excluded):.0f} s" for r in reports if r.by_repository]
    lines.append(f"p90 of all jobs but {excluded}'s: " + ", ".join(without))
    return "\n".join(lines) + "\n"


def p90_without(report: PolicyReport, excluded: str) -> float:
    waits = sorted(
        wait for name, values in report.by_repository.items() if name != excluded for wait in values
    )
    return percentile(waits, 90)


def done_when(shape: str, reports: list[PolicyReport]) -> str:
    """The issue's targets for this week, for `reconciler` against every other policy."""
    figures = {r.policy: r.to_json() for r in reports}
    ours = figures.get("reconciler")
    if ours is None:
        return "(reconciler not run)"
    p90, ratio = ours["queue_wait_s"]["p90"], ours["hours"]["idle_to_busy"]
    idle = ours["hours"]["idle_runner"]
    lines = []
    if shape == "generated":
        lines.append(
            f"target: p90 {p90:.0f} s <= 30 s: {'met' if p90 <= 30 else 'MISSED'}; "
            f"idle {100 * ratio:.0f}% of busy <= 25%: {'met' if ratio <= 0.25 else 'MISSED'}"
        )
    else:
        mine = next(r for r in reports if r.policy == "reconciler")
        worst, name = worst_other(mine, EXCLUDED[shape])
        lines.append(
            f"target: every repository but {EXCLUDED[shape]} <= 30 s at p90: worst {name} "
            f"{worst:.0f} s: {'met' if worst <= 30 else 'MISSED'}"
        )
        for rival in ("arc", "tagr"):
            if rival in figures:
                theirs = figures[rival]["hours"]["idle_runner"]
                verdict = "met" if idle < theirs else "MISSED"
                lines.append(f"target: idle {idle:.0f} h < {rival} {theirs:.0f} h: {verdict}")
    for other, theirs in figures.items():
        if other == "reconciler":
            continue
        their_p90, their_idle = theirs["queue_wait_s"]["p90"], theirs["hours"]["idle_runner"]
        their_usd, usd = theirs["cost_usd"], ours["cost_usd"]
        better = their_p90 < p90 and their_idle < idle
        lines.append(
            f"  vs {other:18} p90 {their_p90:5.0f} s, idle {their_idle:5.0f} h, "
            f"USD {their_usd:6.0f} (ours {usd:.0f}): "
            f"{'BETTER ON BOTH p90 and idle' if better else 'not better on both'}"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--week", choices=("generated", "surge-storm", "both"), default="both")
    parser.add_argument("--seed", type=int, default=7, help="generated week's seed")
    parser.add_argument("--storm-seed", type=int, default=7, help="surge-storm week's seed")
    parser.add_argument("--specs", choices=sorted(SPEC_DESIGNS), default="groups")
    parser.add_argument("--policy", action="append", help="policies (default: all + variants)")
    parser.add_argument("--json", metavar="FILE", help="also write every report as JSON")
    args = parser.parse_args()
    names = args.policy or [*POLICY_NAMES, *VARIANTS]
    weeks = ("generated", "surge-storm") if args.week == "both" else (args.week,)
    document: dict[str, Any] = {}
    for shape in weeks:
        seed = args.seed if shape == "generated" else args.storm_seed
        reports = run_week(shape, seed, names, args.specs)
        document[shape] = [r.to_json() for r in reports]
    if args.json:
        Path(args.json).write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
