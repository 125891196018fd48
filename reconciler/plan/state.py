"""The shapes the planner compares: desired state (from specs) and observed state (from AWS).

Plain, immutable data with no I/O. Both sides use the same shapes, already normalized
(see `normalize`), so that the planner compares like with like.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

MANAGED_BY_TAG = "ecs-reconciler:managed-by"
MANAGED_BY_VALUE = "ecs-reconciler"
POOL_TAG = "ecs-reconciler:pool"
SPEC_HASH_TAG = "ecs-reconciler:spec-hash"
DELETION_POLICY_TAG = "ecs-reconciler:deletion-policy"
SCOPE_TAG = "ecs-reconciler:scope"  # on runner tasks: where the runner registers, kind:name
RUNNER_NAME_TAG = "ecs-reconciler:runner-name"  # on runner tasks: its GitHub runner name
RUNNER_ID_TAG = "ecs-reconciler:runner-id"  # on runner tasks: its JIT registration's runner id
# on runner tasks: the RunTask client token of the batch that started them (every task of a
# batch carries the same tags; the runner name and id are tagged once the task is bound)
START_TOKEN_TAG = "ecs-reconciler:start-token"
# on runner tasks and scaled Auto Scaling groups: the lease epoch of the term that started /
# resized them (0 without leader election)
LEASE_EPOCH_TAG = "ecs-reconciler:lease-epoch"
# on a task-definition revision: short ids of its runner tasks that failed (see plan.rollout)
ROLLOUT_FAILURES_TAG = "ecs-reconciler:rollout-failures"
STARTED_BY = "ecs-reconciler"
FAMILY_PREFIX = "ecs-reconciler-"


def family_of(pool_name: str) -> str:
    """The ECS task-definition family of a pool."""
    return f"{FAMILY_PREFIX}{pool_name}"


def pool_of_family(family: str) -> str | None:
    """The pool name a family belongs to, or None for families that are not ours."""
    return family[len(FAMILY_PREFIX) :] if family.startswith(FAMILY_PREFIX) else None


def group_name_of(reference: str) -> str:
    """An Auto Scaling group's name from its name or ARN."""
    marker = ":autoScalingGroupName/"
    return reference.split(marker, 1)[1] if marker in reference else reference


def mixed_instances_of(policy: dict[str, Any] | None) -> dict[str, Any]:
    """A group's MixedInstancesPolicy (DescribeAutoScalingGroups) in the comparable shape of
    a spec's `mixedInstances`; {} for a group without one. Absent distribution fields take the
    API's defaults (on-demand base 0, 100% on-demand above it)."""
    if not policy:
        return {}
    distribution = policy.get("InstancesDistribution", {})
    overrides = policy.get("LaunchTemplate", {}).get("Overrides", [])
    return {
        "instanceTypes": [o["InstanceType"] for o in overrides if o.get("InstanceType")],
        "onDemandBaseCapacity": int(distribution.get("OnDemandBaseCapacity", 0)),
        "onDemandPercentageAboveBaseCapacity": int(
            distribution.get("OnDemandPercentageAboveBaseCapacity", 100)
        ),
        "spotAllocationStrategy": str(distribution.get("SpotAllocationStrategy", "")),
    }


def is_owned(tags: dict[str, str]) -> bool:
    """True when a resource carries our managed-by tag."""
    return tags.get(MANAGED_BY_TAG) == MANAGED_BY_VALUE


class RunnerState(StrEnum):
    """What GitHub (or the sandbox) says the runner inside a task is doing."""

    IDLE = "idle"
    BUSY = "busy"
    UNKNOWN = "unknown"  # not registered yet, offline, or no source of runner state
    FAILED = "failed"  # its runner never came online within the boot timeout: stopped


# ---------------------------------------------------------------- desired


@dataclass(frozen=True)
class DesiredCapacityProvider:
    """A capacity provider as the specs want it."""

    name: str
    cluster: str
    auto_scaling_group: str
    settings: dict[str, Any]  # normalized managedScaling / managedTerminationProtection
    tags: dict[str, str]
    scaling: str = "managed"  # managed (ECS) | reconciler (bin packing, see plan.capacity)
    min_instance_lifetime: int = 600  # seconds registered before an empty one may go
    # the group's mixed instances policy as the spec states it ({}: on-demand only), in the
    # shape of `mixed_instances_of` (the group is infrastructure: only compared, never changed)
    mixed_instances: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DesiredPool:
    """A runner pool as the specs want it, at one point in time."""

    name: str
    cluster: str
    capacity_provider: str
    task_definition: dict[str, Any]  # normalized RegisterTaskDefinition input, without tags
    spec_hash: str
    task_definition_tags: dict[str, str]
    task_tags: dict[str, str]
    desired_count: int  # with no demand: max(min, idle target), within max
    count_reason: str
    max_surge: int
    subnets: tuple[str, ...]
    security_groups: tuple[str, ...]
    deletion_policy: str
    minimum: int = 0
    maximum: int = 0  # 0: not rendered from a spec with bounds; desired_count is the target
    idle_target: int = 0
    idle_reason: str = ""  # why idle_target (schedule, queue-wait objective)
    spare_room: int = 0  # runner-sized instance room the autoscaler keeps (queue-wait objective)
    canary: int = 0  # new-revision runners that must come online before the rollout goes on
    max_failures: int = 0  # new-revision runner failures that halt the rollout (0: never)
    pending: int = 0  # queued jobs this pool serves, capped per repository
    labels: tuple[str, ...] = ()
    runner_group: str = "Default"
    # who the runner group admits, when not all of the scope ("": all), e.g. "3 repositories"
    group_admits: str = ""
    # spot: the on-demand provider new runners go to while spot cannot launch ("": no spot)
    spot_fallback: str = ""
    spot_retry_after: int = 600  # seconds after a failed spot launch before spot is tried again

    def target(self, busy: int) -> tuple[int, str]:
        """Runners wanted: clamp(busy + pending + idle target, min, max), and why.

        Busy runners do not count as warm: the idle target is on top of the work in hand.
        """
        if not self.maximum:
            return self.desired_count, self.count_reason
        wanted = busy + self.pending + self.idle_target
        count = min(self.maximum, max(self.minimum, wanted))
        why = f" ({self.idle_reason})" if "slo:" in self.idle_reason else ""
        admits = (
            f" (group {self.runner_group!r} admits {self.group_admits})"
            if self.group_admits
            else ""
        )
        return count, (
            f"busy {busy} + pending {self.pending}{admits} + idle {self.idle_target} = {wanted}, "
            f"min {self.minimum}, max {self.maximum}{why}"
        )

    @property
    def family(self) -> str:
        """The task-definition family."""
        return family_of(self.name)


@dataclass(frozen=True)
class DesiredState:
    """Everything the specs ask for; `complete` is False when some spec failed to load."""

    pools: dict[str, DesiredPool] = field(default_factory=dict)
    capacity_providers: dict[str, DesiredCapacityProvider] = field(default_factory=dict)
    clusters: tuple[str, ...] = ()
    complete: bool = True


# ---------------------------------------------------------------- observed


@dataclass(frozen=True)
class ObservedCapacityProvider:
    """A capacity provider as ECS describes it."""

    name: str
    arn: str
    auto_scaling_group_arn: str
    settings: dict[str, Any]
    tags: dict[str, str]
    status: str = "ACTIVE"

    @property
    def owned(self) -> bool:
        """Created by us."""
        return is_owned(self.tags)


@dataclass(frozen=True)
class ObservedCluster:
    """A cluster and its capacity-provider association."""

    name: str
    status: str
    capacity_providers: tuple[str, ...]
    default_strategy: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class ObservedTaskDefinition:
    """One ACTIVE revision of a family we own (or that squats in a family name of ours)."""

    arn: str
    family: str
    revision: int
    content: dict[str, Any]  # normalized, comparable with DesiredPool.task_definition
    content_hash: str
    tags: dict[str, str]

    @property
    def owned(self) -> bool:
        """Registered by us (carries our tags)."""
        return is_owned(self.tags)

    @property
    def tagged_hash(self) -> str | None:
        """The spec hash we recorded when registering it."""
        return self.tags.get(SPEC_HASH_TAG)


@dataclass(frozen=True)
class ObservedTask:
    """A runner task of ours that ECS still wants running (or, in `stopped_tasks`, stopped)."""

    arn: str
    cluster: str
    pool: str
    task_definition_arn: str
    spec_hash: str
    last_status: str
    started_at: float | None
    tags: dict[str, str]
    capacity_provider: str = ""
    stopped_reason: str = ""  # stopped tasks only
    exit_code: int | None = None  # stopped tasks only: the runner container's
    created_at: float | None = None  # set once by RunTask; unlike started_at it never moves
    container_instance_arn: str = ""  # where ECS placed it ("" while not placed)

    @property
    def task_id(self) -> str:
        """The short task ID (last part of the ARN)."""
        return self.arn.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class ObservedInstance:
    """An instance of an Auto Scaling group, joined with its ECS container instance."""

    instance_id: str
    lifecycle_state: str  # Pending | InService | Terminating ...
    protected: bool  # ProtectedFromScaleIn: never removed by us
    container_instance_arn: str = ""  # "" until the ECS agent has registered it
    status: str = ""  # the container instance's: ACTIVE | DRAINING | ...
    running_tasks: int = 0
    pending_tasks: int = 0
    registered: tuple[int, int] = (0, 0)  # CPU units, memory MiB
    remaining: tuple[int, int] = (0, 0)
    registered_at: float | None = None  # epoch seconds

    @property
    def empty(self) -> bool:
        """Registered and running nothing."""
        return bool(self.container_instance_arn) and not self.running_tasks + self.pending_tasks


@dataclass(frozen=True)
class ObservedAutoScalingGroup:
    """An Auto Scaling group with its bounds and instances."""

    name: str
    arn: str
    minimum: int
    maximum: int
    desired: int
    tags: dict[str, str]
    instances: tuple[ObservedInstance, ...] = ()

    @property
    def owned(self) -> bool:
        """Tagged for us to scale."""
        return is_owned(self.tags)


@dataclass(frozen=True)
class LaunchActivity:
    """An Auto Scaling scaling activity that launched (or failed to launch) an instance
    (DescribeScalingActivities: StatusCode, StatusMessage, StartTime / EndTime)."""

    status: str  # Successful | Failed | Cancelled | InProgress ...
    at: float  # epoch seconds: EndTime, or StartTime while it runs
    message: str = ""  # StatusMessage: why it failed

    @property
    def failed(self) -> bool:
        """The launch did not happen."""
        return self.status in ("Failed", "Cancelled")


@dataclass(frozen=True)
class ObservedState:
    """What AWS shows, normalized; `problems` names what could not be observed."""

    clusters: dict[str, ObservedCluster] = field(default_factory=dict)
    capacity_providers: dict[str, ObservedCapacityProvider] = field(default_factory=dict)
    task_definitions: dict[str, list[ObservedTaskDefinition]] = field(default_factory=dict)
    tasks: list[ObservedTask] = field(default_factory=list)
    # stopped runner tasks of the current revision of pools in mid-rollout (failure evidence)
    stopped_tasks: list[ObservedTask] = field(default_factory=list)
    auto_scaling_groups: dict[str, str] = field(default_factory=dict)  # name or ARN -> ARN
    # groups of providers with `scaling: reconciler`, by name, with their instances
    scaling_groups: dict[str, ObservedAutoScalingGroup] = field(default_factory=dict)
    # recent instance launches of spot groups, by group name, newest first
    launch_activities: dict[str, tuple[LaunchActivity, ...]] = field(default_factory=dict)
    # container instances set DRAINING (ECS spot instance draining, or by hand), by ARN
    draining_instances: set[str] = field(default_factory=set)
    # every group's mixed instances policy, by group name (`mixed_instances_of`; {}: none)
    mixed_instances: dict[str, dict[str, Any]] = field(default_factory=dict)
    subnets: dict[str, str] = field(default_factory=dict)  # ID or Name tag -> ID
    security_groups: dict[str, str] = field(default_factory=dict)  # ID or Name tag -> ID
    problems: dict[str, str] = field(default_factory=dict)  # scope (cluster/pool) -> message

    @functools.cached_property
    def tasks_by_pool(self) -> dict[str, list[ObservedTask]]:
        """Runner tasks grouped by pool (read once the observation is complete)."""
        grouped: dict[str, list[ObservedTask]] = {}
        for task in self.tasks:
            grouped.setdefault(task.pool, []).append(task)
        return grouped

    @functools.cached_property
    def task_definitions_in_use(self) -> frozenset[str]:
        """Task-definition ARNs some running task uses."""
        return frozenset(task.task_definition_arn for task in self.tasks)
