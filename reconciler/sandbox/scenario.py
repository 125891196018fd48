"""The sandbox: a seeded local AWS account on moto's HTTP server, and the demo loop on it.

`Sandbox` starts moto on 127.0.0.1, creates what Terraform would have created for the
specs (VPC, named subnets and security groups, clusters, launch templates and Auto Scaling
groups, roles, log groups, secrets, the specs' ECR images as CI would have pushed them),
registers the groups' instances as ECS container instances, and simulates the runners in
tasks. The reconciler talks to it through the same boto3 code path as to AWS, only with
another endpoint URL.

With `github=True` it also serves a simulated GitHub (`FakeGitHub` on 127.0.0.1, with the
runner groups the specs name): the runner API the controller calls, and, through
`GitHubWorld`, jobs that runner tasks take (see `world`).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from ..aws.clients import AwsClients
from ..plan.state import MANAGED_BY_TAG, MANAGED_BY_VALUE
from ..spec.loader import SpecSet, load_specs
from ..spec.models import CapacityProvider
from ..verify.images import ImageReference
from .agent import SimulatedEcsAgent
from .github_server import FakeGitHub
from .infrastructure import AsgPlan, InfrastructurePlan, SubnetPlan, seed_account
from .runners import SimulatedRunners
from .server import (
    DEFAULT_REGION,
    SANDBOX_ACCESS_KEY_ID,
    SANDBOX_SECRET_ACCESS_KEY,
    MotoServer,
    ServerMode,
)

logger = logging.getLogger(__name__)

INSTANCES_PER_GROUP = 2
#: How often the simulated ECS agent registers new instances and runs new tasks by itself.
AGENT_INTERVAL = 1.0
MAX_INSTANCES_PER_GROUP = 10
#: moto registers every container instance with 4096 CPU units and 7482 MiB, whatever its type.
MOTO_INSTANCE_RESOURCES = (4096, 7482)
SANDBOX_GITHUB_TOKEN = "sandbox-token"  # only the local simulated GitHub accepts it
INSTANCE_TYPES = {"x86_64": "m6i.2xlarge", "arm64": "m7g.2xlarge"}


def infrastructure_for(spec_set: SpecSet) -> InfrastructurePlan:
    """What a Terraform module would have created for these specs."""
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
                max_size=MAX_INSTANCES_PER_GROUP,
                desired_capacity=_instances_for_peak_idle(provider, spec_set),
                # the infrastructure team hands the group to the reconciler by tagging it
                tags={MANAGED_BY_TAG: MANAGED_BY_VALUE}
                if provider.spec.scaling == "reconciler"
                else {},
            )
            for provider in spec_set.capacity_providers
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
    return min(MAX_INSTANCES_PER_GROUP, max(INSTANCES_PER_GROUP, math.ceil(needed)))


def _is_id(reference: str) -> bool:
    return reference.startswith(("subnet-", "sg-"))


class Sandbox:
    """A running, seeded sandbox account. Use as a context manager."""

    def __init__(
        self,
        spec_paths: Sequence[str | Path] = ("specs",),
        mode: ServerMode = "thread",
        github: bool = False,
        server: MotoServer | None = None,
    ) -> None:
        """`server`: a running moto server to use (reset first, left running on exit), for
        callers that share one between sandboxes; by default the sandbox starts its own."""
        self.spec_paths = list(spec_paths)
        self.server = server or MotoServer(mode=mode)
        self._owns_server = server is None
        self.github = FakeGitHub(tokens=[SANDBOX_GITHUB_TOKEN]) if github else None
        self.region = DEFAULT_REGION
        self.clusters: list[str] = []
        self._agent: SimulatedEcsAgent | None = None
        self._agent_lock = threading.Lock()
        self._agent_stop = threading.Event()
        self._agent_thread: threading.Thread | None = None
        self._runners: SimulatedRunners | None = None

    def __enter__(self) -> Self:
        self.start()
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
        if self.github is not None:
            self.github.close()

    @property
    def endpoint_url(self) -> str:
        """Where the sandbox's AWS APIs answer."""
        return self.server.endpoint_url

    def start(self) -> None:
        """Start moto, seed the account for the specs, register container instances."""
        if self._owns_server:
            self.server.start()
        else:
            self.server.reset()
        self.server.keep_tasks_running()
        if self.github is not None:
            self.github.start()
        self.seed(load_specs(self.spec_paths))
        self._agent_thread = threading.Thread(
            target=self._run_agent, name="sandbox-agent", daemon=True
        )
        self._agent_thread.start()

    def seed(self, spec_set: SpecSet) -> None:
        """Create (idempotently) the infrastructure the specs need."""
        plan = infrastructure_for(spec_set)
        seed_account(self.endpoint_url, self.region, plan)
        self.clusters = sorted(set(self.clusters) | set(plan.clusters))
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
        )

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

    def _sync_agent(self) -> None:
        with self._agent_lock:
            if self._agent is not None:
                self._agent.sync()

    def _run_agent(self) -> None:
        """Instances register with ECS by themselves, as the ECS agent on them does."""
        while not self._agent_stop.wait(AGENT_INTERVAL):
            try:
                self._sync_agent()
            except Exception as error:  # a sync racing a reset or a stop: try again later
                logger.debug("sandbox agent sync failed: %s", error)

    def environment(self) -> dict[str, str]:
        """The environment that points the CLI (or the AWS CLI) at this sandbox."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ACCESS_KEY_ID": SANDBOX_ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SANDBOX_SECRET_ACCESS_KEY,
            "ECS_RECONCILER_RUNNER_STATES": "task-tags",
        } | (
            {
                "ECS_RECONCILER_RUNNER_STATES": "github",
                "GITHUB_API_URL": self.github.url,
                "GITHUB_TOKEN": SANDBOX_GITHUB_TOKEN,
            }
            if self.github is not None
            else {}
        )


def _add_runner_groups(github: FakeGitHub, spec_set: SpecSet) -> None:
    """The runner groups the pools name, in their enterprise or organization (idempotent)."""
    for pool in spec_set.pools:
        spec = pool.spec
        if spec.scope.kind == "repository" or spec.runner_group == "Default":
            continue
        path = "/enterprises/" if spec.scope.kind == "enterprise" else "/orgs/"
        github.ensure_runner_group(path + spec.scope.target, spec.runner_group)
