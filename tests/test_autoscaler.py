"""The reconciler-driven cluster autoscaler: pure bin packing, then end to end on moto."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.aws.executor import Executor
from reconciler.aws.observe import Observer
from reconciler.clock import utc_now
from reconciler.plan.actions import Action
from reconciler.plan.capacity import pack, plan_capacity
from reconciler.plan.desired import render_desired
from reconciler.plan.guard import GuardPolicy, refused_actions
from reconciler.plan.state import (
    MANAGED_BY_TAG,
    MANAGED_BY_VALUE,
    DesiredState,
    ObservedAutoScalingGroup,
    ObservedInstance,
    ObservedState,
)
from reconciler.reconcile import Cycle, plan_cycle
from reconciler.sandbox.runners import TaskTagRunnerStates
from reconciler.sandbox.scenario import Sandbox
from reconciler.sandbox.server import MotoServer
from reconciler.spec.loader import load_specs
from tests.conftest import CAPACITY_PROVIDER, POOL

pytestmark = pytest.mark.e2e  # starts servers or processes

GROUP = "ci-linux"
CAPACITY = (4096, 7482)  # what moto registers every instance with: 3 pool tasks fit
RECONCILER_PROVIDER = CAPACITY_PROVIDER + "  scaling: reconciler\n  minInstanceLifetime: 0\n"
NOW = 1_800_000_000.0
SANDBOX_POOL = POOL.replace("subnet-0123456789abcdef0", "ci-private-a").replace(
    "sg-0123456789abcdef0", "ci-egress"
)


# ------------------------------------------------------------------ pure


def test_pack_fills_existing_room_first_then_opens_as_few_instances_as_needed() -> None:
    capacity = (4096, 7482)
    # 7 tasks of 2048 MiB; one instance has room for one, another is empty (room for three)
    packing = pack([(1024, 2048)] * 7, [(1024, 2100), capacity], capacity)
    assert packing.used == frozenset({0, 1})
    assert packing.new_instances == 1  # 1 + 3 placed, 3 more fit in one new instance
    assert pack([], [capacity], capacity).new_instances == 0
    assert pack([(8192, 100)], [], capacity).too_large == 1


def desired_state(spec_dir) -> DesiredState:
    specs = spec_dir({"cp.yaml": RECONCILER_PROVIDER, "pool.yaml": POOL})
    return render_desired(load_specs([specs]), utc_now(), "us-east-1")


def instance(
    n: int, running: int, remaining: tuple[int, int], protected: bool = False, age: float = 3600
) -> ObservedInstance:
    return ObservedInstance(
        f"i-{n}",
        "InService",
        protected,
        f"arn:ci/{n}",
        "ACTIVE",
        running,
        0,
        CAPACITY,
        remaining,
        registered_at=NOW - age,
    )


def scaling_group(*instances: ObservedInstance, tags: dict | None = None) -> ObservedState:
    tags = {MANAGED_BY_TAG: MANAGED_BY_VALUE} if tags is None else tags
    group = ObservedAutoScalingGroup(GROUP, "arn:group", 1, 10, len(instances), tags, instances)
    return ObservedState(scaling_groups={GROUP: group})


def test_a_group_without_the_ownership_tag_is_never_scaled(spec_dir) -> None:
    capacity = plan_capacity(
        desired_state(spec_dir),
        scaling_group(instance(1, 0, CAPACITY), tags={}),
        {"pool-a": 9},
        NOW,
    )
    assert capacity.actions == []
    note = capacity.notes[0]
    assert note.severity == "error" and "lacks the tag" in note.message


def test_scale_in_keeps_the_min_busy_protected_and_needed_instances(spec_dir) -> None:
    observed = scaling_group(
        instance(1, 1, (3072, 5434)),  # runs a task
        instance(2, 0, CAPACITY, protected=True),
        instance(3, 0, CAPACITY),
        instance(4, 0, CAPACITY),
        instance(5, 0, CAPACITY),
    )
    desired = desired_state(spec_dir)
    (scale_in,) = plan_capacity(desired, observed, {"pool-a": 0}, NOW).actions
    assert [i["instanceId"] for i in scale_in.after["instances"]] == ["i-3", "i-4", "i-5"]
    # 6 tasks to start: 2 fit next to the running one, 3 on the protected instance (it stays
    # anyway), the last one needs i-3
    (scale_in,) = plan_capacity(desired, observed, {"pool-a": 6}, NOW).actions
    assert [i["instanceId"] for i in scale_in.after["instances"]] == ["i-4", "i-5"]
    # nothing is removed on a partial picture
    partial = plan_capacity(desired, observed, {}, NOW, scale_in_allowed=False)
    assert partial.actions == [] and partial.notes == []


def test_an_empty_instance_younger_than_its_minimum_lifetime_stays(spec_dir) -> None:
    specs = spec_dir(
        {"cp.yaml": RECONCILER_PROVIDER.replace("Lifetime: 0", "Lifetime: 600"), "pool.yaml": POOL}
    )
    desired = render_desired(load_specs([specs]), utc_now(), "x")
    observed = scaling_group(
        instance(1, 1, (3072, 5434)), instance(2, 0, CAPACITY, age=599), instance(3, 0, CAPACITY)
    )
    (scale_in,) = plan_capacity(desired, observed, {}, NOW).actions
    assert [i["instanceId"] for i in scale_in.after["instances"]] == ["i-3"]


def test_managed_scaling_enabled_with_reconciler_scaling_is_a_contradiction(
    spec_dir,
) -> None:
    text = RECONCILER_PROVIDER + "  managedScaling:\n    status: ENABLED\n"
    spec_set = load_specs([spec_dir({"cp.yaml": text})])
    assert [str(e) for e in spec_set.errors] and "two scalers would fight" in str(
        spec_set.errors[0]
    )
    assert "managedScaling.status" in str(spec_set.errors[0])


# ------------------------------------------------------------------ on moto


@pytest.fixture
def specs(spec_dir) -> Path:
    return spec_dir(
        {
            "cp.yaml": RECONCILER_PROVIDER,
            "pool.yaml": SANDBOX_POOL.replace("idle: 1", "idle: 12").replace("max: 10", "max: 20"),
        }
    )


@pytest.fixture
def sandbox(specs: Path, moto_server: MotoServer) -> Iterator[Sandbox]:
    """The agent acts only on tick(): these tests step registration and scale-in themselves."""
    with Sandbox([specs], server=moto_server, agent_interval=None) as running:
        yield running


def cycle_and_apply(sandbox: Sandbox, specs: Path) -> tuple[Cycle, list[Action]]:
    clients = sandbox.clients()
    states = TaskTagRunnerStates(clients)
    cycle = plan_cycle([specs], Observer(clients), states, utc_now())
    refused = refused_actions(cycle.plan, GuardPolicy(max_stop_share=1.0))
    result = Executor(clients, cycle.observed, states).apply(cycle.plan, refused)
    assert result.ok, result.failed  # tasks waiting for new instances are not a failure
    sandbox.tick()  # new instances register with ECS, new runners come online
    return cycle, [a for a in cycle.plan.actions if a.resource_type != "runner_tasks"]


def group(sandbox: Sandbox) -> dict:
    autoscaling = sandbox.clients().autoscaling
    return autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])[
        "AutoScalingGroups"
    ][0]


def test_pending_tasks_grow_the_group_by_the_bin_packed_number_in_one_cycle(
    sandbox: Sandbox, specs: Path
) -> None:
    assert group(sandbox)["DesiredCapacity"] == 2
    _, actions = cycle_and_apply(sandbox, specs)
    scale_out = [a for a in actions if a.address == f"auto_scaling_group.{GROUP}"]
    # 12 tasks, 3 per instance: the 2 instances take 6, 2 more instances for the other 6
    assert [(a.before, a.after) for a in scale_out] == [
        ({"desiredCapacity": 2}, {"desiredCapacity": 4})
    ]
    assert group(sandbox)["DesiredCapacity"] == 4
    _, actions = cycle_and_apply(sandbox, specs)
    assert actions == []  # the new instances have room for the 6 still to start
    final, _ = cycle_and_apply(sandbox, specs)
    summary = final.plan.pools[0]
    assert summary.running == 12 and not final.plan.has_changes


def test_only_empty_unprotected_instances_are_drained_and_removed(
    sandbox: Sandbox, specs: Path
) -> None:
    for _ in range(3):
        cycle_and_apply(sandbox, specs)  # 12 runners on 4 instances
    pool = specs / "pool.yaml"
    pool.write_text(pool.read_text().replace("idle: 12", "idle: 1"))
    cycle_and_apply(sandbox, specs)  # 11 idle runners stop; their instances empty out
    clients = sandbox.clients()
    hosts = {
        t["containerInstanceArn"]
        for t in clients.ecs.describe_tasks(
            cluster="ci",
            tasks=clients.ecs.list_tasks(cluster="ci", desiredStatus="RUNNING")["taskArns"],
        )["tasks"]
    }
    assert len(hosts) == 1
    instances = clients.ecs.describe_container_instances(
        cluster="ci",
        containerInstances=clients.ecs.list_container_instances(cluster="ci")[
            "containerInstanceArns"
        ],
    )["containerInstances"]
    busy = next(i["ec2InstanceId"] for i in instances if i["containerInstanceArn"] in hosts)
    protected = next(i["ec2InstanceId"] for i in instances if i["ec2InstanceId"] != busy)
    clients.autoscaling.set_instance_protection(
        InstanceIds=[protected], AutoScalingGroupName=GROUP, ProtectedFromScaleIn=True
    )

    _, actions = cycle_and_apply(sandbox, specs)
    (scale_in,) = [a for a in actions if a.address == f"instances.{GROUP}"]
    removed = {i["instanceId"] for i in scale_in.after["instances"]}
    assert len(removed) == 2 and busy not in removed and protected not in removed
    after = group(sandbox)
    assert after["DesiredCapacity"] == 2
    in_service = {i["InstanceId"] for i in after["Instances"] if i["LifecycleState"] == "InService"}
    assert {busy, protected} <= in_service and not removed & in_service
    final, actions = cycle_and_apply(sandbox, specs)
    assert actions == [] and final.plan.pools[0].running == 1  # the runner kept its instance
