"""Seeding the sandbox account by hand: the stack's inputs, and what one stack does not cover.

The sandbox deploys `deploy/cloudformation/ecs-reconciler.yaml` for most of the platform (see
`scenario`); this module creates the rest, and any plan a test asks for directly.

This module owns the "platform" side of a fake account: one VPC, named subnets and security
groups, ECS clusters, and per Auto Scaling group a launch template (ECS-optimized AMI of the
right architecture, user data that joins the cluster) plus the group itself; optionally IAM roles,
CloudWatch log groups, secrets, and ECR repositories with the images CI would have pushed (a
manifest each, so DescribeImages / BatchGetImage find them). It deliberately does not create
capacity providers or task definitions: those belong to the reconciler.

``seed_account`` is idempotent: every resource is looked up first (by ``Name`` tag, or by its
unique name where the service has one) and only created when missing, so seeding twice returns the
same ids and duplicates nothing. Existing Auto Scaling groups get their min/max sizes updated but
keep their desired capacity, as Terraform configurations for ECS-managed scaling usually do
(``ignore_changes = [desired_capacity]``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from botocore.exceptions import ClientError

from ..verify.environment import ssm_parameter_name
from ..verify.images import ImageReference
from .server import sandbox_client

logger = logging.getLogger(__name__)

Architecture = Literal["x86_64", "arm64"]
ARCHITECTURES: tuple[Architecture, ...] = ("x86_64", "arm64")

#: Name patterns tried in order when picking an AMI: ECS-optimized first, then plain Amazon Linux.
AMI_NAME_PATTERNS = ("al2023-ami-ecs-hvm-*", "amzn2-ami-ecs-hvm-*", "al2023-ami-*", "amzn2-ami-*")
ECS_TASKS_TRUST_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "ecs-tasks.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}


@dataclass(frozen=True)
class SubnetPlan:
    name: str
    cidr: str
    az: str


@dataclass(frozen=True)
class AsgPlan:
    """An EC2 Auto Scaling group whose instances join ``cluster``."""

    name: str
    cluster: str
    instance_type: str
    architecture: Architecture = "x86_64"
    min_size: int = 0
    max_size: int = 1
    desired_capacity: int = 0
    protect_from_scale_in: bool = False
    tags: Mapping[str, str] = field(default_factory=dict)
    # spot: the mixed instances policy's instance types (the stack takes three); () on-demand
    spot_instance_types: tuple[str, ...] = ()
    on_demand_base_capacity: int = 0


@dataclass(frozen=True)
class InfrastructurePlan:
    vpc_name: str
    cidr: str
    subnets: Sequence[SubnetPlan] = ()
    security_groups: Sequence[str] = ()
    clusters: Sequence[str] = ()
    auto_scaling_groups: Sequence[AsgPlan] = ()
    log_groups: Sequence[str] = ()
    roles: Sequence[str] = ()
    images: Sequence[str] = ()  # ECR image references
    secrets: Sequence[str] = ()  # Secrets Manager / SSM parameter ARNs


@dataclass(frozen=True)
class SeededAccount:
    """Ids of everything ``seed_account`` created or found, keyed by the plan's names."""

    region: str
    vpc_id: str
    subnet_ids: dict[str, str]
    security_group_ids: dict[str, str]
    cluster_arns: dict[str, str]
    launch_template_ids: dict[str, str]
    asg_arns: dict[str, str]
    role_arns: dict[str, str]
    log_group_names: list[str]


class SeedError(RuntimeError):
    """The plan cannot be seeded (unknown cluster, unsupported architecture, no AMI...)."""


def ecs_user_data(cluster: str) -> str:
    """User data of an ECS container instance, as the stack's launch templates write it: the
    agent reads ECS_CLUSTER (and the isolation settings) from ecs.config."""
    return (
        "#!/bin/bash\n"
        "cat >> /etc/ecs/ecs.config <<'EOF'\n"
        f"ECS_CLUSTER={cluster}\n"
        "ECS_AWSVPC_BLOCK_IMDS=true\n"
        "ECS_ENABLE_TASK_IAM_ROLE=true\n"
        "ECS_ENABLE_SPOT_INSTANCE_DRAINING=true\n"
        "EOF\n"
    )


def _name_tag(name: str, resource_type: str) -> list[dict[str, Any]]:
    return [{"ResourceType": resource_type, "Tags": [{"Key": "Name", "Value": name}]}]


def _validate(plan: InfrastructurePlan) -> None:
    for asg in plan.auto_scaling_groups:
        if asg.cluster not in plan.clusters:
            raise SeedError(f"auto scaling group {asg.name!r}: unknown cluster {asg.cluster!r}")
        if asg.architecture not in ARCHITECTURES:
            raise SeedError(
                f"auto scaling group {asg.name!r}: architecture must be one of {ARCHITECTURES}"
            )
        if not asg.min_size <= asg.desired_capacity <= asg.max_size:
            raise SeedError(
                f"auto scaling group {asg.name!r}: need min_size <= desired_capacity <= max_size"
            )
    if plan.auto_scaling_groups and not plan.subnets:
        raise SeedError("auto scaling groups need at least one subnet")


def seed_account(endpoint_url: str, region: str, plan: InfrastructurePlan) -> SeededAccount:
    """Create (or find) everything in ``plan`` in the sandbox account; return the ids."""
    _validate(plan)
    seeder = _Seeder(endpoint_url, region)
    vpc_id = seeder.ensure_vpc(plan.vpc_name, plan.cidr)
    subnet_ids = {s.name: seeder.ensure_subnet(vpc_id, s) for s in plan.subnets}
    security_group_ids = {
        name: seeder.ensure_security_group(vpc_id, name) for name in plan.security_groups
    }
    cluster_arns = {name: seeder.ensure_cluster(name) for name in plan.clusters}
    role_arns = {name: seeder.ensure_role(name) for name in plan.roles}
    for name in plan.log_groups:
        seeder.ensure_log_group(name)
    for arn in plan.secrets:
        seeder.ensure_secret(arn)
    for reference in plan.images:
        push_image(endpoint_url, reference)
    launch_template_ids: dict[str, str] = {}
    asg_arns: dict[str, str] = {}
    for asg in plan.auto_scaling_groups:
        launch_template_ids[asg.name] = seeder.ensure_launch_template(
            asg, list(security_group_ids.values())
        )
        asg_arns[asg.name] = seeder.ensure_auto_scaling_group(
            asg, launch_template_ids[asg.name], list(subnet_ids.values())
        )
    return SeededAccount(
        region=region,
        vpc_id=vpc_id,
        subnet_ids=subnet_ids,
        security_group_ids=security_group_ids,
        cluster_arns=cluster_arns,
        launch_template_ids=launch_template_ids,
        asg_arns=asg_arns,
        role_arns=role_arns,
        log_group_names=list(plan.log_groups),
    )


class _Seeder:
    """One look-up-then-create step per resource kind; holds the boto3 clients."""

    def __init__(self, endpoint_url: str, region: str) -> None:
        self.ec2 = sandbox_client("ec2", endpoint_url, region)
        self.ecs = sandbox_client("ecs", endpoint_url, region)
        self.autoscaling = sandbox_client("autoscaling", endpoint_url, region)
        self._endpoint_url = endpoint_url
        self._region = region
        self._ami_by_architecture: dict[str, str] = {}

    def ensure_vpc(self, name: str, cidr: str) -> str:
        found = self.ec2.describe_vpcs(Filters=[{"Name": "tag:Name", "Values": [name]}])["Vpcs"]
        if found:
            vpc = found[0]
            if vpc["CidrBlock"] != cidr:
                logger.warning("vpc %s exists with cidr %s, not %s", name, vpc["CidrBlock"], cidr)
        else:
            vpc = self.ec2.create_vpc(CidrBlock=cidr, TagSpecifications=_name_tag(name, "vpc"))[
                "Vpc"
            ]
            logger.info("created vpc %s (%s)", name, vpc["VpcId"])
        vpc_id: str = vpc["VpcId"]
        self._enable_dns(vpc_id)
        return vpc_id

    def _enable_dns(self, vpc_id: str) -> None:
        """DNS support and hostnames on, as ECS VPCs are configured.

        Also required by moto: RunTask with awsvpc fails with HTTP 500 (the task ENI has no
        ``private_dns_name``) unless the subnet's VPC has DNS hostnames enabled.
        """
        for attribute in ("EnableDnsSupport", "EnableDnsHostnames"):
            current = self.ec2.describe_vpc_attribute(
                VpcId=vpc_id, Attribute=attribute[0].lower() + attribute[1:]
            )
            if not current[attribute]["Value"]:
                self.ec2.modify_vpc_attribute(VpcId=vpc_id, **{attribute: {"Value": True}})

    def ensure_subnet(self, vpc_id: str, subnet: SubnetPlan) -> str:
        found = self.ec2.describe_subnets(
            Filters=[
                {"Name": "vpc-id", "Values": [vpc_id]},
                {"Name": "tag:Name", "Values": [subnet.name]},
            ]
        )["Subnets"]
        if found:
            subnet_id: str = found[0]["SubnetId"]
            return subnet_id
        created = self.ec2.create_subnet(
            VpcId=vpc_id,
            CidrBlock=subnet.cidr,
            AvailabilityZone=subnet.az,
            TagSpecifications=_name_tag(subnet.name, "subnet"),
        )["Subnet"]
        logger.info("created subnet %s (%s)", subnet.name, created["SubnetId"])
        subnet_id = created["SubnetId"]
        return subnet_id

    def ensure_security_group(self, vpc_id: str, name: str) -> str:
        for filter_name in ("tag:Name", "group-name"):
            found = self.ec2.describe_security_groups(
                Filters=[
                    {"Name": "vpc-id", "Values": [vpc_id]},
                    {"Name": filter_name, "Values": [name]},
                ]
            )["SecurityGroups"]
            if found:
                group_id: str = found[0]["GroupId"]
                return group_id
        group_id = self.ec2.create_security_group(
            GroupName=name,
            Description=f"ecs-reconciler sandbox: {name}",
            VpcId=vpc_id,
            TagSpecifications=_name_tag(name, "security-group"),
        )["GroupId"]
        logger.info("created security group %s (%s)", name, group_id)
        return group_id

    def ensure_cluster(self, name: str) -> str:
        # moto's CreateCluster replaces an existing cluster object (dropping its capacity
        # providers), so never call it for a cluster that exists.
        clusters = self.ecs.describe_clusters(clusters=[name])["clusters"]
        active = [c for c in clusters if c["status"] == "ACTIVE"]
        if active:
            arn: str = active[0]["clusterArn"]
            return arn
        arn = self.ecs.create_cluster(clusterName=name)["cluster"]["clusterArn"]
        logger.info("created ecs cluster %s", name)
        return arn

    def ensure_role(self, name: str) -> str:
        iam = sandbox_client("iam", self._endpoint_url, self._region)
        try:
            arn: str = iam.get_role(RoleName=name)["Role"]["Arn"]
            return arn
        except ClientError as error:
            if error.response["Error"]["Code"] != "NoSuchEntity":
                raise
        arn = iam.create_role(
            RoleName=name, AssumeRolePolicyDocument=json.dumps(ECS_TASKS_TRUST_POLICY)
        )["Role"]["Arn"]
        logger.info("created iam role %s", name)
        return arn

    def ensure_log_group(self, name: str) -> None:
        logs = sandbox_client("logs", self._endpoint_url, self._region)
        found = logs.describe_log_groups(logGroupNamePrefix=name)["logGroups"]
        if any(group["logGroupName"] == name for group in found):
            return
        logs.create_log_group(logGroupName=name)
        logger.info("created log group %s", name)

    def ensure_secret(self, arn: str) -> None:
        region = arn.split(":")[3]
        if ":secretsmanager:" in arn:
            secrets = sandbox_client("secretsmanager", self._endpoint_url, region)
            # moto finds a secret by a full ARN's last segment, so that is the name to create.
            name = arn.split(":secret:", 1)[1]
            try:
                secrets.describe_secret(SecretId=arn)
            except secrets.exceptions.ResourceNotFoundException:
                secrets.create_secret(Name=name, SecretString="sandbox")
                logger.info("created secret %s", name)
            return
        ssm = sandbox_client("ssm", self._endpoint_url, region)
        try:
            ssm.put_parameter(Name=ssm_parameter_name(arn), Value="sandbox", Type="SecureString")
            logger.info("created parameter %s", ssm_parameter_name(arn))
        except ssm.exceptions.ParameterAlreadyExists:
            pass

    def ami_for(self, architecture: Architecture) -> str:
        """The newest Amazon-owned, ECS-optimized if possible, AMI for ``architecture``."""
        if architecture in self._ami_by_architecture:
            return self._ami_by_architecture[architecture]
        for pattern in AMI_NAME_PATTERNS:
            images = self.ec2.describe_images(
                Owners=["amazon"],
                Filters=[
                    {"Name": "architecture", "Values": [architecture]},
                    {"Name": "name", "Values": [pattern]},
                ],
            )["Images"]
            if images:
                newest = max(
                    images, key=lambda image: (image.get("CreationDate", ""), image["Name"])
                )
                self._ami_by_architecture[architecture] = newest["ImageId"]
                logger.debug("ami for %s: %s (%s)", architecture, newest["ImageId"], newest["Name"])
                return self._ami_by_architecture[architecture]
        raise SeedError(f"no Amazon AMI for architecture {architecture} in the sandbox")

    def ensure_launch_template(self, asg: AsgPlan, security_group_ids: list[str]) -> str:
        found = self.ec2.describe_launch_templates(
            Filters=[{"Name": "launch-template-name", "Values": [asg.name]}]
        )["LaunchTemplates"]
        if found:
            template_id: str = found[0]["LaunchTemplateId"]
            return template_id
        user_data = base64.b64encode(ecs_user_data(asg.cluster).encode()).decode()
        created = self.ec2.create_launch_template(
            LaunchTemplateName=asg.name,
            LaunchTemplateData={
                "ImageId": self.ami_for(asg.architecture),
                "InstanceType": asg.instance_type,
                "UserData": user_data,
                "SecurityGroupIds": security_group_ids,
                "TagSpecifications": [
                    {"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": asg.name}]}
                ],
            },
            TagSpecifications=_name_tag(asg.name, "launch-template"),
        )["LaunchTemplate"]
        logger.info("created launch template %s (%s)", asg.name, created["LaunchTemplateId"])
        template_id = created["LaunchTemplateId"]
        return template_id

    def ensure_auto_scaling_group(
        self, asg: AsgPlan, launch_template_id: str, subnet_ids: list[str]
    ) -> str:
        found = self.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[asg.name])[
            "AutoScalingGroups"
        ]
        if found:
            existing = found[0]
            if (existing["MinSize"], existing["MaxSize"]) != (asg.min_size, asg.max_size):
                self.autoscaling.update_auto_scaling_group(
                    AutoScalingGroupName=asg.name, MinSize=asg.min_size, MaxSize=asg.max_size
                )
                logger.info("updated auto scaling group %s sizes", asg.name)
            arn: str = existing["AutoScalingGroupARN"]
            return arn
        tags = {"Name": asg.name, **asg.tags}
        self.autoscaling.create_auto_scaling_group(
            AutoScalingGroupName=asg.name,
            LaunchTemplate={"LaunchTemplateId": launch_template_id, "Version": "$Latest"},
            MinSize=asg.min_size,
            MaxSize=asg.max_size,
            DesiredCapacity=asg.desired_capacity,
            VPCZoneIdentifier=",".join(subnet_ids),
            NewInstancesProtectedFromScaleIn=asg.protect_from_scale_in,
            Tags=[
                {
                    "ResourceId": asg.name,
                    "ResourceType": "auto-scaling-group",
                    "Key": key,
                    "Value": value,
                    "PropagateAtLaunch": True,
                }
                for key, value in tags.items()
            ],
        )
        created = self.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[asg.name])[
            "AutoScalingGroups"
        ][0]
        logger.info("created auto scaling group %s", asg.name)
        arn = created["AutoScalingGroupARN"]
        return arn


def push_image(endpoint_url: str, reference: str) -> None:
    """Put `reference` (an ECR image) in the sandbox's ECR, creating its repository if needed.

    The manifest is a small Docker v2 manifest derived from the reference (unique per image);
    with a digest in the reference, the image is stored under that digest.
    """
    image = ImageReference.parse(reference)
    if image.ecr is None:
        raise SeedError(f"{reference} is not an ECR image (<account>.dkr.ecr.<region>...)")
    ecr = sandbox_client("ecr", endpoint_url, image.ecr[1])
    try:
        ecr.create_repository(repositoryName=image.name)
        logger.info("created ECR repository %s", image.name)
    except ecr.exceptions.RepositoryAlreadyExistsException:
        pass
    image_id = {"imageDigest": image.digest} if image.digest else {"imageTag": image.tag}
    try:
        ecr.describe_images(repositoryName=image.name, imageIds=[image_id])
        return
    except ecr.exceptions.ImageNotFoundException:
        pass
    seed = hashlib.sha256(reference.encode()).hexdigest()
    layer = {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 0}
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "size": 0,
            "digest": f"sha256:{seed}",
        },
        "layers": [{**layer, "digest": f"sha256:{seed}"}],
    }
    ecr.put_image(
        repositoryName=image.name,
        imageManifest=json.dumps(manifest),
        **({"imageTag": image.tag} if image.tag else {}),
        **({"imageDigest": image.digest} if image.digest else {}),
    )
    logger.info("pushed %s to the sandbox ECR", reference)
