"""The sandbox's moto places tasks as ECS does: only on the capacity provider's instances."""

from __future__ import annotations

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
