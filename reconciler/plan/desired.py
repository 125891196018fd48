"""Rendering specs into desired state: task definitions, runner counts, capacity providers.

Pure: the spec set, the time, the AWS region and each pool's pending jobs in,
`DesiredState` out. A pool's target is clamp(busy + pending + idle target of the active
schedule, min, max) (`DesiredPool.target`): the planner supplies `busy`, the demand book
(`reconciler.demand`) supplies `pending`, already capped per repository.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from ..spec.loader import SpecSet
from ..spec.models import (
    DIND_MIN_MEMORY,
    CapacityProvider,
    MixedInstances,
    RunnerPool,
    RunnerPoolSpec,
    Scaling,
)
from .normalize import content_hash, normalize_capacity_provider_settings, normalize_task_definition
from .slo import ArrivalHistory, slo_sizing
from .state import (
    DELETION_POLICY_TAG,
    MANAGED_BY_TAG,
    MANAGED_BY_VALUE,
    POOL_TAG,
    SCOPE_TAG,
    SPEC_HASH_TAG,
    DesiredCapacityProvider,
    DesiredPool,
    DesiredState,
    family_of,
)

RUNNER_CONTAINER = "runner"
DIND_CONTAINER = "dind"
RUNNER_WORK_DIRECTORY = "/home/runner/_work"
DIND_ADDRESS = "tcp://127.0.0.1:2375"


def render_desired(
    spec_set: SpecSet,
    now: datetime.datetime,
    region: str,
    pending: Mapping[str, int] | None = None,
    arrivals: Mapping[str, ArrivalHistory] | None = None,
) -> DesiredState:
    """Desired state of every valid pool and capacity provider in the spec set.

    `pending` is each pool's queued demand, already capped per repository; `arrivals` the
    jobs learned per slot of the week for pools with a queue-wait objective (`scaling.slo`).
    """
    demand = pending or {}
    learned = arrivals or {}
    pools = {
        pool.metadata.name: render_pool(
            pool, now, region, demand.get(pool.metadata.name, 0), learned.get(pool.metadata.name)
        )
        for pool in spec_set.pools
    }
    providers = {
        provider.metadata.name: render_capacity_provider(provider)
        for provider in spec_set.capacity_providers
    }
    clusters = sorted({p.cluster for p in pools.values()} | {c.cluster for c in providers.values()})
    return DesiredState(pools, providers, tuple(clusters), complete=spec_set.ok)


def render_pool(
    pool: RunnerPool,
    now: datetime.datetime,
    region: str,
    pending: int = 0,
    arrivals: ArrivalHistory | None = None,
) -> DesiredPool:
    """The desired state of one pool at time `now`, with `pending` queued jobs for it and,
    with a queue-wait objective, the `arrivals` learned for it (none: nothing learned yet)."""
    spec = pool.spec
    definition = render_task_definition(pool, region)
    spec_hash = content_hash(definition)
    ownership = {MANAGED_BY_TAG: MANAGED_BY_VALUE, POOL_TAG: pool.metadata.name}
    idle_target, idle_reason, spare_room = warm_target(spec.scaling, now, arrivals)
    count = min(spec.scaling.max, max(spec.scaling.min, idle_target))
    reason = f"min {spec.scaling.min}, idle {idle_target} ({idle_reason}), max {spec.scaling.max}"
    return DesiredPool(
        name=pool.metadata.name,
        cluster=spec.cluster,
        capacity_provider=spec.capacity_provider,
        task_definition=definition,
        spec_hash=spec_hash,
        task_definition_tags={
            **spec.tags,
            **ownership,
            SPEC_HASH_TAG: spec_hash,
            DELETION_POLICY_TAG: spec.deletion_policy,
        },
        task_tags={
            **spec.tags,
            **ownership,
            SPEC_HASH_TAG: spec_hash,
            SCOPE_TAG: f"{spec.scope.kind}:{spec.scope.target}",
        },
        desired_count=count,
        count_reason=reason,
        minimum=spec.scaling.min,
        maximum=spec.scaling.max,
        idle_target=idle_target,
        idle_reason=idle_reason,
        spare_room=spare_room,
        pending=pending,
        labels=tuple(spec.labels),
        runner_group=spec.runner_group,
        group_admits=_group_admits(spec),
        spot_fallback=spec.spot.fallback_capacity_provider if spec.spot else "",
        spot_retry_after=spec.spot.retry_after_seconds if spec.spot else 600,
        max_surge=spec.rollout.surge_for(max(count, 1)),
        canary=spec.rollout.canary,
        max_failures=spec.rollout.max_failures,
        subnets=tuple(spec.network.subnets),
        security_groups=tuple(spec.network.security_groups),
        deletion_policy=spec.deletion_policy,
    )


def desired_runner_count(scaling: Scaling, now: datetime.datetime) -> tuple[int, str]:
    """max(min, idle target now), clamped to max, and a sentence saying why.

    The size of the pool with no demand; the planner adds busy runners and pending jobs.
    """
    idle, why = idle_target_now(scaling, now)
    count = min(scaling.max, max(scaling.min, idle))
    return count, f"min {scaling.min}, idle {idle} ({why}), max {scaling.max}"


def warm_target(
    scaling: Scaling, now: datetime.datetime, arrivals: ArrivalHistory | None = None
) -> tuple[int, str, int]:
    """Warm idle runners wanted at `now`, why, and spare runner room for the autoscaler.

    The hand-set idle count (or the active schedule's) is a floor; a queue-wait objective
    (`scaling.slo`) may ask for more (`reconciler.plan.slo`).
    """
    floor, why = idle_target_now(scaling, now)
    if scaling.slo is None:
        return floor, why, 0
    sizing = slo_sizing(
        scaling.slo, arrivals or ArrivalHistory(), now, scaling.max, scaling.max_per_repository
    )
    if sizing.warm > floor:
        return sizing.warm, f"{sizing.reason}; floor {floor}: {why}", sizing.spare_room
    return floor, f"{why}, >= {sizing.reason}", sizing.spare_room


def idle_target_now(scaling: Scaling, now: datetime.datetime) -> tuple[int, str]:
    """The warm idle runners wanted at `now` (the largest active schedule's), and why."""
    active = [
        (schedule.idle, index)
        for index, schedule in enumerate(scaling.schedules)
        if schedule.covers(now)
    ]
    if active:
        idle, index = max(active)
        schedule = scaling.schedules[index]
        why = f"schedules[{index}] {schedule.from_}-{schedule.to} {schedule.timezone} active"
    else:
        idle, why = scaling.idle, "no schedule active"
    return idle, why


def render_task_definition(pool: RunnerPool, region: str) -> dict[str, Any]:
    """The normalized RegisterTaskDefinition input (without tags) of a pool."""
    spec = pool.spec
    name = pool.metadata.name
    dind = spec.docker.mode == "dind"
    environment = {
        **spec.environment,
        "RUNNER_POOL": name,
        "RUNNER_LABELS": ",".join(spec.labels),
        "RUNNER_SCOPE": f"{spec.scope.kind}:{spec.scope.target}",
        "RUNNER_GROUP": spec.runner_group,
    }
    if dind:
        environment["DOCKER_HOST"] = DIND_ADDRESS
    runner: dict[str, Any] = {
        "name": RUNNER_CONTAINER,
        "image": spec.runner.image,
        "essential": True,
        "environment": [{"name": k, "value": v} for k, v in environment.items()],
        "secrets": [{"name": s.name, "valueFrom": s.value_from} for s in spec.secrets],
        "mountPoints": [
            {"sourceVolume": "work", "containerPath": RUNNER_WORK_DIRECTORY, "readOnly": False}
        ],
        "logConfiguration": _logs(spec.logging.log_group, region, name),
        "stopTimeout": spec.stop_timeout,
    }
    # Soft reservations split the task's memory between containers (ECS places by them).
    dind_memory = max(DIND_MIN_MEMORY, spec.resources.memory // 4) if dind else 0
    runner["memoryReservation"] = spec.resources.memory - dind_memory
    containers = [runner]
    volumes = [{"name": "work"}]
    if dind and spec.docker.image:
        runner["dependsOn"] = [{"containerName": DIND_CONTAINER, "condition": "HEALTHY"}]
        containers.append(
            {
                "name": DIND_CONTAINER,
                "image": spec.docker.image,
                "essential": True,
                "privileged": True,
                # Listen on the task's loopback only: no other host sees this daemon.
                "command": ["--host=" + DIND_ADDRESS, "--tls=false"],
                "environment": [{"name": "DOCKER_TLS_CERTDIR", "value": ""}],
                "mountPoints": [
                    {"sourceVolume": "docker", "containerPath": "/var/lib/docker"},
                    {"sourceVolume": "work", "containerPath": RUNNER_WORK_DIRECTORY},
                ],
                "healthCheck": {
                    "command": ["CMD-SHELL", f"docker -H {DIND_ADDRESS} info >/dev/null"],
                    "interval": 5,
                    "timeout": 5,
                    "retries": 10,
                    "startPeriod": 10,
                },
                "logConfiguration": _logs(spec.logging.log_group, region, name),
                "stopTimeout": spec.stop_timeout,
                "memoryReservation": dind_memory,
            }
        )
        volumes.append({"name": "docker"})
    return normalize_task_definition(
        {
            "family": family_of(name),
            "taskRoleArn": spec.iam.task_role_arn,
            "executionRoleArn": spec.iam.execution_role_arn,
            "networkMode": "awsvpc",
            "requiresCompatibilities": ["EC2"],
            "cpu": str(spec.resources.cpu),
            "memory": str(spec.resources.memory),
            "runtimePlatform": {
                "cpuArchitecture": "ARM64" if spec.architecture == "arm64" else "X86_64",
                "operatingSystemFamily": "LINUX",
            },
            "containerDefinitions": containers,
            "volumes": volumes,
        }
    )


def _logs(group: str, region: str, stream_prefix: str) -> dict[str, Any]:
    return {
        "logDriver": "awslogs",
        "options": {
            "awslogs-group": group,
            "awslogs-region": region,
            "awslogs-stream-prefix": stream_prefix,
        },
    }


def _mixed_instances(mixed: MixedInstances | None) -> dict[str, Any]:
    """The spec's mixed instances policy in the shape of `state.mixed_instances_of`."""
    if mixed is None:
        return {}
    return {
        "instanceTypes": list(mixed.instance_types),
        "onDemandBaseCapacity": mixed.on_demand_base_capacity,
        "onDemandPercentageAboveBaseCapacity": mixed.on_demand_percentage_above_base_capacity,
        "spotAllocationStrategy": mixed.spot_allocation_strategy,
    }


def render_capacity_provider(provider: CapacityProvider) -> DesiredCapacityProvider:
    """The desired state of one capacity provider."""
    spec = provider.spec
    scaling = spec.managed_scaling
    settings = normalize_capacity_provider_settings(
        {
            "managedScaling": {
                "status": "DISABLED" if spec.scaling == "reconciler" else scaling.status,
                "targetCapacity": scaling.target_capacity,
                "minimumScalingStepSize": scaling.minimum_scaling_step_size,
                "maximumScalingStepSize": scaling.maximum_scaling_step_size,
                "instanceWarmupPeriod": scaling.instance_warmup_period,
            },
            "managedTerminationProtection": spec.managed_termination_protection,
        }
    )
    return DesiredCapacityProvider(
        name=provider.metadata.name,
        cluster=spec.cluster,
        auto_scaling_group=spec.auto_scaling_group,
        settings=settings,
        tags={**spec.tags, MANAGED_BY_TAG: MANAGED_BY_VALUE},
        scaling=spec.scaling,
        min_instance_lifetime=spec.min_instance_lifetime,
        mixed_instances=_mixed_instances(spec.mixed_instances),
    )


def _group_admits(spec: RunnerPoolSpec) -> str:
    """Who the pool's runner group admits, when restricted ("3 repositories"); else ""."""
    access = spec.runner_group_access
    if access is None:
        return ""
    if access.repositories is not None:
        count = len(access.repositories)
        return f"{count} {'repository' if count == 1 else 'repositories'}"
    count = len(access.organizations or ())
    return f"{count} {'organization' if count == 1 else 'organizations'}"
