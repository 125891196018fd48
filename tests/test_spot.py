"""Spot capacity with an on-demand fallback: the spec rules, the placement decision and spot
draining (pure), then one end-to-end run on moto (launch failures injected -> runners on the
on-demand provider within one cycle -> back to spot; an interrupted instance's idle runners
replaced, its busy one kept)."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.aws.executor import Executor
from reconciler.aws.observe import Observer
from reconciler.clock import utc_now
from reconciler.plan.desired import render_desired
from reconciler.plan.guard import GuardPolicy, refused_actions
from reconciler.plan.planner import plan
from reconciler.plan.spot import spot_placement
from reconciler.plan.state import (
    DesiredState,
    LaunchActivity,
    ObservedState,
    RunnerState,
    mixed_instances_of,
)
from reconciler.reconcile import Cycle, plan_cycle
from reconciler.sandbox.runners import TaskTagRunnerStates
from reconciler.sandbox.scenario import Sandbox
from reconciler.sandbox.server import MotoServer
from reconciler.spec.loader import load_specs
from tests.conftest import CAPACITY_PROVIDER, POOL, REPO
from tests.test_planner import converged, revision_of, runners

SPOT_GROUP = "ci-spot"
ONDEMAND_GROUP = "ci-linux"
SPOT_PROVIDER = (
    CAPACITY_PROVIDER.replace("name: linux", "name: spot").replace("ci-linux", SPOT_GROUP)
    + "  mixedInstances:\n    instanceTypes: [m6i.2xlarge, m5.2xlarge, m6a.2xlarge]\n"
)
SPOT_POOL = POOL.replace(
    "capacityProvider: linux",
    "capacityProvider: spot\n  spot:\n    fallbackCapacityProvider: linux\n    retryAfter: 10m",
)
NOW = datetime.datetime(2026, 11, 30, 10, 0, tzinfo=datetime.UTC)
T = NOW.timestamp()


# ------------------------------------------------------------------ spec rules


@pytest.mark.parametrize(
    ("pool", "providers", "message"),
    [
        (POOL.replace("capacityProvider: linux", "capacityProvider: spot"), "", "launches spot"),
        (
            POOL.replace(
                "capacityProvider: linux",
                "capacityProvider: linux\n  spot:\n    fallbackCapacityProvider: spot",
            ),
            "",
            "has no mixedInstances",
        ),
        (
            SPOT_POOL.replace("fallbackCapacityProvider: linux", "fallbackCapacityProvider: x"),
            "",
            "no CapacityProvider named 'x'",
        ),
        (
            SPOT_POOL.replace("fallbackCapacityProvider: linux", "fallbackCapacityProvider: spot"),
            "",
            "another (on-demand) capacity provider",
        ),
        (
            SPOT_POOL.replace("fallbackCapacityProvider: linux", "fallbackCapacityProvider: s2"),
            SPOT_PROVIDER.replace("name: spot", "name: s2").replace(SPOT_GROUP, "ci-s2"),
            "launches spot instances too",
        ),
        (
            SPOT_POOL,
            "",
            "",
        ),
    ],
)
def test_spot_placement_contradictions_are_clear_errors(
    spec_dir, pool: str, providers: str, message: str
) -> None:
    files = {"cp.yaml": CAPACITY_PROVIDER, "spot.yaml": SPOT_PROVIDER, "pool.yaml": pool}
    if providers:
        files["more.yaml"] = providers
    errors = [str(e) for e in load_specs([spec_dir(files)]).errors]
    if not message:
        assert errors == []
    else:
        assert any(message in error for error in errors), errors


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ("instanceTypes: [m6i.2xlarge, m5.2xlarge, m6a.2xlarge]", ""),
        ("instanceTypes: [m6i.2xlarge]", "at least 2"),
        ("instanceTypes: [m6i.2xlarge, m6i.2xlarge]", "listed twice"),
        (
            "instanceTypes: [m6i.2xlarge, m5.2xlarge]\n    onDemandPercentageAboveBaseCapacity: 100",
            "launches no spot",
        ),
    ],
)
def test_mixed_instances_is_validated(spec_dir, edit: str, message: str) -> None:
    text = SPOT_PROVIDER.replace("instanceTypes: [m6i.2xlarge, m5.2xlarge, m6a.2xlarge]", edit)
    errors = [str(e) for e in load_specs([spec_dir({"spot.yaml": text})]).errors]
    assert (errors == []) if not message else (len(errors) == 1 and message in errors[0]), errors


def test_the_documented_spot_example_validates_with_the_example_specs() -> None:
    spec_set = load_specs([REPO / "specs", REPO / "docs" / "examples" / "spot"])
    assert spec_set.ok, [str(e) for e in spec_set.errors]
    assert "platform-linux-spot" in {p.metadata.name for p in spec_set.pools}


# ------------------------------------------------------------------ placement (pure)


def desired_state(spec_dir, pool: str = SPOT_POOL) -> DesiredState:
    specs = spec_dir({"cp.yaml": CAPACITY_PROVIDER, "spot.yaml": SPOT_PROVIDER, "pool.yaml": pool})
    spec_set = load_specs([specs])
    assert spec_set.ok, spec_set.errors
    return render_desired(spec_set, NOW, "us-east-1")


FAILED = LaunchActivity(
    "Failed", T - 60, "Could not launch Spot Instances. InsufficientInstanceCapacity"
)


@pytest.mark.parametrize(
    ("activities", "provider", "says"),
    [
        ((), "spot", ""),  # nothing launched lately
        ((FAILED,), "linux", "spot cannot launch"),
        ((LaunchActivity("Cancelled", T - 60),), "linux", "spot cannot launch"),
        # a launch succeeded after the failure: spot launches again
        ((LaunchActivity("Successful", T - 30), FAILED), "spot", ""),
        # an older success does not cancel a newer failure
        ((FAILED, LaunchActivity("Successful", T - 300)), "linux", "spot cannot launch"),
        # the back-off (retryAfter 10m) has passed without a new failure: spot again
        ((LaunchActivity("Failed", T - 601, "x"),), "spot", "spot tried again"),
        ((LaunchActivity("Failed", T - 599, "x"),), "linux", "spot cannot launch"),
        ((LaunchActivity("InProgress", T - 5),), "spot", ""),
    ],
)
def test_new_runners_go_to_the_fallback_while_spot_cannot_launch(
    spec_dir, activities: tuple[LaunchActivity, ...], provider: str, says: str
) -> None:
    desired = desired_state(spec_dir)
    observed = ObservedState(launch_activities={SPOT_GROUP: activities})
    placement = spot_placement(desired.pools["pool-a"], desired, observed, T)
    assert placement.provider == provider
    assert (says in placement.reason) if says else placement.reason == ""


def test_a_pool_without_spot_stays_on_its_provider_whatever_the_activities(spec_dir) -> None:
    desired = desired_state(spec_dir, POOL)
    observed = ObservedState(launch_activities={ONDEMAND_GROUP: (FAILED,)})
    assert spot_placement(desired.pools["pool-a"], desired, observed, T).provider == "linux"


def test_the_plan_places_new_runners_on_the_fallback_and_says_why(spec_dir) -> None:
    desired = desired_state(spec_dir)
    observed = dataclasses.replace(
        converged(desired, ""), launch_activities={SPOT_GROUP: (FAILED,)}
    )
    result = plan(desired, observed, {}, NOW)
    (run,) = [a for a in result.actions if a.action == "run"]
    assert run.after["capacityProvider"] == "linux"
    assert "on linux (spot fallback)" in run.reason
    assert any("spot cannot launch" in n.message and n.pool == "pool-a" for n in result.notes)


def group_policy(types: list[str], base: int = 0, above: int | None = 0) -> dict:
    """A MixedInstancesPolicy as DescribeAutoScalingGroups answers it."""
    distribution = {
        "OnDemandBaseCapacity": base,
        "SpotAllocationStrategy": "price-capacity-optimized",
    }
    if above is not None:
        distribution["OnDemandPercentageAboveBaseCapacity"] = above
    return {
        "LaunchTemplate": {"Overrides": [{"InstanceType": t} for t in types]},
        "InstancesDistribution": distribution,
    }


STACK_TYPES = ["m6i.2xlarge", "m5.2xlarge", "m6a.2xlarge"]


@pytest.mark.parametrize(
    ("groups", "says"),
    [
        ({SPOT_GROUP: group_policy(STACK_TYPES), ONDEMAND_GROUP: None}, ""),
        ({SPOT_GROUP: None}, "the spec says spot (mixedInstances) but the group has no"),
        ({SPOT_GROUP: group_policy(STACK_TYPES[:2])}, "instanceTypes differ"),
        # the API's default above the base is 100% on-demand: no spot at all
        ({SPOT_GROUP: group_policy(STACK_TYPES, above=None)}, "onDemandPercentageAboveBase"),
        ({ONDEMAND_GROUP: group_policy(STACK_TYPES)}, "the spec does not state"),
    ],
)
def test_a_group_that_does_not_launch_what_mixed_instances_says_is_a_warning(
    spec_dir, groups: dict, says: str
) -> None:
    desired = desired_state(spec_dir)
    mixed = {name: mixed_instances_of(policy) for name, policy in groups.items()}
    result = plan(desired, dataclasses.replace(converged(desired), mixed_instances=mixed), {}, NOW)
    warnings = [n.message for n in result.notes if "Auto Scaling group" in n.message]
    assert (len(warnings) == 1 and says in warnings[0]) if says else warnings == [], warnings


def test_idle_runners_on_a_draining_instance_are_replaced_busy_ones_kept(spec_dir) -> None:
    desired = desired_state(spec_dir, SPOT_POOL.replace("idle: 1", "idle: 3"))
    # idle, busy and idle on the interrupted instance, one idle runner on another
    tasks, states = runners(desired, "pool-a", "ibii", revision_of(desired, "pool-a"))
    hosts = ["arn:ci/draining"] * 3 + ["arn:ci/healthy"]
    tasks = [
        dataclasses.replace(t, container_instance_arn=host)
        for t, host in zip(tasks, hosts, strict=True)
    ]
    observed = dataclasses.replace(
        converged(desired, ""), tasks=tasks, draining_instances={"arn:ci/draining"}
    )
    result = plan(desired, observed, states, NOW)
    runner_actions = [a for a in result.actions if a.resource_type == "runner_tasks"]
    (stop,) = [a for a in runner_actions if a.action == "stop"]
    assert stop.task_arns == (tasks[0].arn, tasks[2].arn)
    assert "draining" in stop.reason
    (run,) = [a for a in runner_actions if a.action == "run"]
    # 1 idle runner left on a healthy instance; the idle target is 3: two more start
    assert run.count == 2
    (note,) = [n for n in result.notes if "draining" in n.message]
    assert "busy (1)" in note.message and "never stopped" in note.message


# ------------------------------------------------------------------ on moto

SANDBOX_POOL = (
    SPOT_POOL.replace("subnet-0123456789abcdef0", "ci-private-a")
    .replace("sg-0123456789abcdef0", "ci-egress")
    .replace("idle: 1", "idle: 9")
    .replace("max: 10", "max: 20")
)
RECONCILER_SCALED = "  scaling: reconciler\n  minInstanceLifetime: 0\n"


@pytest.fixture
def specs(spec_dir) -> Path:
    return spec_dir(
        {
            # the on-demand group keeps its 2 empty instances (minInstanceLifetime 600 s)
            "cp.yaml": CAPACITY_PROVIDER + "  scaling: reconciler\n",
            "spot.yaml": SPOT_PROVIDER + RECONCILER_SCALED,
            "pool.yaml": SANDBOX_POOL,
        }
    )


@pytest.fixture
def sandbox(specs: Path, moto_server: MotoServer) -> Iterator[Sandbox]:
    """The agent acts only on tick(): the test steps instance registration itself."""
    with Sandbox([specs], server=moto_server, agent_interval=None) as running:
        yield running


def cycle_and_apply(sandbox: Sandbox, specs: Path) -> Cycle:
    clients = sandbox.clients()
    states = TaskTagRunnerStates(clients)
    cycle = plan_cycle([specs], Observer(clients), states, utc_now())
    refused = refused_actions(cycle.plan, GuardPolicy(max_stop_share=1.0))
    result = Executor(clients, cycle.observed, states).apply(cycle.plan, refused)
    assert result.ok, result.failed
    sandbox.tick()  # new instances register, new runners come online (idle)
    return cycle


def runners_by_provider(sandbox: Sandbox) -> dict[str, int]:
    ecs = sandbox.clients().ecs
    arns = ecs.list_tasks(cluster="ci", desiredStatus="RUNNING")["taskArns"]
    counts: dict[str, int] = {}
    for described in ecs.describe_tasks(cluster="ci", tasks=arns)["tasks"] if arns else []:
        provider = described.get("capacityProviderName", "")
        counts[provider] = counts.get(provider, 0) + 1
    return counts


def test_spot_launch_failures_move_new_runners_to_on_demand_and_back(
    sandbox: Sandbox, specs: Path
) -> None:
    # both groups start with 2 instances (room for 6 runners each); the pool wants 9
    autoscaling = sandbox.clients().autoscaling
    (group,) = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[SPOT_GROUP])[
        "AutoScalingGroups"
    ]
    overrides = group["MixedInstancesPolicy"]["LaunchTemplate"]["Overrides"]  # the stack's
    assert [o["InstanceType"] for o in overrides] == ["m6i.2xlarge", "m5.2xlarge", "m6a.2xlarge"]
    sandbox.fail_spot_launches(SPOT_GROUP)
    first = cycle_and_apply(sandbox, specs)  # 9 asked on spot: 6 placed, 1 instance more
    scale_out = [a for a in first.plan.actions if a.address == f"auto_scaling_group.{SPOT_GROUP}"]
    assert scale_out and scale_out[0].after == {"desiredCapacity": 3}
    assert runners_by_provider(sandbox) == {"spot": 6}  # the launch failed: no room for 3
    assert not any("mixed instances" in n.message for n in first.plan.notes)  # as the spec

    second = cycle_and_apply(sandbox, specs)  # the failed activity is seen: fallback
    (run,) = [a for a in second.plan.actions if a.action == "run"]
    assert run.after["capacityProvider"] == "linux" and run.count == 3
    assert any("spot cannot launch" in n.message for n in second.plan.notes)
    assert runners_by_provider(sandbox) == {"spot": 6, "linux": 3}

    activities = autoscaling.describe_scaling_activities(AutoScalingGroupName=SPOT_GROUP)
    newest = activities["Activities"][0]
    assert newest["StatusCode"] == "Failed" and "Spot capacity" in newest["StatusMessage"]
    sandbox.restore_spot_launches(SPOT_GROUP)  # the group launches its third instance
    sandbox.tick()
    (specs / "pool.yaml").write_text(SANDBOX_POOL.replace("idle: 9", "idle: 12"))
    third = cycle_and_apply(sandbox, specs)
    (run,) = [a for a in third.plan.actions if a.action == "run"]
    assert run.after["capacityProvider"] == "spot" and run.count == 3
    assert not any("spot cannot launch" in n.message for n in third.plan.notes)
    assert runners_by_provider(sandbox) == {"spot": 9, "linux": 3}

    # a spot interruption: the instance is set DRAINING; its idle runners are replaced
    ecs = sandbox.clients().ecs
    arns = ecs.list_tasks(cluster="ci", desiredStatus="RUNNING")["taskArns"]
    described = ecs.describe_tasks(cluster="ci", tasks=arns)["tasks"]
    on_spot = [t for t in described if t.get("capacityProviderName") == "spot"]
    host = on_spot[0]["containerInstanceArn"]
    interrupted = [t["taskArn"] for t in on_spot if t["containerInstanceArn"] == host]
    busy = interrupted[0]
    sandbox.runners.set_state(busy, RunnerState.BUSY)
    instance_id = ecs.describe_container_instances(cluster="ci", containerInstances=[host])[
        "containerInstances"
    ][0]["ec2InstanceId"]
    sandbox.interrupt_spot_instance(instance_id)
    fourth = cycle_and_apply(sandbox, specs)
    runner_actions = [a for a in fourth.plan.actions if a.resource_type == "runner_tasks"]
    (stop,) = [a for a in runner_actions if a.action == "stop"]
    assert sorted(stop.task_arns) == sorted(interrupted[1:])  # the busy runner is kept
    (run,) = [a for a in runner_actions if a.action == "run"]
    # the 2 replacements, and one more: the busy runner is going, it counts no more
    assert len(interrupted) == 3 and run.count == 3
    assert any("never stopped" in n.message for n in fourth.plan.notes)
    running = set(ecs.list_tasks(cluster="ci", desiredStatus="RUNNING")["taskArns"])
    assert busy in running and not running & set(interrupted[1:])
