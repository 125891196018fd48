"""Spot interruptions in the simulator: notices, draining, reclaim; what each policy loses.

Pure (no server): four hours of the generated trace on the example specs, every instance spot
with a harsh interruption rate, so that a few dozen jobs see several interruptions."""

from __future__ import annotations

import pytest

from reconciler.simulate.parameters import SimulationParameters
from reconciler.simulate.report import render_text, run_policy
from reconciler.simulate.trace import TraceJob, generate_trace, read_trace, write_trace
from reconciler.simulate.world import World
from reconciler.spec.loader import load_specs

from .conftest import REPO

HARSH = SimulationParameters(spot_share=1.0, spot_interruptions_per_hour=0.5)


@pytest.fixture(scope="module")
def jobs(tmp_path_factory) -> list[TraceJob]:
    path = tmp_path_factory.mktemp("trace") / "day.jsonl"
    with open(path, "w") as out:
        write_trace(generate_trace(1, seed=3), out)
    day = read_trace(path)
    return [job for job in day if job.arrival < day[0].arrival + 4 * 3600]


def run(jobs: list[TraceJob], policy: str, parameters: SimulationParameters) -> World:
    world = run_policy(policy, jobs, load_specs([REPO / "specs"]), parameters).world
    assert world is not None
    return world


def test_without_an_interruption_rate_nothing_is_reclaimed(jobs) -> None:
    totals = run(jobs, "arc", SimulationParameters(spot_share=1.0)).totals
    assert (totals.spot_interruptions, totals.jobs_interrupted, totals.idle_reclaimed) == (0, 0, 0)


@pytest.mark.parametrize("policy", ["reconciler", "arc", "static"])
def test_reclaimed_instances_fail_their_jobs_and_every_other_job_completes(jobs, policy) -> None:
    world = run(jobs, policy, HARSH)
    totals = world.totals
    assert world.done and totals.spot_interruptions > 0
    interrupted = [job for job in world.jobs if job.interrupted]
    assert len(interrupted) == totals.jobs_interrupted
    for job in world.jobs:
        assert job.started is not None and job.completed is not None
        if not job.interrupted:  # ran to its end
            assert job.completed == pytest.approx(job.started + job.trace.run_time)


def test_the_reconciler_replaces_idle_runners_at_the_notice_others_lose_them(jobs) -> None:
    # the planner sees the DRAINING instance and stops its idle runners at once (replacing
    # them elsewhere); ARC reacts only once the node is gone, a static fleet not at all
    assert run(jobs, "reconciler", HARSH).totals.idle_reclaimed == 0
    assert run(jobs, "arc", HARSH).totals.idle_reclaimed > 0
    assert run(jobs, "static", HARSH).totals.idle_reclaimed > 0


def test_a_negative_interruption_rate_is_refused() -> None:
    with pytest.raises(ValueError, match="spot interruptions per hour"):
        SimulationParameters(spot_interruptions_per_hour=-1)


def test_the_report_says_what_interruptions_cost(jobs) -> None:
    spec_set = load_specs([REPO / "specs"])
    report = run_policy("arc", jobs, spec_set, HARSH)
    spot = report.to_json()["spot"]
    assert spot["interruptions"] > 0 and spot["jobs_interrupted"] >= 0
    assert "spot interruptions: arc:" in render_text([report])
