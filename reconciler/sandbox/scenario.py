"""The sandbox: a local AWS account on moto's HTTP server, deployed from the production
CloudFormation template, and the demo loop on it.

`Sandbox` starts moto on 127.0.0.1 and builds the account the way a platform team would:
the stack's inputs first (a VPC and the subnets the specs name, the specs' ECR images as CI
would have pushed them, the secrets they reference, the controller's GitHub secret), then
`deploy/cloudformation/ecs-reconciler.yaml` through CloudFormation's `CreateStack` (cluster,
runner security group and roles, up to three capacity classes, tables, key, log groups, the
controller service), then by hand only what one stack does not cover for these specs
(`HAND_SEEDED`). It registers the groups' instances as ECS container instances and simulates
the runners in tasks. The reconciler talks to it through the same boto3 code path as to AWS,
only with another endpoint URL.

With `github=True` it also serves a simulated GitHub (`FakeGitHub` on 127.0.0.1, with the
runner groups the specs name): the runner API the controller calls, and, through
`GitHubWorld`, jobs that runner tasks take (see `world`).
"""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from botocore.exceptions import ClientError

from ..aws.clients import AwsClients
from ..plan.state import MANAGED_BY_TAG, MANAGED_BY_VALUE
from ..spec.loader import SpecSet, load_specs
from ..spec.models import CapacityProvider
from ..verify.images import ImageReference
from .agent import SimulatedEcsAgent
from .github_server import FakeGitHub
from .infrastructure import AsgPlan, InfrastructurePlan, SeedError, SubnetPlan, seed_account
from .moto_fidelity import SPOT_SHORTAGE_TAG
from .runners import SimulatedRunners
from .server import (
    DEFAULT_REGION,
    SANDBOX_ACCESS_KEY_ID,
    SANDBOX_SECRET_ACCESS_KEY,
    MotoServer,
    ServerMode,
    sandbox_client,
)

logger = logging.getLogger(__name__)

INSTANCES_PER_GROUP = 2
#: How often the simulated ECS agent registers new instances and runs new tasks by itself.
AGENT_INTERVAL = 1.0
#: moto registers every container instance with 4096 CPU units and 7482 MiB, whatever its type.
MOTO_INSTANCE_RESOURCES = (4096, 7482)
SANDBOX_GITHUB_TOKEN = "sandbox-token"  # only the local simulated GitHub accepts it
INSTANCE_TYPES = {"x86_64": "m6i.2xlarge", "arm64": "m7g.2xlarge"}
MAX_GROUP_SIZE = 10

TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "cloudformation" / "ecs-reconciler.yaml"
STACK_NAME = "ecs-reconciler"
CAPACITY_CLASSES = 3  # Class1..Class3 in the template
SPOT_TYPES_PER_CLASS = 3  # a spot class's mixed instances policy overrides in the template
#: The JIT configuration key the stack creates (JitParameterKeyAlias).
JIT_KEY_ALIAS = "alias/ecs-reconciler-jit"
CONTROLLER_SECRET_NAME = "ecs-reconciler/github"
#: What the sandbox still creates by hand, and why (deploy/README.md lists the same).
HAND_SEEDED = (
    "the stack's inputs: the VPC and the subnets the specs name (a real account has them)",
    "the specs' ECR images, as CI would have pushed them, and the secrets pools reference",
    "the controller's GitHub secret (GitHubSecretArn): credentials are never in a template",
    "clusters, capacity classes (beyond three), security groups, roles and log groups the "
    "specs name that one stack does not create: the template has one cluster, three "
    "capacity classes, one runner security group and fixed role and log group names",
)


#: the example spec set's organization pool, which the benchmarks and the soak run alone
PLATFORM_POOL_FILE = "org-platform-dind.yaml"
#: the edit that takes its Docker sidecar away (`platform_pool_alone` drops the image too)
WITHOUT_SIDECAR = ("  docker:\n    mode: dind\n", "  docker:\n    mode: none\n")


def run_command(
    specs: Path,
    resync: float,
    *options: str,
    identity: str | None = None,
    lease_timing: str | None = None,
    verbose: bool = False,
) -> list[str]:
    """`ecs-reconciler run` on `specs` as a process on an ephemeral 127.0.0.1 port (its first
    line of output says which), with leader election as `identity` when one is given."""
    command = [sys.executable, "-m", "reconciler.cli.main", *(["-v"] if verbose else []), "run"]
    command += ["--specs", str(specs), "--listen", "127.0.0.1:0", "--resync", f"{resync:g}"]
    if identity is not None:
        command += ["--leader-election", "--identity", identity]
    if lease_timing is not None:
        command += ["--lease-timing", lease_timing]
    return [*command, *options]


def without_schedules(text: str) -> str:
    """A spec file's text with its idle `schedules:` blocks removed (so that what it asks is
    the same at any hour)."""
    kept: list[str] = []
    block_indent: int | None = None
    for line in text.splitlines(keepends=True):
        indent = len(line) - len(line.lstrip())
        if block_indent is not None and (not line.strip() or indent > block_indent):
            continue
        block_indent = indent if line.strip() == "schedules:" else None
        if block_indent is None:
            kept.append(line)
    return "".join(kept)


def platform_pool_alone(directory: Path, edits: Sequence[tuple[str, str]]) -> Path:
    """`directory/specs` with the example capacity providers and the platform pool alone,
    `edits` (old, new) applied to the pool, without its idle schedules (what it asks is the
    same at any hour); without a sidecar (`WITHOUT_SIDECAR`), its image goes too. ValueError
    if the example pool no longer has an `old`."""
    examples = TEMPLATE.parents[2] / "specs"
    target = directory / "specs"
    target.mkdir(parents=True)
    shutil.copy(examples / "capacity-providers.yaml", target)
    text = without_schedules((examples / PLATFORM_POOL_FILE).read_text())
    for old, new in edits:
        if old not in text:
            raise ValueError(f"the example pool no longer has {old!r}")
        text = text.replace(old, new)
    if WITHOUT_SIDECAR in edits:
        text = re.sub(r"\n    image: docker:[^\n]*", "", text)
    (target / PLATFORM_POOL_FILE).write_text(text)
    return target


def infrastructure_for(spec_set: SpecSet) -> InfrastructurePlan:
    """Everything the specs need from the platform (the stack creates most of it)."""
    subnets = sorted(
        {ref for p in spec_set.pools for ref in p.spec.network.subnets if not _is_id(ref)}
    )
    groups = sorted(
        {ref for p in spec_set.pools for ref in p.spec.network.security_groups if not _is_id(ref)}
    )
    clusters = sorted(
        {p.spec.cluster for p in spec_set.pools}
        | {c.spec.cluster for c in spec_set.capacity_providers}
    )
    architectures = {p.spec.capacity_provider: p.spec.architecture for p in spec_set.pools}
    roles = sorted(
        {
            arn.rsplit("/", 1)[-1]
            for p in spec_set.pools
            for arn in (p.spec.iam.execution_role_arn, p.spec.iam.task_role_arn)
            if arn
        }
    )
    return InfrastructurePlan(
        vpc_name="ci-runners",
        cidr="10.0.0.0/16",
        subnets=[
            SubnetPlan(name, f"10.0.{index}.0/24", f"{DEFAULT_REGION}{'abcdef'[index % 6]}")
            for index, name in enumerate(subnets)
        ],
        security_groups=groups,
        clusters=clusters,
        auto_scaling_groups=[
            AsgPlan(
                name=provider.spec.auto_scaling_group.rsplit("/", 1)[-1],
                cluster=provider.spec.cluster,
                instance_type=INSTANCE_TYPES[architectures.get(provider.metadata.name, "x86_64")],
                architecture=architectures.get(provider.metadata.name, "x86_64"),
                min_size=0,
                max_size=MAX_GROUP_SIZE,
                desired_capacity=_instances_for_peak_idle(provider, spec_set),
                # the infrastructure team hands the group to the reconciler by tagging it
                tags={MANAGED_BY_TAG: MANAGED_BY_VALUE}
                if provider.spec.scaling == "reconciler"
                else {},
                spot_instance_types=tuple(mixed.instance_types) if mixed else (),
                on_demand_base_capacity=mixed.on_demand_base_capacity if mixed else 0,
            )
            for provider in spec_set.capacity_providers
            for mixed in [provider.spec.mixed_instances]
        ],
        log_groups=sorted({p.spec.logging.log_group for p in spec_set.pools}),
        roles=roles,
        images=sorted(
            {
                image
                for p in spec_set.pools
                for image in (p.spec.runner.image, p.spec.docker.image)
                if image and ImageReference.parse(image).ecr
            }
        ),
        secrets=sorted({s.value_from for p in spec_set.pools for s in p.spec.secrets}),
    )


def _instances_for_peak_idle(provider: CapacityProvider, spec_set: SpecSet) -> int:
    """Instances a group starts with: INSTANCES_PER_GROUP, or, for a group nobody scales in
    the sandbox (ECS managed scaling does not run on moto), enough for the largest idle
    target any schedule of its pools can ask, so the sandbox converges at any hour. Groups
    the reconciler scales grow by themselves."""
    if provider.spec.scaling == "reconciler":
        return INSTANCES_PER_GROUP
    cpu, memory = MOTO_INSTANCE_RESOURCES
    needed = 0.0
    for pool in spec_set.pools:
        if pool.spec.capacity_provider != provider.metadata.name:
            continue
        scaling = pool.spec.scaling
        peak = max([scaling.idle, *(schedule.idle for schedule in scaling.schedules)])
        runners = min(scaling.max, max(scaling.min, peak))
        per_instance = min(cpu // pool.spec.resources.cpu, memory // pool.spec.resources.memory)
        needed += runners / max(per_instance, 1)
    return min(MAX_GROUP_SIZE, max(INSTANCES_PER_GROUP, math.ceil(needed)))


def _size_groups(
    endpoint_url: str, region: str, plan: InfrastructurePlan, stack: StackPlan, minimum: int
) -> None:
    """The stack starts every group at InitialDesiredCapacity; groups nobody scales in the
    sandbox get the size `infrastructure_for` chose (room for their peak idle target), and
    every group at least `minimum` instances."""
    autoscaling = sandbox_client("autoscaling", endpoint_url, region)
    for group in plan.auto_scaling_groups:
        size = min(group.max_size, max(group.desired_capacity, minimum))
        if group.name in stack.group_names and size > INSTANCES_PER_GROUP:
            autoscaling.set_desired_capacity(AutoScalingGroupName=group.name, DesiredCapacity=size)


def _is_id(reference: str) -> bool:
    return reference.startswith(("subnet-", "sg-"))


@dataclass(frozen=True)
class StackPlan:
    """The template's parameters for a spec set, and what of the full plan it creates."""

    cluster: str
    security_group: str
    group_names: tuple[str, ...]
    role_names: tuple[str, ...]
    log_groups: tuple[str, ...] = ("/ecs-reconciler/runners", "/ecs/ecs-reconciler-controller")

    def parameters(
        self,
        plan: InfrastructurePlan,
        vpc_id: str,
        subnet_ids: Sequence[str],
        github_secret_arn: str,
    ) -> dict[str, str]:
        """CreateStack parameters: the groups' classes from `plan`, sizes as the sandbox's."""
        groups = {asg.name: asg for asg in plan.auto_scaling_groups}
        parameters = {
            "VpcId": vpc_id,
            "PrivateSubnetIds": ",".join(subnet_ids),
            "ClusterName": self.cluster,
            "RunnerSecurityGroupName": self.security_group,
            "InitialDesiredCapacity": str(INSTANCES_PER_GROUP),
            "ControllerImage": "ecs-reconciler:sandbox",
            "SpecRepositoryUrl": "https://github.com/acme/runner-specs.git",
            "GitHubSecretArn": github_secret_arn,
        }
        for index in range(1, CAPACITY_CLASSES + 1):
            name = self.group_names[index - 1] if index <= len(self.group_names) else ""
            asg = groups.get(name)
            parameters[f"Class{index}GroupName"] = name
            if asg is not None:
                parameters[f"Class{index}Architecture"] = asg.architecture
                parameters[f"Class{index}InstanceType"] = asg.instance_type
                parameters[f"Class{index}MaxSize"] = str(asg.max_size)
                owned = asg.tags.get(MANAGED_BY_TAG) == MANAGED_BY_VALUE
                parameters[f"Class{index}ScaledBy"] = "reconciler" if owned else "ecs"
                if len(asg.spot_instance_types) >= SPOT_TYPES_PER_CLASS:  # else on-demand
                    spot_types = asg.spot_instance_types[:SPOT_TYPES_PER_CLASS]
                    parameters[f"Class{index}SpotInstanceTypes"] = ",".join(spot_types)
                    parameters[f"Class{index}OnDemandBaseCapacity"] = str(
                        asg.on_demand_base_capacity
                    )
        return parameters


def stack_plan_for(plan: InfrastructurePlan) -> StackPlan:
    """What one stack covers: the cluster with the most Auto Scaling groups (ties: by name),
    its first three groups, one security group, the cluster's runner roles."""
    clusters = plan.clusters or ["ci-runners"]
    cluster = min(
        clusters,
        key=lambda c: (-sum(1 for g in plan.auto_scaling_groups if g.cluster == c), c),
    )
    groups = sorted(g.name for g in plan.auto_scaling_groups if g.cluster == cluster)
    security_group = (
        sorted(plan.security_groups)[0] if plan.security_groups else f"{cluster}-egress"
    )
    return StackPlan(
        cluster=cluster,
        security_group=security_group,
        group_names=tuple(groups[:CAPACITY_CLASSES]),
        role_names=(f"{cluster}-task", f"{cluster}-execution"),
    )


def split_plan(
    plan: InfrastructurePlan, stack: StackPlan
) -> tuple[InfrastructurePlan, InfrastructurePlan]:
    """(the stack's inputs, what is left to seed by hand after the stack)."""
    subnets = list(plan.subnets) or [
        SubnetPlan("sandbox-private-a", "10.0.0.0/24", f"{DEFAULT_REGION}a")
    ]
    inputs = InfrastructurePlan(
        vpc_name=plan.vpc_name,
        cidr=plan.cidr,
        subnets=subnets,
        images=plan.images,
        secrets=plan.secrets,
    )
    rest = replace(
        inputs,
        images=(),
        secrets=(),
        security_groups=[g for g in plan.security_groups if g != stack.security_group],
        clusters=[c for c in plan.clusters if c != stack.cluster],
        auto_scaling_groups=[
            g for g in plan.auto_scaling_groups if g.name not in stack.group_names
        ],
        log_groups=[g for g in plan.log_groups if g not in stack.log_groups],
        roles=[r for r in plan.roles if r not in stack.role_names],
    )
    # groups seeded by hand may belong to the stack's cluster: seed_account needs it named
    if any(g.cluster == stack.cluster for g in rest.auto_scaling_groups):
        rest = replace(rest, clusters=[*rest.clusters, stack.cluster])
    return inputs, rest


def deploy_stack(
    endpoint_url: str, region: str, parameters: Mapping[str, str], template: Path = TEMPLATE
) -> dict[str, str]:
    """Create the stack (once; an existing one is kept) and return its outputs."""
    if not template.exists():
        raise SeedError(f"{template} not found: the sandbox runs from a checkout of the repository")
    cloudformation = sandbox_client("cloudformation", endpoint_url, region)
    try:
        stack = cloudformation.describe_stacks(StackName=STACK_NAME)["Stacks"][0]
    except ClientError as error:
        if "does not exist" not in str(error):
            raise
        cloudformation.create_stack(
            StackName=STACK_NAME,
            TemplateBody=template.read_text(),
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
            Capabilities=["CAPABILITY_NAMED_IAM"],
        )
        stack = cloudformation.describe_stacks(StackName=STACK_NAME)["Stacks"][0]
        logger.info("created stack %s: %s", STACK_NAME, stack["StackStatus"])
    if stack["StackStatus"] != "CREATE_COMPLETE":
        raise SeedError(
            f"stack {STACK_NAME}: {stack['StackStatus']} {stack.get('StackStatusReason', '')}"
        )
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def ensure_controller_secret(endpoint_url: str, region: str) -> str:
    """The controller's GitHub secret (JSON: token) in the sandbox; its ARN."""
    secrets = sandbox_client("secretsmanager", endpoint_url, region)
    try:
        arn: str = secrets.describe_secret(SecretId=CONTROLLER_SECRET_NAME)["ARN"]
        return arn
    except secrets.exceptions.ResourceNotFoundException:
        pass
    value = json.dumps({"token": SANDBOX_GITHUB_TOKEN})
    arn = secrets.create_secret(Name=CONTROLLER_SECRET_NAME, SecretString=value)["ARN"]
    return arn


class Sandbox:
    """A running, seeded sandbox account. Use as a context manager."""

    def __init__(
        self,
        spec_paths: Sequence[str | Path] = ("specs",),
        mode: ServerMode = "thread",
        github: bool = False,
        server: MotoServer | None = None,
        instances_per_group: int = INSTANCES_PER_GROUP,
        agent_interval: float | None = AGENT_INTERVAL,
        own_dynamodb: bool = False,
    ) -> None:
        """`server`: a running moto server to use (reset first, left running on exit), for
        callers that share one between sandboxes; by default the sandbox starts its own.
        `instances_per_group`: instances each Auto Scaling group starts with (at least).
        `agent_interval`: how often the simulated ECS agent syncs by itself; None: only on
        `tick()`, for callers that step the agent themselves.
        `own_dynamodb`: DynamoDB in a moto process of its own (the stack's tables are moved
        there), as in AWS, where it is another service: one moto process serves ~100-150
        requests a second, and a burst's demand writes queued behind ECS's calls
        (issue 19). Clients and `environment()` point DynamoDB at it."""
        self.instances_per_group = instances_per_group
        self.agent_interval = agent_interval
        self.spec_paths = list(spec_paths)
        self.server = server or MotoServer(mode=mode)
        self._owns_server = server is None
        self.dynamodb_server = MotoServer(mode="process") if own_dynamodb else None
        self.github = FakeGitHub(tokens=[SANDBOX_GITHUB_TOKEN]) if github else None
        self.region = DEFAULT_REGION
        self.clusters: list[str] = []
        self.stack_outputs: dict[str, str] = {}
        self._agent: SimulatedEcsAgent | None = None
        self._agent_lock = threading.Lock()
        self._agent_stop = threading.Event()
        self._agent_thread: threading.Thread | None = None
        self._runners: SimulatedRunners | None = None

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:  # stop what did start (moto processes) before passing it on
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._agent_stop.set()
        if self._agent_thread is not None:
            self._agent_thread.join(timeout=30)
        if self._owns_server:
            self.server.stop()
        if self.dynamodb_server is not None:
            self.dynamodb_server.stop()
        if self.github is not None:
            self.github.close()

    @property
    def endpoint_url(self) -> str:
        """Where the sandbox's AWS APIs answer."""
        return self.server.endpoint_url

    def start(self) -> None:
        """Start moto, seed the account for the specs, register container instances."""
        if self.dynamodb_server is not None:
            self.dynamodb_server.start()
        if self._owns_server:
            self.server.start()
        else:
            self.server.reset()
        # moto loads its CloudFormation models (every service's) on the first call: let it do
        # that while the stack's inputs are seeded
        warm_up = threading.Thread(target=self._warm_up_cloudformation, daemon=True)
        warm_up.start()
        self.server.keep_tasks_running()
        if self.github is not None:
            self.github.start()
        self.seed(load_specs(self.spec_paths))
        warm_up.join()
        if self.agent_interval is not None:
            self._agent_thread = threading.Thread(
                target=self._run_agent,
                args=(self.agent_interval,),
                name="sandbox-agent",
                daemon=True,
            )
            self._agent_thread.start()

    def _warm_up_cloudformation(self) -> None:
        sandbox_client("cloudformation", self.endpoint_url, self.region).list_stacks()

    def seed(self, spec_set: SpecSet) -> None:
        """Create the infrastructure the specs need: inputs, the stack, the rest by hand."""
        plan = infrastructure_for(spec_set)
        stack = stack_plan_for(plan)
        inputs, rest = split_plan(plan, stack)
        seeded = seed_account(self.endpoint_url, self.region, inputs)
        self.stack_outputs = deploy_stack(
            self.endpoint_url,
            self.region,
            stack.parameters(
                plan,
                seeded.vpc_id,
                list(seeded.subnet_ids.values()),
                ensure_controller_secret(self.endpoint_url, self.region),
            ),
        )
        _size_groups(self.endpoint_url, self.region, plan, stack, self.instances_per_group)
        if self.dynamodb_server is not None:
            move_tables(self.endpoint_url, self.dynamodb_server.endpoint_url, self.region)
        seed_account(self.endpoint_url, self.region, rest)
        self.clusters = sorted(set(self.clusters) | set(plan.clusters) | {stack.cluster})
        with self._agent_lock:
            self._agent = SimulatedEcsAgent(self.endpoint_url, self.region)
            self._runners = SimulatedRunners(self.clients())
            self._agent.sync()
        if self.github is not None:
            _add_runner_groups(self.github, spec_set)

    def clients(self, read_only: bool = False) -> AwsClients:
        """AWS clients pointed at the sandbox."""
        return AwsClients(
            region=self.region,
            endpoint_url=self.endpoint_url,
            read_only=read_only,
            credentials=(SANDBOX_ACCESS_KEY_ID, SANDBOX_SECRET_ACCESS_KEY),
            service_endpoints=self.service_endpoints,
        )

    @property
    def service_endpoints(self) -> dict[str, str]:
        """The services that answer elsewhere than `endpoint_url` (DynamoDB with its own)."""
        if self.dynamodb_server is None:
            return {}
        return {"dynamodb": self.dynamodb_server.endpoint_url}

    @property
    def agent(self) -> SimulatedEcsAgent:
        """The simulated ECS agent (to make an image crash after start...)."""
        assert self._agent is not None, "sandbox not started"
        return self._agent

    @property
    def runners(self) -> SimulatedRunners:
        """The simulated runners (to make them busy, finish jobs...)."""
        assert self._runners is not None, "sandbox not started"
        return self._runners

    def tick(self) -> None:
        """Let simulated time pass: new instances register; without a simulated GitHub, new
        runners come online (idle) as task tags (with one, `GitHubWorld` runs them)."""
        self._sync_agent()
        if self.github is None:
            for cluster in self.clusters:
                self.runners.register_new(cluster)

    def fail_spot_launches(self, group: str) -> None:
        """From now on the Auto Scaling group's launches fail for lack of spot capacity
        (a `Failed` scaling activity per attempt, no instance; see `moto_fidelity`)."""
        self.clients().autoscaling.create_or_update_tags(Tags=[_shortage_tag(group)])

    def restore_spot_launches(self, group: str) -> None:
        """Spot capacity is back: the group launches the instances its desired capacity still
        lacks (Auto Scaling retries failed launches by itself; moto launches when the desired
        capacity is set, so it is set again to the same value)."""
        autoscaling = self.clients().autoscaling
        autoscaling.delete_tags(Tags=[_shortage_tag(group)])
        (found,) = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[group])[
            "AutoScalingGroups"
        ]
        autoscaling.set_desired_capacity(
            AutoScalingGroupName=group, DesiredCapacity=found["DesiredCapacity"]
        )

    def interrupt_spot_instance(self, instance_id: str) -> None:
        """A spot interruption notice reaches the instance: with ECS_ENABLE_SPOT_INSTANCE_DRAINING
        (set by the stack's launch templates) its ECS agent sets the container instance
        DRAINING ("Spot Instance draining", Amazon ECS Developer Guide). The instance itself is
        left running (EC2 reclaims it two minutes later; terminate it to play that)."""
        ecs = self.clients().ecs
        for cluster in self.clusters:
            arns = ecs.list_container_instances(cluster=cluster)["containerInstanceArns"]
            described = (
                ecs.describe_container_instances(cluster=cluster, containerInstances=arns)[
                    "containerInstances"
                ]
                if arns
                else []
            )
            found = [
                i["containerInstanceArn"] for i in described if i["ec2InstanceId"] == instance_id
            ]
            if found:
                ecs.update_container_instances_state(
                    cluster=cluster, containerInstances=found, status="DRAINING"
                )
                return
        raise ValueError(f"instance {instance_id} is not registered in {self.clusters}")

    def _sync_agent(self) -> None:
        with self._agent_lock:
            if self._agent is not None:
                self._agent.sync()

    def _run_agent(self, interval: float) -> None:
        """Instances register with ECS by themselves, as the ECS agent on them does."""
        while not self._agent_stop.wait(interval):
            try:
                self._sync_agent()
            except Exception as error:  # a sync racing a reset or a stop: try again later
                logger.debug("sandbox agent sync failed: %s", error)

    def environment(self) -> dict[str, str]:
        """The environment that points the CLI (or the AWS CLI) at this sandbox."""
        return (
            {
                "AWS_ENDPOINT_URL": self.endpoint_url,
                "AWS_REGION": self.region,
                "AWS_DEFAULT_REGION": self.region,
                "AWS_ACCESS_KEY_ID": SANDBOX_ACCESS_KEY_ID,
                "AWS_SECRET_ACCESS_KEY": SANDBOX_SECRET_ACCESS_KEY,
                "ECS_RECONCILER_RUNNER_STATES": "task-tags",
            }
            | {  # the SDKs' service-specific endpoint variables (AWS SDKs and Tools guide)
                f"AWS_ENDPOINT_URL_{service.upper()}": url
                for service, url in self.service_endpoints.items()
            }
            | (
                {
                    "ECS_RECONCILER_RUNNER_STATES": "github",
                    "GITHUB_API_URL": self.github.url,
                    "GITHUB_TOKEN": SANDBOX_GITHUB_TOKEN,
                }
                if self.github is not None
                else {}
            )
        )


def move_tables(source_url: str, target_url: str, region: str) -> None:
    """Create every DynamoDB table of `source_url` (as the stack made them: keys, indexes,
    TTL) at `target_url`, empty, and delete it at the source: a client left pointing at the
    source fails (ResourceNotFoundException) instead of writing where nobody reads."""
    source = sandbox_client("dynamodb", source_url, region)
    target = sandbox_client("dynamodb", target_url, region)
    for name in source.list_tables()["TableNames"]:
        table = source.describe_table(TableName=name)["Table"]
        indexes = [
            {key: index[key] for key in ("IndexName", "KeySchema", "Projection")}
            for index in table.get("GlobalSecondaryIndexes", [])
        ]
        target.create_table(
            TableName=name,
            KeySchema=table["KeySchema"],
            AttributeDefinitions=table["AttributeDefinitions"],
            BillingMode="PAY_PER_REQUEST",
            **({"GlobalSecondaryIndexes": indexes} if indexes else {}),
        )
        ttl = source.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        if ttl.get("TimeToLiveStatus") in ("ENABLED", "ENABLING"):
            target.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]},
            )
        source.delete_table(TableName=name)


def _shortage_tag(group: str) -> dict[str, Any]:
    return {
        "ResourceId": group,
        "ResourceType": "auto-scaling-group",
        "Key": SPOT_SHORTAGE_TAG,
        "Value": "true",
        "PropagateAtLaunch": False,
    }


def _add_runner_groups(github: FakeGitHub, spec_set: SpecSet) -> None:
    """The runner groups the pools name, in their enterprise or organization, with the access
    the specs state (idempotent): the platform team's GitHub configuration."""
    for pool in spec_set.pools:
        spec, access = pool.spec, pool.spec.runner_group_access
        if spec.scope.kind == "repository" or (spec.runner_group == "Default" and not access):
            continue
        path = (
            "/enterprises/" if spec.scope.kind == "enterprise" else "/orgs/"
        ) + spec.scope.target
        if access is None:
            github.ensure_runner_group(path, spec.runner_group)
        else:
            members = access.repositories or access.organizations
            github.set_runner_group_access(path, spec.runner_group, members)
