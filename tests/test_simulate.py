"""`simulate`: the world's invariants, policies that differ as they should, the real planner
behind ours, report shape, and bad input. A one-day trace keeps it fast."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest

from reconciler.plan.planner import plan
from reconciler.simulate import policies
from reconciler.simulate.parameters import SimulationParameters
from reconciler.simulate.policies import (
    POLICY_NAMES,
    UnknownPolicy,
    make_policy,
    observed_world,
    planner_desired,
)
from reconciler.simulate.report import pareto_front, percentile, pools_time_zone, run_policy
from reconciler.simulate.trace import TraceJob, generate_trace, read_trace, write_trace
from reconciler.simulate.world import World
from reconciler.spec.loader import SpecSet, load_specs

from .conftest import run_cli as cli

pytestmark = [pytest.mark.e2e, pytest.mark.long]  # the CLI in processes, a day of six policies

REPO = Path(__file__).resolve().parent.parent
PARAMETERS = SimulationParameters()


@pytest.fixture(scope="module")
def trace_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("trace") / "day.jsonl"
    with open(path, "w") as out:
        write_trace(generate_trace(1, seed=3), out)
    return path


@pytest.fixture(scope="module")
def jobs(trace_file) -> list[TraceJob]:
    return read_trace(trace_file)


@pytest.fixture(scope="module")
def spec_set() -> SpecSet:
    return load_specs([REPO / "specs"])


@pytest.fixture(scope="module")
def worlds(jobs, spec_set) -> dict[str, World]:
    """Every policy run once on the day."""
    result = {}
    for name in POLICY_NAMES:
        world = run_policy(name, jobs, spec_set, PARAMETERS).world
        assert world is not None
        result[name] = world
    return result


@pytest.mark.parametrize("name", POLICY_NAMES)
def test_every_job_runs_once_on_its_own_runner_after_it_was_queued(worlds, name):
    world = worlds[name]
    assert world.jobs and all(job.pool is not None for job in world.jobs)
    runners = [job.runner for job in world.jobs]
    assert all(runner is not None for runner in runners)
    assert len({runner.id for runner in runners}) == len(world.jobs)  # ephemeral: one job each
    for job in world.jobs:
        assert job.started is not None and job.completed is not None
        assert job.started - job.trace.arrival >= PARAMETERS.job_dispatch_s
        assert job.completed == pytest.approx(job.started + job.trace.run_time)
        assert job.pool.demand.serves(job.record)
        assert job.runner.pool.demand.serves(job.record)
    assert world.waiting_count == 0


@pytest.mark.parametrize("name", POLICY_NAMES)
def test_hours_add_up(worlds, name):
    totals = worlds[name].totals
    assert totals.busy_s == pytest.approx(sum(job.trace.run_time for job in worlds[name].jobs))
    assert totals.idle_s >= 0 and totals.starting_s > 0 and totals.instance_s > 0
    assert totals.idle_s == pytest.approx(sum(totals.idle_s_by_pool.values()))


def test_policies_differ_as_their_designs_say(worlds):
    def p90(name: str) -> float:
        return percentile(sorted(j.started - j.trace.arrival for j in worlds[name].jobs), 90)

    idle = {name: world.totals.idle_s for name, world in worlds.items()}
    busy = worlds["static"].totals.busy_s
    # reactive keeps no idle pool: only runners started for a job another runner took idle
    assert idle["reactive"] < 0.01 * busy
    assert idle["static"] > 2 * busy  # sized for the peak, around the clock
    assert p90("static") < p90("reconciler") < p90("reactive")
    assert p90("tagr") >= PARAMETERS.tagr_queue_delay_s  # every cold job waits for the queue
    assert idle["reactive"] < idle["reconciler"] < idle["static"]
    # tagr: one instance per runner
    assert worlds["tagr"].totals.instances_launched == worlds["tagr"].totals.runners_started


def test_our_instances_boot_with_the_runner_images_others_pull_at_first_use(worlds):
    """The stack's user data pre-pulls the runner images (deploy/cloudformation), so room on
    a new instance is warm; ARC's and the others' new instances pull at the first runner."""
    provider = "linux-x64-large"
    kind = PARAMETERS.instance_type(provider)
    for name, cached in (
        ("reconciler", {"enterprise-linux-large"}),
        ("reactive", {"enterprise-linux-large"}),
        ("arc", set()),
    ):
        instance = worlds[name].launch_instances(provider, 1, kind, 60.0)[0]
        assert instance.images == cached, name


def test_ours_calls_the_real_planner_with_pending_demand(jobs, spec_set, monkeypatch):
    seen: list[int] = []

    def spy(desired, observed, runner_states, **kwargs):
        seen.append(sum(pool.pending for pool in desired.pools.values()))
        return plan(desired, observed, runner_states, **kwargs)

    monkeypatch.setattr(policies, "plan", spy)
    run_policy("reconciler", jobs[:200], spec_set, PARAMETERS)
    assert len(seen) > 10 and max(seen) > 0


def test_the_simulated_account_differs_from_the_specs_only_in_runner_tasks(spec_set):
    monday = datetime.datetime(2026, 3, 2, tzinfo=datetime.UTC)
    desired = planner_desired(spec_set, monday)
    result = plan(desired, observed_world(desired), {}, now=monday)
    assert result.actions
    assert {action.resource_type for action in result.actions} == {"runner_tasks"}
    assert not [note for note in result.notes if note.severity == "error"]


def test_unknown_policy_is_refused(spec_set):
    with pytest.raises(UnknownPolicy, match="choose from static"):
        make_policy("karpenter", spec_set, PARAMETERS)
    result = cli("simulate", "any.jsonl", "--policy", "karpenter")
    assert result.returncode == 1
    assert "invalid choice: 'karpenter'" in result.stderr


def test_json_output_has_one_object_per_policy(trace_file):
    result = cli(
        "simulate", str(trace_file), "--policy", "static", "--policy", "arc", "--format", "json"
    )
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert [item["policy"] for item in document["policies"]] == ["static", "arc"]
    for item in document["policies"]:
        assert set(item["queue_wait_s"]) == {"p50", "p90", "p99", "max", "jobs"}
        assert 0 <= item["slo"]["share_within"] <= 1 and item["slo"]["wait_s"] == 30
        assert {"busy_runner", "idle_runner", "instance", "idle_to_busy"} <= set(item["hours"])
        assert set(item["pools"]) == {
            "enterprise-linux-large",
            "platform-linux-dind",
            "mobile-app-arm64",
        }
        assert "acme/monorepo" in item["repositories"]
        assert item["queue_wait_s"]["jobs"] == document["jobs"]
    assert "simulate: arc: day 1" in result.stderr


def test_text_output_is_a_table(trace_file):
    result = cli("simulate", str(trace_file), "--policy", "static")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].split()[:4] == ["policy", "p50", "s", "p90"]
    assert "p90 s by repository" in result.stdout


def test_malformed_trace_is_an_error_with_file_and_line(tmp_path, trace_file):
    bad = tmp_path / "bad.jsonl"
    lines = trace_file.read_text().splitlines()
    bad.write_text("\n".join([lines[0], '{"action": "queued", "workflow_job": {}}', *lines[1:5]]))
    result = cli("simulate", str(bad))
    assert result.returncode == 1
    assert f"{bad}:2: workflow_job payload lacks field" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_missing_trace_and_empty_trace_are_errors(tmp_path):
    result = cli("simulate", str(tmp_path / "nope.jsonl"))
    assert result.returncode == 1 and "cannot read" in result.stderr
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    result = cli("simulate", str(empty))
    assert result.returncode == 1 and "no completed job" in result.stderr


def test_plot_writes_a_png(tmp_path, trace_file):
    """The wiring: two policies drawn (time series in the pools' zone, the queue-wait CDF,
    cost against p90); the pure parts are checked below."""
    pytest.importorskip("matplotlib")
    out = tmp_path / "plot.png"
    result = cli(
        "simulate", str(trace_file), "--policy", "static", "--policy", "tagr", "--plot", str(out)
    )
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def specs_in_two_time_zones(tmp_path: Path) -> Path:
    """The example specs (the large pool's schedule in Tokyo) with an objective window of the
    platform pool in Berlin."""
    specs = tmp_path / "specs"
    specs.mkdir()
    for path in (REPO / "specs").glob("*.yaml"):
        text = path.read_text()
        if path.name == "org-platform-dind.yaml":
            window = '\n      windows: [{days: [mon], from: "08:00", to: "18:00", timezone: Europe/Berlin}]'
            text = text.replace("percentile: 90", "percentile: 90" + window)
        (specs / path.name).write_text(text)
    return specs


def test_the_plot_reads_the_clock_of_the_pools_time_zone(spec_set, tmp_path):
    assert pools_time_zone(spec_set) == "Asia/Tokyo"  # the example specs' schedules
    assert pools_time_zone(spec_set, "Europe/Berlin") == "Europe/Berlin"
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        pools_time_zone(spec_set, "Mars/Olympus")
    berlin = specs_in_two_time_zones(tmp_path)
    with pytest.raises(ValueError, match=r"several time zones \(Asia/Tokyo, Europe/Berlin\)"):
        pools_time_zone(load_specs([berlin]))
    assert pools_time_zone(load_specs([berlin]), "UTC") == "UTC"


def test_plot_of_pools_in_several_time_zones_needs_one_named(tmp_path, trace_file):
    specs = specs_in_two_time_zones(tmp_path)
    out = tmp_path / "plot.png"
    args = ["simulate", str(trace_file), "--specs", str(specs), "--policy", "static"]
    result = cli(*args, "--plot", str(out))
    assert result.returncode == 1 and "pass --plot-timezone" in result.stderr
    assert not out.exists()


def test_the_frontier_is_the_policies_no_other_beats_on_both_p90_and_cost():
    points = [
        (2, 4755, "static"),
        (26, 1384, "reconciler"),
        (91, 967, "arc"),
        (123, 626, "tagr"),
        (188, 1083, "ecs-managed"),
        (26, 1500, "twin"),
    ]
    assert [name for _, _, name in pareto_front(points)] == ["static", "reconciler", "arc", "tagr"]
    assert pareto_front([(5, 5, "a"), (5, 5, "b")]) == [(5, 5, "a"), (5, 5, "b")]  # ties stay
    assert pareto_front([]) == []
