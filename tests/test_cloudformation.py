"""The CloudFormation stack (deploy/cloudformation/ecs-reconciler.yaml): the properties the runner
platform promises, proven over the template (evaluated with and without webhooks), and the
stack deployed into a fresh moto account given only a VPC and two subnets.

`make deploy-check` runs cfn-lint on every template and this file."""

from __future__ import annotations

import base64
import importlib.util
from collections.abc import Iterator
from functools import cache
from types import ModuleType
from typing import Any

import pytest

from reconciler.controller.lease import LeaseConfig
from reconciler.demand.store import QUEUE_INDEX, DynamoDemandStore
from reconciler.github.jit import PARAMETER_PREFIX
from reconciler.plan.state import FAMILY_PREFIX, MANAGED_BY_TAG, MANAGED_BY_VALUE
from reconciler.sandbox import scenario
from reconciler.sandbox.infrastructure import AsgPlan, InfrastructurePlan, SubnetPlan
from reconciler.sandbox.server import MotoServer
from reconciler.spec.models import Logging

from .cfn import REPO, TEMPLATE, Deployment, template

REQUIRED = {
    "VpcId": "vpc-0123456789abcdef0",
    "PrivateSubnetIds": "subnet-0123456789abcdef0,subnet-0123456789abcdef1",
    "ControllerImage": "123456789012.dkr.ecr.us-east-1.amazonaws.com/ecs-reconciler:1",
    "SpecRepositoryUrl": "https://github.com/acme/runner-specs.git",
    "GitHubSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:ecs-reconciler/github-AbCdEf",
}
WEBHOOKS = {
    "WebhookCertificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/0a1b2c3d",
    "WebhookSubnetIds": "subnet-0123456789abcdef2,subnet-0123456789abcdef3",
}
LOAD_BALANCER_GROUP = "WebhookLoadBalancerSecurityGroup"


@cache
def iam_policy() -> ModuleType:
    """tools/iam_policy.py, imported by path (tools/ is not a package)."""
    spec = importlib.util.spec_from_file_location("iam_policy", REPO / "tools" / "iam_policy.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def deployment(webhooks: bool = False, **parameters: str) -> Deployment:
    return Deployment(template(), {**REQUIRED, **(WEBHOOKS if webhooks else {}), **parameters})


@pytest.fixture(params=[False, True], ids=["no-webhooks", "webhooks"])
def stack(request: pytest.FixtureRequest) -> Deployment:
    return deployment(webhooks=request.param)


def ingress_rules(stack: Deployment) -> Iterator[tuple[str, dict[str, Any]]]:
    """(logical id of the security group, rule) for every ingress rule the stack creates."""
    for name, group in stack.of_type("AWS::EC2::SecurityGroup").items():
        for rule in group["Properties"].get("SecurityGroupIngress", []):
            yield name, rule
    for rule in stack.of_type("AWS::EC2::SecurityGroupIngress").values():
        properties = rule["Properties"]
        target = properties.get("GroupId") or properties.get("GroupName")
        yield str(target).strip("<>").split(".")[0], properties


# ------------------------------------------------------------------ network


def test_no_ingress_at_all_without_webhooks() -> None:
    stack = deployment(webhooks=False)
    assert list(ingress_rules(stack)) == []
    assert not stack.of_type("AWS::ElasticLoadBalancingV2::LoadBalancer")
    assert not stack.of_type("AWS::ElasticLoadBalancingV2::Listener")


def test_ingress_from_anywhere_only_443_on_the_load_balancer(stack: Deployment) -> None:
    for group, rule in ingress_rules(stack):
        if any(k in rule for k in ("CidrIp", "CidrIpv6", "SourcePrefixListId")):
            assert group == LOAD_BALANCER_GROUP, (group, rule)
            assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", 443, 443)
        else:  # group to group: only the load balancer reaches the controller's listener
            assert rule["SourceSecurityGroupId"] == f"<{LOAD_BALANCER_GROUP}.GroupId>", rule
            assert group == "ControllerSecurityGroup"
            assert (rule["FromPort"], rule["ToPort"]) == (8080, 8080)


def test_webhooks_get_an_https_listener_with_the_certificate() -> None:
    stack = deployment(webhooks=True)
    (listener,) = stack.of_type("AWS::ElasticLoadBalancingV2::Listener").values()
    properties = listener["Properties"]
    assert (properties["Protocol"], properties["Port"]) == ("HTTPS", 443)
    assert properties["Certificates"] == [{"CertificateArn": WEBHOOKS["WebhookCertificateArn"]}]
    (service,) = stack.of_type("AWS::ECS::Service").values()
    assert service["Properties"]["LoadBalancers"][0]["ContainerPort"] == 8080
    assert "WebhookUrl" in template()["Outputs"]


def test_runner_group_has_no_ingress_and_no_self_reference(stack: Deployment) -> None:
    runner = stack.resources()["RunnerSecurityGroup"]["Properties"]
    assert "SecurityGroupIngress" not in runner
    assert runner["SecurityGroupEgress"], "runners need egress (GitHub, registries)"
    for group, rule in ingress_rules(stack):
        assert group != "RunnerSecurityGroup", rule
        assert rule.get("SourceSecurityGroupId") != "<RunnerSecurityGroup.GroupId>", rule
    for resource in stack.of_type("AWS::EC2::SecurityGroupEgress").values():
        assert resource["Properties"].get("GroupId") != "<RunnerSecurityGroup.GroupId>"


# ------------------------------------------------------------------ container instances


def test_launch_templates_require_imdsv2_and_block_imds_for_tasks(stack: Deployment) -> None:
    templates = stack.of_type("AWS::EC2::LaunchTemplate")
    assert len(templates) == 3
    for name, launch_template in templates.items():
        data = launch_template["Properties"]["LaunchTemplateData"]
        assert data["MetadataOptions"]["HttpTokens"] == "required", name
        assert data["MetadataOptions"]["HttpPutResponseHopLimit"] == 1, name
        config = ecs_config(data["UserData"])
        assert config["ECS_CLUSTER"] == "<RunnerCluster>"
        assert config["ECS_AWSVPC_BLOCK_IMDS"] == "true"
        assert config["ECS_ENABLE_TASK_IAM_ROLE"] == "true"
        assert config["ECS_ENABLE_SPOT_INSTANCE_DRAINING"] == "true"
        assert {"ECS_IMAGE_CLEANUP_INTERVAL", "ECS_IMAGE_MINIMUM_CLEANUP_AGE"} <= set(config)
        (root,) = data["BlockDeviceMappings"]
        assert root["Ebs"]["Encrypted"] is True
        assert data["SecurityGroupIds"] == ["<RunnerSecurityGroup.GroupId>"]


def ecs_config(user_data: str) -> dict[str, str]:
    """KEY=value lines of the user data (what ends up in /etc/ecs/ecs.config)."""
    lines = [line.strip() for line in user_data.splitlines()]
    return dict(line.split("=", 1) for line in lines if "=" in line and line[0].isupper())


def test_amis_come_from_the_public_ecs_optimized_parameters() -> None:
    parameters = template()["Parameters"]
    for name in ("X86EcsAmi", "Arm64EcsAmi"):
        assert parameters[name]["Type"] == "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>"
        assert parameters[name]["Default"].startswith("/aws/service/ecs/optimized-ami/")
    stack = deployment(Class1Architecture="arm64")
    data = stack.resources()["Class1LaunchTemplate"]["Properties"]["LaunchTemplateData"]
    assert data["ImageId"] == parameters["Arm64EcsAmi"]["Default"]


def test_groups_carry_the_ownership_tag_only_when_the_reconciler_scales_them() -> None:
    stack = deployment(Class1ScaledBy="reconciler", Class3ScaledBy="ecs")
    groups = stack.of_type("AWS::AutoScaling::AutoScalingGroup")
    for name, group in groups.items():
        properties = group["Properties"]
        # the autoscaler never removes protected instances, and removes idle ones itself
        assert properties["NewInstancesProtectedFromScaleIn"] is False
        assert properties["MinSize"] == "0" and "DesiredCapacity" not in properties
        assert properties["LaunchTemplate"]["LaunchTemplateId"] == (
            f"<{name.replace('Group', 'LaunchTemplate')}>"
        )
    owner = {"Key": MANAGED_BY_TAG, "Value": MANAGED_BY_VALUE, "PropagateAtLaunch": False}
    assert owner in groups["Class1Group"]["Properties"]["Tags"]
    assert owner not in groups["Class3Group"]["Properties"]["Tags"]


def test_an_empty_group_name_leaves_the_class_out() -> None:
    stack = deployment(Class2GroupName="", Class3GroupName="")
    assert set(stack.of_type("AWS::AutoScaling::AutoScalingGroup")) == {"Class1Group"}
    assert set(stack.of_type("AWS::EC2::LaunchTemplate")) == {"Class1LaunchTemplate"}


def test_template_defaults_match_the_example_specs() -> None:
    from reconciler.spec.loader import load_specs

    specs = load_specs([REPO / "specs"])
    stack = deployment()
    groups = {
        g["Properties"]["AutoScalingGroupName"]: g["Properties"]
        for g in stack.of_type("AWS::AutoScaling::AutoScalingGroup").values()
    }
    for provider in specs.capacity_providers:
        assert provider.spec.cluster == stack.values["ClusterName"]
        owned = {"Key": MANAGED_BY_TAG, "Value": MANAGED_BY_VALUE, "PropagateAtLaunch": False}
        tags = groups[provider.spec.auto_scaling_group]["Tags"]
        assert (owned in tags) == (provider.spec.scaling == "reconciler")
    roles = {r["Properties"].get("RoleName") for r in stack.of_type("AWS::IAM::Role").values()}
    for pool in specs.pools:
        assert stack.values["RunnerSecurityGroupName"] in pool.spec.network.security_groups
        for arn in (pool.spec.iam.execution_role_arn, pool.spec.iam.task_role_arn):
            assert arn is None or arn.rsplit("/", 1)[1] in roles


# ------------------------------------------------------------------ state, secrets, logs


def test_tables_have_point_in_time_recovery_and_encryption(stack: Deployment) -> None:
    tables = {t["Properties"]["TableName"]: t["Properties"] for t in dynamodb_tables(stack)}
    assert set(tables) == {LeaseConfig.table, DynamoDemandStore(None).table}
    for properties in tables.values():
        assert properties["PointInTimeRecoverySpecification"] == {
            "PointInTimeRecoveryEnabled": True
        }
        assert properties["SSESpecification"]["SSEEnabled"] is True
        assert properties["BillingMode"] == "PAY_PER_REQUEST"
    # the key schemas the controller's ensure_table() would create
    assert tables[LeaseConfig.table]["KeySchema"] == [{"AttributeName": "name", "KeyType": "HASH"}]
    demand = tables[DynamoDemandStore(None).table]
    assert demand["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert demand["TimeToLiveSpecification"] == {"AttributeName": "ttl", "Enabled": True}
    # the sparse index the store reads queued jobs by pool from (one Query per pool)
    [index] = demand["GlobalSecondaryIndexes"]
    assert index["IndexName"] == QUEUE_INDEX
    assert index["KeySchema"] == [{"AttributeName": "queuedPool", "KeyType": "HASH"}]


def dynamodb_tables(stack: Deployment) -> list[dict[str, Any]]:
    return list(stack.of_type("AWS::DynamoDB::Table").values())


def test_log_groups_have_retention(stack: Deployment) -> None:
    groups = stack.of_type("AWS::Logs::LogGroup")
    names = {g["Properties"]["LogGroupName"] for g in groups.values()}
    assert Logging().log_group in names  # the pools' default log group
    assert all(isinstance(g["Properties"]["RetentionInDays"], int) for g in groups.values())


def test_jit_configurations_are_readable_by_runner_tasks_only_through_the_stack_key() -> None:
    stack = deployment()
    key_alias = stack.resources()["JitParameterKeyAlias"]["Properties"]
    assert key_alias["AliasName"] == scenario.JIT_KEY_ALIAS == iam_policy().JIT_KEY_ALIAS
    assert stack.resources()["JitParameterKey"]["Properties"]["EnableKeyRotation"] is True
    (policy,) = stack.resources()["RunnerTaskRole"]["Properties"]["Policies"]
    statements = {s["Sid"]: s for s in policy["PolicyDocument"]["Statement"]}
    read = statements["ReadAndDeleteJitConfiguration"]
    assert sorted(read["Action"]) == ["ssm:DeleteParameter", "ssm:GetParameter"]
    assert read["Resource"].endswith(f":parameter{PARAMETER_PREFIX}/*")
    assert statements["DecryptJitConfiguration"]["Resource"] == "<JitParameterKey.Arn>"
    command = controller_container(stack)["Command"]
    assert command[command.index("--jit-kms-key") + 1] == scenario.JIT_KEY_ALIAS


# ------------------------------------------------------------------ controller


def controller_container(stack: Deployment) -> dict[str, Any]:
    (definition,) = stack.of_type("AWS::ECS::TaskDefinition").values()
    (container,) = definition["Properties"]["ContainerDefinitions"]
    return dict(container)


def test_controller_runs_two_replicas_with_leader_election(stack: Deployment) -> None:
    (service,) = stack.of_type("AWS::ECS::Service").values()
    assert service["Properties"]["DesiredCount"] == 2
    assert (
        service["Properties"]["NetworkConfiguration"]["AwsvpcConfiguration"]["AssignPublicIp"]
        == "DISABLED"
    )
    assert "--leader-election" in controller_container(stack)["Command"]
    (definition,) = stack.of_type("AWS::ECS::TaskDefinition").values()
    assert not definition["Properties"]["Family"].startswith(FAMILY_PREFIX)
    assert controller_container(stack)["Image"] == REQUIRED["ControllerImage"]


def test_failed_deliveries_are_redelivered_only_with_webhooks_and_a_hook_path() -> None:
    hook = "/orgs/acme/hooks/42"
    command = controller_container(deployment(webhooks=True, WebhookHookPath=hook))["Command"]
    assert command[command.index("--webhook-hook") + 1] == hook
    assert "--webhook-hook" not in controller_container(deployment(webhooks=True))["Command"]
    without = controller_container(deployment(WebhookHookPath=hook))["Command"]
    assert "--webhook-hook" not in without, "no webhooks, nothing to redeliver"


def test_controller_role_carries_exactly_the_derived_policy() -> None:
    tool = iam_policy()
    role = deployment().resources()["ControllerTaskRole"]["Properties"]
    (policy,) = role["Policies"]
    assert policy["PolicyDocument"] == tool.build_policy(tool.derive_actions())
    assert "ManagedPolicyArns" not in role


def test_no_role_is_granted_a_service_wide_wildcard(stack: Deployment) -> None:
    for name, role in stack.of_type("AWS::IAM::Role").items():
        for policy in role["Properties"].get("Policies", []):
            for statement in policy["PolicyDocument"]["Statement"]:
                actions = statement["Action"]
                for action in [actions] if isinstance(actions, str) else actions:
                    assert "*" not in action, f"{name}: {action}"
                assert "NotAction" not in statement and "NotResource" not in statement


def test_outputs_name_what_the_specs_refer_to() -> None:
    outputs = template()["Outputs"]
    for name in (
        "ClusterName",
        "PrivateSubnetIds",
        "RunnerSecurityGroupId",
        "ControllerSecurityGroupId",
        "RunnerTaskRoleArn",
        "RunnerExecutionRoleArn",
        "RunnerLogGroupName",
        "Class1AutoScalingGroupName",
    ):
        assert name in outputs, name


# ------------------------------------------------------------------ moto


def _deploy(server: MotoServer, webhooks: bool) -> tuple[dict[str, Any], str]:
    """A VPC and two subnets (the only inputs), then CreateStack; (stack, vpc id)."""
    ec2 = server.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.9.{i}.0/24", AvailabilityZone=f"us-east-1{z}")[
            "Subnet"
        ]["SubnetId"]
        for i, z in ((1, "a"), (2, "b"))
    ]
    parameters = {**REQUIRED, "VpcId": vpc, "PrivateSubnetIds": ",".join(subnets)}
    if webhooks:
        certificate = server.client("acm").request_certificate(DomainName="hooks.example.com")
        parameters |= {
            "WebhookCertificateArn": certificate["CertificateArn"],
            "WebhookSubnetIds": ",".join(subnets),
        }
    cloudformation = server.client("cloudformation")
    cloudformation.create_stack(
        StackName="ecs-reconciler",
        TemplateBody=TEMPLATE.read_text(),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_NAMED_IAM"],
    )
    return cloudformation.describe_stacks(StackName="ecs-reconciler")["Stacks"][0], vpc


@pytest.mark.parametrize("webhooks", [False, True], ids=["no-webhooks", "webhooks"])
def test_stack_reaches_create_complete_in_a_fresh_moto_account(webhooks: bool) -> None:
    with MotoServer(mode="process") as server:
        stack, vpc = _deploy(server, webhooks)
        assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
        assert outputs["ClusterName"] == "ci-runners"
        ec2 = server.client("ec2")
        groups = ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpc]}])
        ingress = {
            g["GroupId"]: g["IpPermissions"] for g in groups["SecurityGroups"] if g["IpPermissions"]
        }
        assert ingress.pop(outputs["ControllerSecurityGroupId"], None) == (
            [
                {
                    "IpProtocol": "tcp",
                    "FromPort": 8080,
                    "ToPort": 8080,
                    "UserIdGroupPairs": [{"UserId": "123456789012", "GroupId": lb_group(groups)}],
                    "IpRanges": [],
                    "Ipv6Ranges": [],
                    "PrefixListIds": [],
                }
            ]
            if webhooks
            else None
        )
        if webhooks:
            (rules,) = ingress.values()
            assert [(r["FromPort"], r["ToPort"], r["IpRanges"]) for r in rules] == [
                (443, 443, [{"CidrIp": "0.0.0.0/0"}])
            ]
        else:
            assert ingress == {}

        autoscaling = server.client("autoscaling")
        names = [outputs[f"Class{i}AutoScalingGroupName"] for i in (1, 2, 3)]
        found = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=names)
        assert len(found["AutoScalingGroups"]) == 3
        data = ec2.describe_launch_template_versions(
            LaunchTemplateName=names[0], Versions=["$Latest"]
        )["LaunchTemplateVersions"][0]["LaunchTemplateData"]
        assert data["MetadataOptions"]["HttpTokens"] == "required"
        user_data = base64.b64decode(data["UserData"]).decode()
        assert "ECS_CLUSTER=ci-runners\n" in user_data
        assert "ECS_AWSVPC_BLOCK_IMDS=true\n" in user_data
        # the image pre-pull (tests/test_prepull.py), from the template's UserData mapping
        assert "export AWS_DEFAULT_REGION=us-east-1\n" in user_data
        assert "aws ecs list-task-definition-families" in user_data
        service = server.client("ecs").describe_services(
            cluster="ci-runners", services=["ecs-reconciler"]
        )["services"][0]
        assert service["desiredCount"] == 2
        retention = {
            g["logGroupName"]: g.get("retentionInDays")
            for g in server.client("logs").describe_log_groups()["logGroups"]
        }
        assert retention == {"/ecs-reconciler/runners": 30, "/ecs/ecs-reconciler-controller": 30}


def lb_group(groups: dict[str, Any]) -> str | None:
    for group in groups["SecurityGroups"]:
        if any(t["Value"] == "ecs-reconciler-webhooks" for t in group.get("Tags", [])):
            return str(group["GroupId"])
    return None


# ------------------------------------------------------------------ the sandbox


def test_sandbox_account_comes_from_the_stack(sandbox: scenario.Sandbox) -> None:
    cloudformation = sandbox.server.client("cloudformation")
    resources = cloudformation.describe_stack_resources(StackName=scenario.STACK_NAME)[
        "StackResources"
    ]
    # moto lists the WaitConditionHandle it does not model as an empty entry
    physical = {
        r["LogicalResourceId"]: r["PhysicalResourceId"] for r in resources if r.get("ResourceType")
    }
    assert physical["RunnerCluster"] == "ci-runners"
    assert {physical[f"Class{i}Group"] for i in (1, 2, 3)} == {
        "ci-runners-linux-arm64",
        "ci-runners-linux-x64",
        "ci-runners-linux-x64-large",
    }
    assert {physical["RunnerTaskRole"], physical["RunnerExecutionRole"]} == {
        "ci-runners-task",
        "ci-runners-execution",
    }
    assert sandbox.stack_outputs["RunnerSecurityGroupId"] == physical["RunnerSecurityGroup"]
    # nothing the stack covers was created again by hand
    ecs = sandbox.clients().ecs
    assert [a.rsplit("/", 1)[1] for a in ecs.list_clusters()["clusterArns"]] == ["ci-runners"]
    groups = sandbox.clients().ec2.describe_security_groups(
        Filters=[{"Name": "tag:Name", "Values": ["ci-runners-egress"]}]
    )["SecurityGroups"]
    assert [g["GroupId"] for g in groups] == [physical["RunnerSecurityGroup"]]


def test_what_one_stack_does_not_cover_is_seeded_by_hand() -> None:
    plan = InfrastructurePlan(
        vpc_name="ci",
        cidr="10.0.0.0/16",
        subnets=[SubnetPlan("a", "10.0.0.0/24", "us-east-1a")],
        security_groups=["egress", "extra"],
        clusters=["big", "small"],
        auto_scaling_groups=[
            *(AsgPlan(f"big-{n}", "big", "m6i.large") for n in range(4)),
            AsgPlan("small-1", "small", "m6i.large"),
        ],
        log_groups=["/ecs-reconciler/runners", "/custom"],
        roles=["big-task", "other-role"],
        images=["123456789012.dkr.ecr.us-east-1.amazonaws.com/r:1"],
    )
    stack = scenario.stack_plan_for(plan)
    assert (stack.cluster, stack.security_group) == ("big", "egress")
    assert stack.group_names == ("big-0", "big-1", "big-2")
    inputs, rest = scenario.split_plan(plan, stack)
    assert inputs.images == plan.images and inputs.subnets == plan.subnets
    assert not inputs.auto_scaling_groups and not inputs.clusters
    assert [g.name for g in rest.auto_scaling_groups] == ["big-3", "small-1"]
    assert sorted(rest.clusters) == ["big", "small"]  # big is found, not created, by the seeder
    assert rest.security_groups == ["extra"]
    assert rest.log_groups == ["/custom"] and rest.roles == ["other-role"]
    parameters = stack.parameters(plan, "vpc-1", ["subnet-1"], "arn:secret")
    assert parameters["Class3GroupName"] == "big-2"
    Deployment(template(), parameters)  # every parameter the sandbox passes is declared


def test_hand_seeding_is_listed_in_the_deploy_readme() -> None:
    readme = (REPO / "deploy" / "README.md").read_text()
    for item in scenario.HAND_SEEDED:
        assert item in " ".join(readme.split()), item


def test_a_spot_class_gets_a_mixed_instances_policy_over_its_launch_template() -> None:
    types = "m6i.2xlarge,m5.2xlarge,m6a.2xlarge"
    stack = deployment(Class1SpotInstanceTypes=types, Class1OnDemandBaseCapacity="1")
    groups = stack.of_type("AWS::AutoScaling::AutoScalingGroup")
    spot = groups["Class1Group"]["Properties"]
    assert "LaunchTemplate" not in spot
    policy = spot["MixedInstancesPolicy"]
    assert [o["InstanceType"] for o in policy["LaunchTemplate"]["Overrides"]] == types.split(",")
    assert policy["LaunchTemplate"]["LaunchTemplateSpecification"]["LaunchTemplateId"] == (
        "<Class1LaunchTemplate>"
    )
    assert policy["InstancesDistribution"] == {
        "OnDemandBaseCapacity": "1",
        "OnDemandPercentageAboveBaseCapacity": 0,
        "SpotAllocationStrategy": "price-capacity-optimized",
    }
    # interrupted instances drain (ECS spot instance draining) in every class's user data
    data = stack.resources()["Class1LaunchTemplate"]["Properties"]["LaunchTemplateData"]
    assert "ECS_ENABLE_SPOT_INSTANCE_DRAINING=true" in str(data["UserData"])
    on_demand = groups["Class2Group"]["Properties"]
    assert "MixedInstancesPolicy" not in on_demand and "LaunchTemplate" in on_demand
