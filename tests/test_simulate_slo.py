"""The simulator's cost in USD, the queue-wait objective in the `reconciler` policy (learned
from earlier weeks, spare room kept by the modelled autoscaler), and the surge-storm week."""

from __future__ import annotations

import datetime
import math
from collections import Counter
from pathlib import Path

import pytest

from reconciler.simulate.parameters import InstanceType, SimulationParameters
from reconciler.simulate.policies import BinPackScaler, PlannerPolicy, make_policy
from reconciler.simulate.report import run_policy
from reconciler.simulate.trace import (
    DEFAULT_START,
    MATRIX_REPOSITORY,
    SHAPES,
    TRACE_TIMEZONE,
    TraceJob,
    generate_trace,
    read_trace,
    write_trace,
)
from reconciler.simulate.world import SimPool, World
from reconciler.spec.loader import SpecSet, load_specs

from .conftest import run_cli as cli

pytestmark = pytest.mark.e2e  # simulations of a day and CLI processes: slower than units

REPO = Path(__file__).resolve().parent.parent


def trace(tmp_path: Path, days: int, seed: int, start=DEFAULT_START, shape="generated"):
    path = tmp_path / f"{shape}-{seed}-{start:%Y%m%d}.jsonl"
    with open(path, "w") as out:
        write_trace(generate_trace(days, seed, start, SHAPES[shape]), out)
    return path


@pytest.fixture(scope="module")
def spec_set() -> SpecSet:
    return load_specs([REPO / "specs"])


# ---------------------------------------------------------------- cost


@pytest.mark.parametrize(
    ("overrides", "kind", "usd"),
    [
        ({}, InstanceType("m6i.4xlarge", 16384, 63_400), 0.992),
        ({"spot_share": 1.0}, InstanceType("m6i.4xlarge", 16384, 63_400), 0.992 * 0.35),
        ({"spot_share": 0.5, "spot_discount": 0.6}, InstanceType("m7g.xlarge", 4096, 1), 0.1466),
        # an unlisted type (tagr's one-job instance) is priced per vCPU
        ({}, InstanceType("pool (sized to one job)", 2048, 4096), 2 * 0.062),
        ({"instance_prices_usd": {"m6i.4xlarge": 1.5}}, InstanceType("m6i.4xlarge", 1, 1), 1.5),
    ],
)
def test_usd_per_instance_hour(overrides, kind: InstanceType, usd: float) -> None:
    assert SimulationParameters(**overrides).usd_per_hour(kind) == pytest.approx(usd, rel=1e-3)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"spot_share": 1.5}, "spot share"),
        ({"spot_discount": 1.0}, "spot discount"),
        ({"instance_prices_usd": {"m6i.large": -1.0}}, "prices must be >= 0"),
    ],
)
def test_bad_cost_parameters_are_refused(overrides, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SimulationParameters(**overrides)


def test_usd_is_instance_hours_at_their_price(tmp_path, spec_set) -> None:
    jobs = read_trace(trace(tmp_path, 1, 3))
    report = run_policy("static", jobs, spec_set, SimulationParameters())
    hours = report.totals.instance_s / 3600
    # static launches every instance up front: each provider's type, priced as listed
    assert 0.2 * hours < report.totals.usd < 1.0 * hours
    spot = run_policy("static", jobs, spec_set, SimulationParameters(spot_share=1.0))
    assert spot.totals.usd == pytest.approx(report.totals.usd * 0.35, rel=1e-6)
    assert report.to_json()["cost_usd"] == round(report.totals.usd, 2)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--price", "m6i.2xlarge"), "expected TYPE=USD per hour"),
        (("--price", "=1.0"), "the instance type is missing"),
        (("--spot-share", "2"), "spot share must be within 0..1"),
        (("--history", "missing.jsonl"), "cannot read missing.jsonl"),
    ],
)
def test_bad_cost_and_history_options_are_errors(tmp_path, args, message: str) -> None:
    path = trace(tmp_path, 1, 3)
    specs = str(REPO / "specs")
    result = cli("simulate", str(path), "--specs", specs, "--policy", "static", *args, cwd=tmp_path)
    assert result.returncode == 1, result.stdout
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_the_text_report_has_a_usd_column(tmp_path) -> None:
    path = trace(tmp_path, 1, 3)
    result = cli("simulate", str(path), "--policy", "static", "--price", "m6i.4xlarge=2")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].split()[-1] == "USD"


# ---------------------------------------------------------------- the objective in `reconciler`


def test_reconciler_learns_from_history_and_keeps_spare_room(tmp_path, spec_set) -> None:
    """A Monday learned from the week before: room is kept at business hours, none at night;
    the reactive policy ignores the objective."""
    monday = read_trace(trace(tmp_path, 1, 3))
    before = read_trace(trace(tmp_path, 7, 4, DEFAULT_START - datetime.timedelta(weeks=1)))
    parameters = SimulationParameters()
    policy = make_policy("reconciler", spec_set, parameters, before)
    assert isinstance(policy, PlannerPolicy) and isinstance(policy.instances, BinPackScaler)
    rooms: list[tuple[int, int]] = []
    cycle = policy._cycle

    def watched() -> None:
        cycle()
        hour = policy.world.datetime().astimezone(TRACE_TIMEZONE).hour
        rooms.append((hour, sum(policy.instances.spare_room.values())))

    policy._cycle = watched  # type: ignore[method-assign]
    world = World(monday, [SimPool.of(p) for p in spec_set.pools], policy, parameters)
    world.run()
    assert all(job.started is not None for job in world.jobs if job.pool is not None)
    business = [room for hour, room in rooms if 10 <= hour < 18]
    night = [room for hour, room in rooms if 1 <= hour < 5]
    assert business and min(business) > 0
    assert night and sum(business) / len(business) > 1.5 * sum(night) / len(night)
    reactive = make_policy("reactive", spec_set, parameters, before)
    assert isinstance(reactive, PlannerPolicy) and not reactive.slo_pools


# ---------------------------------------------------------------- the surge-storm week


def test_surge_storm_week_has_its_surge_storms_and_matrices(tmp_path) -> None:
    week = read_trace(trace(tmp_path, 7, 7, shape="surge-storm"))
    plain = read_trace(trace(tmp_path, 7, 7))
    local = lambda job: datetime.datetime.fromtimestamp(job.arrival, TRACE_TIMEZONE)  # noqa: E731

    def storm(jobs: list[TraceJob]) -> Counter[int]:
        return Counter(
            local(j).day for j in jobs if (local(j).hour, local(j).minute) in ((3, 0), (3, 1))
        )

    assert len(storm(week)) == 7 and min(storm(week).values()) >= 40  # every day, 03:00
    assert sum(storm(plain).values()) < 10

    def monday_morning(jobs: list[TraceJob]) -> int:
        return sum(1 for j in jobs if local(j).weekday() == 0 and 9 <= local(j).hour < 11)

    assert monday_morning(week) > 2 * monday_morning(plain)
    runs = Counter(j.event.run_id for j in week if j.event.repository == MATRIX_REPOSITORY)
    matrices = [size for size in runs.values() if size >= 300]
    assert len(matrices) >= 5 and all(380 <= size <= 420 for size in matrices)
    assert math.isclose(len(week) / len(plain), 1.4, rel_tol=0.15)
