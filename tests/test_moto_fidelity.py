"""The sandbox's moto places tasks as ECS does: only on the capacity provider's instances."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from reconciler.sandbox.scenario import Sandbox

pytestmark = pytest.mark.e2e  # starts servers or processes


def provider_for(sandbox: Sandbox, group: str) -> str:
    clients = sandbox.clients()
    arn = clients.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[group])[
        "AutoScalingGroups"
    ][0]["AutoScalingGroupARN"]
    clients.ecs.create_capacity_provider(
        name=f"cp-{group}", autoScalingGroupProvider={"autoScalingGroupArn": arn}
    )
    return f"cp-{group}"


def instances_of(sandbox: Sandbox, group: str) -> set[str]:
    groups = sandbox.clients().autoscaling.describe_auto_scaling_groups(
        AutoScalingGroupNames=[group]
    )["AutoScalingGroups"]
    return {instance["InstanceId"] for instance in groups[0]["Instances"]}


def test_run_task_places_only_on_the_capacity_providers_instances(sandbox: Sandbox) -> None:
    ecs = sandbox.clients().ecs
    large = provider_for(sandbox, "ci-runners-linux-x64-large")
    definition = ecs.register_task_definition(
        family="fidelity",
        containerDefinitions=[{"name": "c", "image": "busybox", "cpu": 4096, "memory": 4096}],
    )["taskDefinition"]["taskDefinitionArn"]
    # six instances in the cluster (three groups of two), one such task fits an instance
    started = ecs.run_task(
        cluster="ci-runners",
        taskDefinition=definition,
        count=6,
        capacityProviderStrategy=[{"capacityProvider": large, "weight": 1}],
    )["tasks"]
    assert len(started) == 2
    hosts = {
        ci["ec2InstanceId"]
        for ci in ecs.describe_container_instances(
            cluster="ci-runners", containerInstances=[t["containerInstanceArn"] for t in started]
        )["containerInstances"]
    }
    assert hosts == instances_of(sandbox, "ci-runners-linux-x64-large")


def test_tasks_without_a_capacity_provider_still_use_any_instance(sandbox: Sandbox) -> None:
    ecs = sandbox.clients().ecs
    definition = ecs.register_task_definition(
        family="fidelity",
        containerDefinitions=[{"name": "c", "image": "busybox", "cpu": 4096, "memory": 4096}],
    )["taskDefinition"]["taskDefinitionArn"]
    started = ecs.run_task(
        cluster="ci-runners", taskDefinition=definition, count=6, launchType="EC2"
    )["tasks"]
    assert len(started) == 6


def test_each_describe_tasks_is_answered_by_its_own_include(sandbox: Sandbox) -> None:
    """moto keeps `include=["TAGS"]` in a table shared by all request threads; unpatched, a
    DescribeTasks without it, answered at the same moment, strips another answer's tags."""
    ecs = sandbox.clients().ecs
    definition = ecs.register_task_definition(
        family="fidelity",
        containerDefinitions=[{"name": "c", "image": "busybox", "cpu": 16, "memory": 16}],
    )["taskDefinition"]["taskDefinitionArn"]
    arns = [
        task["taskArn"]
        for task in ecs.run_task(
            cluster="ci-runners",
            taskDefinition=definition,
            count=10,
            tags=[{"key": "owner", "value": "us"}],
        )["tasks"]
    ]
    stop = threading.Event()

    def describe_without_tags() -> None:
        plain = sandbox.clients(read_only=True).ecs
        while not stop.is_set():
            plain.describe_tasks(cluster="ci-runners", tasks=arns)

    untagged = 0
    with ThreadPoolExecutor(max_workers=3) as pool:
        others = [pool.submit(describe_without_tags) for _ in range(2)]
        try:
            for _ in range(100):
                answer = ecs.describe_tasks(cluster="ci-runners", tasks=arns, include=["TAGS"])
                untagged += sum(1 for task in answer["tasks"] if not task.get("tags"))
        finally:
            stop.set()
        for other in others:
            other.result()
    assert untagged == 0
