"""The sandbox's fake AWS account: moto server, seeded infrastructure, simulated ECS agent."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest

from reconciler.sandbox.agent import AgentSyncResult, SimulatedEcsAgent
from reconciler.sandbox.infrastructure import (
    AsgPlan,
    InfrastructurePlan,
    SeededAccount,
    SubnetPlan,
    seed_account,
)
from reconciler.sandbox.server import MotoServer, MotoServerError

pytestmark = pytest.mark.e2e  # starts servers or processes

REGION = "eu-west-1"
CLUSTER = "ci-runners"
PLAN = InfrastructurePlan(
    vpc_name="ci",
    cidr="10.20.0.0/16",
    subnets=[
        SubnetPlan("ci-private-a", "10.20.1.0/24", "eu-west-1a"),
        SubnetPlan("ci-private-b", "10.20.2.0/24", "eu-west-1b"),
    ],
    security_groups=["runners"],
    clusters=[CLUSTER],
    auto_scaling_groups=[
        AsgPlan("linux-x64", CLUSTER, "c5.xlarge", "x86_64", 0, 4, 2, tags={"team": "ci"}),
        AsgPlan("linux-arm64", CLUSTER, "c6g.xlarge", "arm64", 0, 4, 2),
    ],
    log_groups=["/ecs/runners"],
    roles=["runner-execution"],
)


@pytest.fixture(scope="module")
def server() -> Iterator[MotoServer]:
    with MotoServer() as moto:
        yield moto


@pytest.fixture(scope="module")
def account(server: MotoServer) -> SeededAccount:
    return seed_account(server.endpoint_url, REGION, PLAN)


@pytest.fixture(scope="module")
def first_sync(server: MotoServer, account: SeededAccount) -> AgentSyncResult:
    return SimulatedEcsAgent(server.endpoint_url, REGION).sync()


def _container_instances(server: MotoServer, cluster: str = CLUSTER) -> list[dict[str, Any]]:
    ecs = server.client("ecs", REGION)
    arns = ecs.list_container_instances(cluster=cluster)["containerInstanceArns"]
    if not arns:
        return []
    described: list[dict[str, Any]] = ecs.describe_container_instances(
        cluster=cluster, containerInstances=arns
    )["containerInstances"]
    return described


def _asg_instance_ids(server: MotoServer, *names: str) -> set[str]:
    groups = server.client("autoscaling", REGION).describe_auto_scaling_groups(
        AutoScalingGroupNames=list(names)
    )["AutoScalingGroups"]
    return {i["InstanceId"] for g in groups for i in g["Instances"]}


def _attribute(container_instance: dict[str, Any], name: str) -> str | None:
    for attribute in container_instance["attributes"]:
        if attribute["name"] == name:
            value: str | None = attribute.get("value")
            return value
    return None


def test_server_binds_localhost_and_reports_transition(server: MotoServer) -> None:
    assert server.endpoint_url.startswith("http://127.0.0.1:")
    assert server.get_transition("ecs::task")["progression"] in {"manual", "immediate", "time"}


def test_second_thread_mode_server_is_refused(server: MotoServer) -> None:
    with pytest.raises(MotoServerError, match="already running"):
        MotoServer().start()


def test_seed_creates_named_resources(server: MotoServer, account: SeededAccount) -> None:
    ec2 = server.client("ec2", REGION)
    assert set(account.subnet_ids) == {"ci-private-a", "ci-private-b"}
    subnets = ec2.describe_subnets(SubnetIds=list(account.subnet_ids.values()))["Subnets"]
    assert {s["VpcId"] for s in subnets} == {account.vpc_id}
    assert {s["AvailabilityZone"] for s in subnets} == {"eu-west-1a", "eu-west-1b"}
    group = ec2.describe_security_groups(GroupIds=[account.security_group_ids["runners"]])
    assert group["SecurityGroups"][0]["GroupName"] == "runners"
    assert set(account.asg_arns) == {"linux-x64", "linux-arm64"}
    assert all(":autoScalingGroupName/" in arn for arn in account.asg_arns.values())
    assert account.cluster_arns[CLUSTER].endswith(f":cluster/{CLUSTER}")
    assert account.role_arns["runner-execution"].endswith(":role/runner-execution")

    versions = ec2.describe_launch_template_versions(
        LaunchTemplateId=account.launch_template_ids["linux-arm64"], Versions=["$Latest"]
    )["LaunchTemplateVersions"]
    data = versions[0]["LaunchTemplateData"]
    assert f"ECS_CLUSTER={CLUSTER}" in base64.b64decode(data["UserData"]).decode()
    image = ec2.describe_images(ImageIds=[data["ImageId"]])["Images"][0]
    assert image["Architecture"] == "arm64"

    groups = server.client("autoscaling", REGION).describe_auto_scaling_groups(
        AutoScalingGroupNames=["linux-x64"]
    )["AutoScalingGroups"]
    assert (groups[0]["MinSize"], groups[0]["MaxSize"], groups[0]["DesiredCapacity"]) == (0, 4, 2)
    assert {t["Key"]: t["Value"] for t in groups[0]["Tags"]} == {"Name": "linux-x64", "team": "ci"}
    assert [i["LifecycleState"] for i in groups[0]["Instances"]] == ["InService", "InService"]


def test_seeding_twice_is_idempotent(server: MotoServer, account: SeededAccount) -> None:
    again = seed_account(server.endpoint_url, REGION, PLAN)
    assert again == account

    ec2 = server.client("ec2", REGION)
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "tag:Name", "Values": ["ci"]}])["Vpcs"]
    assert len(vpcs) == 1
    vpc_filter = [{"Name": "vpc-id", "Values": [account.vpc_id]}]
    assert len(ec2.describe_subnets(Filters=vpc_filter)["Subnets"]) == 2
    named_groups = ec2.describe_security_groups(
        Filters=[*vpc_filter, {"Name": "group-name", "Values": ["runners"]}]
    )["SecurityGroups"]
    assert len(named_groups) == 1
    assert len(ec2.describe_launch_templates()["LaunchTemplates"]) == 2
    assert len(server.client("ecs", REGION).list_clusters()["clusterArns"]) == 1
    assert len(_asg_instance_ids(server, "linux-x64", "linux-arm64")) == 4


def test_agent_registers_every_in_service_instance(
    server: MotoServer, first_sync: AgentSyncResult
) -> None:
    assert len(first_sync.registered) == 4
    assert first_sync.deregistered == []
    instances = _container_instances(server)
    assert len(instances) == 4
    assert {ci["ec2InstanceId"] for ci in instances} == _asg_instance_ids(
        server, "linux-x64", "linux-arm64"
    )
    by_type = {
        _attribute(ci, "ecs.instance-type"): _attribute(ci, "ecs.cpu-architecture")
        for ci in instances
    }
    assert by_type == {"c5.xlarge": "x86_64", "c6g.xlarge": "arm64"}
    assert all(ci["status"] == "ACTIVE" and ci["agentConnected"] for ci in instances)


def test_agent_sync_twice_is_idempotent(server: MotoServer, first_sync: AgentSyncResult) -> None:
    second = SimulatedEcsAgent(server.endpoint_url, REGION).sync()
    assert not second.changed
    assert len(_container_instances(server)) == 4


def test_task_runs_on_capacity_provider_and_stays_running(
    server: MotoServer, account: SeededAccount, first_sync: AgentSyncResult
) -> None:
    ecs = server.client("ecs", REGION)
    ecs.create_capacity_provider(
        name="linux-arm64",
        autoScalingGroupProvider={
            "autoScalingGroupArn": account.asg_arns["linux-arm64"],
            "managedScaling": {"status": "ENABLED", "targetCapacity": 100},
            "managedTerminationProtection": "DISABLED",
        },
    )
    ecs.put_cluster_capacity_providers(
        cluster=CLUSTER, capacityProviders=["linux-arm64"], defaultCapacityProviderStrategy=[]
    )
    ecs.register_task_definition(
        family="linux-arm64-runner",
        networkMode="awsvpc",
        requiresCompatibilities=["EC2"],
        runtimePlatform={"cpuArchitecture": "ARM64", "operatingSystemFamily": "LINUX"},
        cpu="1024",
        memory="2048",
        containerDefinitions=[
            {"name": "runner", "image": "ghcr.io/acme/runner:1", "memoryReservation": 1536}
        ],
    )
    server.keep_tasks_running()
    run = ecs.run_task(
        cluster=CLUSTER,
        taskDefinition="linux-arm64-runner",
        count=2,
        capacityProviderStrategy=[{"capacityProvider": "linux-arm64", "weight": 1}],
        networkConfiguration={
            "awsvpcConfiguration": {
                "subnets": list(account.subnet_ids.values()),
                "securityGroups": list(account.security_group_ids.values()),
            }
        },
        startedBy="ecs-reconciler",
        tags=[{"key": "ecs-reconciler/pool", "value": "linux-arm64"}],
    )
    assert run["failures"] == []
    task_arns = [t["taskArn"] for t in run["tasks"]]
    assert len(task_arns) == 2
    registered = {ci["containerInstanceArn"] for ci in _container_instances(server)}
    assert {t["containerInstanceArn"] for t in run["tasks"]} <= registered
    assert {t["capacityProviderName"] for t in run["tasks"]} == {"linux-arm64"}

    for _ in range(5):
        tasks = ecs.describe_tasks(cluster=CLUSTER, tasks=task_arns, include=["TAGS"])["tasks"]
        assert [(t["lastStatus"], t["desiredStatus"]) for t in tasks] == [
            ("RUNNING", "RUNNING")
        ] * 2
    assert tasks[0]["tags"] == [{"key": "ecs-reconciler/pool", "value": "linux-arm64"}]
    assert set(ecs.list_tasks(cluster=CLUSTER, startedBy="ecs-reconciler")["taskArns"]) == set(
        task_arns
    )

    ecs.stop_task(cluster=CLUSTER, task=task_arns[0], reason="scale in")
    stopped = ecs.describe_tasks(cluster=CLUSTER, tasks=[task_arns[0]])["tasks"][0]
    assert (stopped["lastStatus"], stopped["desiredStatus"]) == ("STOPPED", "STOPPED")


def test_agent_deregisters_instances_that_are_gone(
    server: MotoServer, account: SeededAccount
) -> None:
    scratch = InfrastructurePlan(
        vpc_name="ci",
        cidr="10.20.0.0/16",
        subnets=PLAN.subnets,
        clusters=["scratch"],
        auto_scaling_groups=[AsgPlan("scratch", "scratch", "m5.large", "x86_64", 0, 2, 1)],
    )
    seeded = seed_account(server.endpoint_url, REGION, scratch)
    assert seeded.vpc_id == account.vpc_id
    agent = SimulatedEcsAgent(server.endpoint_url, REGION)
    assert len(agent.sync().registered) == 1
    (container_instance,) = _container_instances(server, "scratch")

    ecs = server.client("ecs", REGION)
    ecs.register_task_definition(
        family="scratch",
        containerDefinitions=[{"name": "c", "image": "busybox", "memory": 128}],
    )
    task_arn = ecs.run_task(cluster="scratch", taskDefinition="scratch", launchType="EC2")["tasks"][
        0
    ]["taskArn"]

    server.client("autoscaling", REGION).update_auto_scaling_group(
        AutoScalingGroupName="scratch", MinSize=0, DesiredCapacity=0
    )
    result = agent.sync()
    assert result.deregistered == [container_instance["containerInstanceArn"]]
    assert result.stopped_tasks == [task_arn]
    assert _container_instances(server, "scratch") == []
    task = ecs.describe_tasks(cluster="scratch", tasks=[task_arn])["tasks"][0]
    assert task["lastStatus"] == "STOPPED"
    assert task["stoppedReason"].startswith("Host EC2 (instance i-")
    assert len(_container_instances(server)) == 4  # the main cluster is untouched
    assert not agent.sync().changed


def test_process_mode_readiness_is_bounded() -> None:
    with pytest.raises(MotoServerError, match="not ready"):
        MotoServer(mode="process", startup_timeout=0.01).start()
