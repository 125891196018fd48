"""Observing ECS, EC2 and Auto Scaling into `ObservedState` (read-only calls only).

Paginated and batched: tasks are listed 100 a page and described 100 at a time with their
tags; task-definition revisions are immutable, so an `Observer` kept across cycles describes
each one once. Failures are recorded as problems per cluster, never raised, so one broken
cluster does not hide the others.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from ..plan.normalize import (
    content_hash,
    normalize_capacity_provider_settings,
    normalize_task_definition,
)
from ..plan.state import (
    FAMILY_PREFIX,
    POOL_TAG,
    SPEC_HASH_TAG,
    STARTED_BY,
    DesiredState,
    LaunchActivity,
    ObservedAutoScalingGroup,
    ObservedCapacityProvider,
    ObservedCluster,
    ObservedInstance,
    ObservedState,
    ObservedTask,
    ObservedTaskDefinition,
    group_name_of,
    is_owned,
    mixed_instances_of,
)
from .clients import AwsClients

log = logging.getLogger(__name__)
T = TypeVar("T")
BUILT_IN_PROVIDERS = frozenset({"FARGATE", "FARGATE_SPOT"})
# newest scaling activities read per spot group and cycle: one call, no paging (a failing
# group records one failed activity per launch attempt, so recent failures are on top)
ACTIVITY_WINDOW = 20
AWS_ERRORS = (ClientError, BotoCoreError)


def batches(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Consecutive slices of at most `size` items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def tag_dict(
    tags: Iterable[dict[str, str]] | None, key: str = "key", value: str = "value"
) -> dict[str, str]:
    """AWS tag lists ([{key, value}] or [{Key, Value}]) as a dict."""
    return {t[key]: t.get(value, "") for t in tags or []}


class Observer:
    """Reads what exists in AWS for a desired state; keeps immutable data between cycles.

    A revision's content never changes, so each is described once per observer. With
    `revision_refresh` > 0 (the long-running controller), a family's list of revisions is
    also reused for that many seconds: listing every family every cycle is one call per pool,
    the largest part of a cycle's calls at hundreds of pools. Whoever changes revisions calls
    `forget` / `forget_families` (the controller does after each apply), and a revision
    registered by hand is then seen within `revision_refresh` seconds instead of one cycle.
    """

    def __init__(
        self,
        clients: AwsClients,
        revision_refresh: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clients = clients
        self.revision_refresh = revision_refresh
        self.clock = clock
        self._task_definitions: dict[str, ObservedTaskDefinition] = {}
        self._listings: dict[str, tuple[float, list[str]]] = {}  # family -> (when, ARNs)

    def observe(self, desired: DesiredState) -> ObservedState:
        """Everything the planner needs to compare with `desired`."""
        state = ObservedState()
        self._clusters(desired, state)
        self._capacity_providers(desired, state)
        self._auto_scaling_groups(desired, state)
        self._container_instances(desired, state)
        self._draining_instances(desired, state)
        self._launch_activities(desired, state)
        self._network(desired, state)
        for cluster in desired.clusters:
            if cluster in state.clusters:
                self._tasks(cluster, state)
        self._stopped_tasks_of_rollouts(desired, state)
        self._task_definitions_of_ours(desired, state)
        return state

    # -------------------------------------------------------------- ECS

    def _clusters(self, desired: DesiredState, state: ObservedState) -> None:
        for chunk in batches(list(desired.clusters), 100):
            try:
                response = self.clients.ecs.describe_clusters(clusters=list(chunk))
            except AWS_ERRORS as error:
                for name in chunk:
                    state.problems[name] = f"cluster {name}: cannot describe: {error}"
                continue
            for cluster in response.get("clusters", []):
                state.clusters[cluster["clusterName"]] = ObservedCluster(
                    name=cluster["clusterName"],
                    status=cluster.get("status", "ACTIVE"),
                    capacity_providers=tuple(sorted(cluster.get("capacityProviders", []))),
                    default_strategy=tuple(cluster.get("defaultCapacityProviderStrategy", [])),
                )

    def _capacity_providers(self, desired: DesiredState, state: ObservedState) -> None:
        names = set(desired.capacity_providers)
        for cluster in state.clusters.values():
            names.update(cluster.capacity_providers)
        wanted = sorted(names - BUILT_IN_PROVIDERS)
        for chunk in batches(wanted, 100):
            try:
                response = self.clients.ecs.describe_capacity_providers(
                    capacityProviders=list(chunk), include=["TAGS"]
                )
            except AWS_ERRORS as error:
                state.problems["capacity-providers"] = (
                    f"cannot describe capacity providers: {error}"
                )
                continue
            for provider in response.get("capacityProviders", []):
                if provider.get("status", "ACTIVE") != "ACTIVE":
                    continue
                group = provider.get("autoScalingGroupProvider", {})
                state.capacity_providers[provider["name"]] = ObservedCapacityProvider(
                    name=provider["name"],
                    arn=provider.get("capacityProviderArn", ""),
                    auto_scaling_group_arn=group.get("autoScalingGroupArn", ""),
                    settings=normalize_capacity_provider_settings(provider),
                    tags=tag_dict(provider.get("tags")),
                    status=provider.get("status", "ACTIVE"),
                )

    def _tasks(self, cluster: str, state: ObservedState) -> None:
        try:
            state.tasks.extend(self._runner_tasks(cluster, stopped=False))
        except AWS_ERRORS as error:
            state.problems[cluster] = f"cluster {cluster}: cannot list runner tasks: {error}"

    def _runner_tasks(self, cluster: str, stopped: bool) -> list[ObservedTask]:
        """Our runner tasks in `cluster`, running or stopped: listed, described in 100s."""
        arns = [
            arn
            for page in self.clients.ecs.get_paginator("list_tasks").paginate(
                cluster=cluster,
                startedBy=STARTED_BY,
                desiredStatus="STOPPED" if stopped else "RUNNING",
            )
            for arn in page.get("taskArns", [])
        ]
        tasks = []
        for chunk in batches(arns, 100):
            response = self.clients.ecs.describe_tasks(
                cluster=cluster, tasks=list(chunk), include=["TAGS"]
            )
            for task in response.get("tasks", []):
                observed = _observed_task(cluster, task, stopped)
                if observed is not None:
                    tasks.append(observed)
        return tasks

    def stopped_among(self, arns_by_cluster: Mapping[str, Sequence[str]]) -> set[str]:
        """Which of these tasks ECS describes as stopped (or stopping); unreadable ones are
        left out. For tasks started and never listed running: did they die already?"""
        stopped: set[str] = set()
        for cluster, arns in sorted(arns_by_cluster.items()):
            for chunk in batches(list(arns), 100):
                try:
                    response = self.clients.ecs.describe_tasks(cluster=cluster, tasks=list(chunk))
                except AWS_ERRORS as error:
                    log.warning("cannot describe started tasks in %s: %s", cluster, error)
                    continue
                stopped.update(
                    task["taskArn"]
                    for task in response.get("tasks", [])
                    if "STOPPED" in (task.get("desiredStatus"), task.get("lastStatus"))
                )
        return stopped

    def _task_definitions_of_ours(self, desired: DesiredState, state: ObservedState) -> None:
        ecs = self.clients.ecs
        try:
            families = {
                family
                for page in ecs.get_paginator("list_task_definition_families").paginate(
                    familyPrefix=FAMILY_PREFIX, status="ACTIVE"
                )
                for family in page.get("families", [])
            }
        except AWS_ERRORS as error:
            state.problems["task-definitions"] = f"cannot list task definition families: {error}"
            return
        families.update(pool.family for pool in desired.pools.values())
        for family in sorted(families):
            try:
                revisions = [self._task_definition(arn) for arn in self._revision_arns(family)]
            except AWS_ERRORS as error:
                state.problems[f"family {family}"] = f"cannot read {family}: {error}"
                continue
            if revisions:
                state.task_definitions[family] = sorted(revisions, key=lambda r: r.revision)

    def _revision_arns(self, family: str) -> list[str]:
        """The family's ACTIVE revisions, listed again once `revision_refresh` has passed."""
        now = self.clock()
        listed = self._listings.get(family)
        if listed is not None and now - listed[0] < self.revision_refresh:
            return listed[1]
        arns = [
            arn
            for page in self.clients.ecs.get_paginator("list_task_definitions").paginate(
                familyPrefix=family, status="ACTIVE"
            )
            for arn in page.get("taskDefinitionArns", [])
            if _family_of_arn(arn) == family
        ]
        self._listings[family] = (now, arns)
        return arns

    def forget(self, arns: Iterable[str]) -> None:
        """Read these revisions (and their families' lists) again next time: they were
        retagged or deregistered."""
        for arn in arns:
            self._task_definitions.pop(arn, None)
            self._listings.pop(_family_of_arn(arn), None)

    def forget_families(self, families: Iterable[str] | None = None) -> None:
        """List these families' revisions again next time (all when None): a revision was
        registered, or another replica may have changed them."""
        if families is None:
            self._listings.clear()
            return
        for family in families:
            self._listings.pop(family, None)

    def _task_definition(self, arn: str) -> ObservedTaskDefinition:
        cached = self._task_definitions.get(arn)
        if cached is not None:
            return cached
        response = self.clients.ecs.describe_task_definition(taskDefinition=arn, include=["TAGS"])
        definition = response["taskDefinition"]
        content = normalize_task_definition(definition)
        observed = ObservedTaskDefinition(
            arn=definition["taskDefinitionArn"],
            family=definition["family"],
            revision=int(definition["revision"]),
            content=content,
            content_hash=content_hash(content),
            tags=tag_dict(response.get("tags")),
        )
        self._task_definitions[arn] = observed
        return observed

    def _stopped_tasks_of_rollouts(self, desired: DesiredState, state: ObservedState) -> None:
        """Stopped tasks of the new revision of every pool in mid-rollout (runners of an older
        revision still running): the evidence that halts a failing rollout."""
        rolling = {
            task.pool: desired.pools[task.pool]
            for task in state.tasks
            if task.pool in desired.pools and task.spec_hash != desired.pools[task.pool].spec_hash
        }
        for cluster in sorted({pool.cluster for pool in rolling.values()}):
            try:
                stopped = self._runner_tasks(cluster, stopped=True)
            except AWS_ERRORS as error:
                state.problems[cluster] = f"cluster {cluster}: cannot list stopped tasks: {error}"
                continue
            state.stopped_tasks.extend(
                task
                for task in stopped
                if task.pool in rolling and task.spec_hash == rolling[task.pool].spec_hash
            )

    # -------------------------------------------------------------- EC2 / Auto Scaling

    def _auto_scaling_groups(self, desired: DesiredState, state: ObservedState) -> None:
        references = {p.auto_scaling_group for p in desired.capacity_providers.values()}
        names = sorted({group_name_of(ref) for ref in references})
        scaled = {
            group_name_of(p.auto_scaling_group)
            for p in desired.capacity_providers.values()
            if p.scaling == "reconciler"
        }
        for chunk in batches(names, 50):
            try:
                pages = self.clients.autoscaling.get_paginator(
                    "describe_auto_scaling_groups"
                ).paginate(AutoScalingGroupNames=list(chunk))
                for page in pages:
                    for group in page.get("AutoScalingGroups", []):
                        arn = group["AutoScalingGroupARN"]
                        state.auto_scaling_groups[group["AutoScalingGroupName"]] = arn
                        state.auto_scaling_groups[arn] = arn
                        state.mixed_instances[group["AutoScalingGroupName"]] = mixed_instances_of(
                            group.get("MixedInstancesPolicy")
                        )
                        if group["AutoScalingGroupName"] in scaled:
                            state.scaling_groups[group["AutoScalingGroupName"]] = _group(group)
            except AWS_ERRORS as error:
                state.problems["auto-scaling-groups"] = (
                    f"cannot describe Auto Scaling groups: {error}"
                )

    def _launch_activities(self, desired: DesiredState, state: ObservedState) -> None:
        """The newest instance launches of every spot group (one DescribeScalingActivities
        call each, `ACTIVITY_WINDOW` records): did spot launch, or fail, lately?"""
        providers = desired.capacity_providers
        spot_providers = {
            pool.capacity_provider
            for pool in desired.pools.values()
            if pool.spot_fallback and pool.capacity_provider in providers
        }
        groups = {group_name_of(providers[name].auto_scaling_group) for name in spot_providers}
        for group in sorted(groups):
            try:
                response = self.clients.autoscaling.describe_scaling_activities(
                    AutoScalingGroupName=group, MaxRecords=ACTIVITY_WINDOW
                )
            except AWS_ERRORS as error:
                log.warning("cannot read scaling activities of %s: %s", group, error)
                continue  # unknown: spot is assumed to launch (as before this was read)
            state.launch_activities[group] = tuple(
                _launch_activity(activity)
                for activity in response.get("Activities", [])
                if _is_launch(activity)
            )

    def _draining_instances(self, desired: DesiredState, state: ObservedState) -> None:
        """Container instances set DRAINING (ECS spot instance draining sets an interrupted
        spot instance DRAINING): one ListContainerInstances call per cluster."""
        for cluster in desired.clusters:
            if cluster not in state.clusters:
                continue
            try:
                state.draining_instances.update(
                    arn
                    for page in self.clients.ecs.get_paginator("list_container_instances").paginate(
                        cluster=cluster, status="DRAINING"
                    )
                    for arn in page.get("containerInstanceArns", [])
                )
            except AWS_ERRORS as error:
                log.warning("cannot list draining container instances of %s: %s", cluster, error)

    def _container_instances(self, desired: DesiredState, state: ObservedState) -> None:
        """Join the instances of reconciler-scaled groups with their container instances."""
        clusters = sorted(
            {p.cluster for p in desired.capacity_providers.values() if p.scaling == "reconciler"}
        )
        registered: dict[str, dict[str, Any]] = {}
        for cluster in clusters:
            if cluster not in state.clusters:
                continue
            try:
                arns = [
                    arn
                    for page in self.clients.ecs.get_paginator("list_container_instances").paginate(
                        cluster=cluster
                    )
                    for arn in page.get("containerInstanceArns", [])
                ]
                for chunk in batches(arns, 100):
                    response = self.clients.ecs.describe_container_instances(
                        cluster=cluster, containerInstances=list(chunk)
                    )
                    for instance in response.get("containerInstances", []):
                        registered[instance.get("ec2InstanceId", "")] = instance
            except AWS_ERRORS as error:
                state.problems[cluster] = (
                    f"cluster {cluster}: cannot list container instances: {error}"
                )
        for name, group in state.scaling_groups.items():
            state.scaling_groups[name] = dataclasses.replace(
                group,
                instances=tuple(
                    _joined(instance, registered.get(instance.instance_id))
                    for instance in group.instances
                ),
            )

    def _network(self, desired: DesiredState, state: ObservedState) -> None:
        subnets = {ref for pool in desired.pools.values() for ref in pool.subnets}
        groups = {ref for pool in desired.pools.values() for ref in pool.security_groups}
        try:
            resolved_subnets, resolved_groups = self.resolve_network(subnets, groups)
        except AWS_ERRORS as error:
            state.problems["network"] = f"cannot resolve subnets / security groups: {error}"
            return
        state.subnets.update(resolved_subnets)
        state.security_groups.update(resolved_groups)

    def resolve_network(
        self, subnets: set[str], security_groups: set[str]
    ) -> tuple[dict[str, str], dict[str, str]]:
        """Subnet and security group references (IDs or Name tags) mapped to the IDs found.

        A reference that is missing or ambiguous is absent from the result.
        """
        return (
            self._resolve(subnets, "subnet-", "subnet-id", "Subnets", "SubnetId"),
            self._resolve(security_groups, "sg-", "group-id", "SecurityGroups", "GroupId"),
        )

    def _resolve(
        self, references: set[str], id_prefix: str, id_filter: str, key: str, id_key: str
    ) -> dict[str, str]:
        """Map each reference (an ID, or a Name tag) to an ID; ambiguous names are left out."""
        describe = (
            self.clients.ec2.describe_subnets
            if key == "Subnets"
            else self.clients.ec2.describe_security_groups
        )
        ids = sorted(r for r in references if r.startswith(id_prefix))
        names = sorted(r for r in references if not r.startswith(id_prefix))
        resolved: dict[str, str] = {}
        if ids:
            for item in _all_pages(describe, key, Filters=[{"Name": id_filter, "Values": ids}]):
                resolved[item[id_key]] = item[id_key]
        if names:
            matches: dict[str, set[str]] = {}
            filters = [{"Name": "tag:Name", "Values": names}]
            for item in _all_pages(describe, key, Filters=filters):
                name = tag_dict(item.get("Tags"), "Key", "Value").get("Name", "")
                matches.setdefault(name, set()).add(item[id_key])
            for name, found in matches.items():
                if len(found) == 1:
                    resolved[name] = found.pop()
                else:
                    log.warning("Name tag %r matches %d resources; use an ID", name, len(found))
        return resolved


def _all_pages(describe: Any, key: str, **kwargs: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        response = describe(**kwargs, **({"NextToken": token} if token else {}))
        items.extend(response.get(key, []))
        token = response.get("NextToken")
        if not token:
            return items


def _observed_task(
    cluster: str, task: dict[str, Any], stopped: bool = False
) -> ObservedTask | None:
    """Our runner task, if it is one and in the wanted state (running, or `stopped`)."""
    tags = tag_dict(task.get("tags"))
    if not is_owned(tags) or POOL_TAG not in tags:
        return None
    is_stopped = task.get("desiredStatus") == "STOPPED" or task.get("lastStatus") == "STOPPED"
    if is_stopped != stopped:
        return None
    created = task.get("createdAt")
    started = task.get("startedAt") or created
    runner: dict[str, Any] = next(
        (c for c in task.get("containers", []) if c.get("name") == "runner"), {}
    )
    return ObservedTask(
        arn=task["taskArn"],
        cluster=cluster,
        pool=tags[POOL_TAG],
        task_definition_arn=task.get("taskDefinitionArn", ""),
        spec_hash=tags.get(SPEC_HASH_TAG, ""),
        last_status=task.get("lastStatus", ""),
        started_at=started.timestamp() if started is not None else None,
        tags=tags,
        capacity_provider=task.get("capacityProviderName", ""),
        stopped_reason=task.get("stoppedReason", "") if stopped else "",
        exit_code=runner.get("exitCode") if stopped else None,
        created_at=created.timestamp() if created is not None else None,
        container_instance_arn=task.get("containerInstanceArn", ""),
    )


def _is_launch(activity: dict[str, Any]) -> bool:
    """An activity that launches an instance: Auto Scaling describes them as "Launching a new
    EC2 instance: i-..." (or "Launching a new EC2 instance.  Status Reason: ..." when it
    failed)."""
    return str(activity.get("Description", "")).startswith("Launching a new EC2 instance")


def _launch_activity(activity: dict[str, Any]) -> LaunchActivity:
    when = activity.get("EndTime") or activity.get("StartTime")
    return LaunchActivity(
        status=str(activity.get("StatusCode", "")),
        at=when.timestamp() if when is not None else 0.0,
        message=str(activity.get("StatusMessage", "")),
    )


def _group(group: dict[str, Any]) -> ObservedAutoScalingGroup:
    return ObservedAutoScalingGroup(
        name=group["AutoScalingGroupName"],
        arn=group["AutoScalingGroupARN"],
        minimum=int(group.get("MinSize", 0)),
        maximum=int(group.get("MaxSize", 0)),
        desired=int(group.get("DesiredCapacity", 0)),
        tags={t["Key"]: t.get("Value", "") for t in group.get("Tags", [])},
        instances=tuple(
            ObservedInstance(
                instance_id=instance["InstanceId"],
                lifecycle_state=instance.get("LifecycleState", ""),
                protected=bool(instance.get("ProtectedFromScaleIn", False)),
            )
            for instance in group.get("Instances", [])
        ),
    )


def _joined(instance: ObservedInstance, registered: dict[str, Any] | None) -> ObservedInstance:
    if registered is None:
        return instance
    return dataclasses.replace(
        instance,
        container_instance_arn=registered["containerInstanceArn"],
        status=registered.get("status", ""),
        running_tasks=int(registered.get("runningTasksCount", 0)),
        pending_tasks=int(registered.get("pendingTasksCount", 0)),
        registered=_resources(registered.get("registeredResources", [])),
        remaining=_resources(registered.get("remainingResources", [])),
        registered_at=registered["registeredAt"].timestamp()
        if registered.get("registeredAt")
        else None,
    )


def _resources(resources: list[dict[str, Any]]) -> tuple[int, int]:
    values = {r.get("name"): int(r.get("integerValue", 0)) for r in resources}
    return values.get("CPU", 0), values.get("MEMORY", 0)


def _family_of_arn(arn: str) -> str:
    return arn.rsplit("/", 1)[-1].rsplit(":", 1)[0]
