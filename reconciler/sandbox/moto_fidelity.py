"""Where moto's ECS differs from ECS in a way the reconciler depends on, corrected for the sandbox.

moto's RunTask places a task on any ACTIVE container instance of the cluster with room, whatever
the capacity provider strategy says. ECS places a task run with a capacity provider strategy
only on container instances of that provider's Auto Scaling group ("Capacity provider
strategies", Amazon ECS Developer Guide: tasks are placed on the instances of the capacity
provider's Auto Scaling group). Without this, one pool's tasks take another pool's room in the
sandbox and the demo fails to converge depending on which pools want most at the hour.

`apply()` wraps moto's `run_task`: with a (non-Fargate) capacity provider strategy, only
instances of the first provider's group are candidates (the reconciler gives one provider per
pool; weighted strategies across several providers are not simulated). It is applied inside the
moto server process (`python -m reconciler.sandbox.moto_fidelity` starts moto with it) or, in
thread mode, in the process that hosts moto. It changes moto, the simulated AWS, never the
reconciler.
"""

from __future__ import annotations

import inspect
import sys
import threading
from typing import Any

_FARGATE = frozenset({"FARGATE", "FARGATE_SPOT"})
_applied = False
_candidates = threading.local()


def apply() -> None:
    """Make moto's RunTask honour capacity provider strategies (idempotent)."""
    global _applied
    if _applied:
        return
    from moto.ecs.models import EC2ContainerServiceBackend

    run_task = EC2ContainerServiceBackend.run_task
    can_be_placed = EC2ContainerServiceBackend._can_be_placed
    signature = inspect.signature(run_task)  # moto's handler passes arguments by position

    def run_task_on_provider_instances(
        self: Any, cluster_str: str, *args: Any, **kwargs: Any
    ) -> Any:
        given = signature.bind(self, cluster_str, *args, **kwargs).arguments
        strategy = given.get("capacity_provider_strategy")
        if not strategy and not given.get("launch_type"):
            strategy = self._get_cluster(cluster_str).default_capacity_provider_strategy
        provider = strategy[0]["capacityProvider"] if strategy else None
        _candidates.instances = (
            _instances_of_provider(self, provider)
            if provider and provider not in _FARGATE
            else None
        )
        try:
            return run_task(self, cluster_str, *args, **kwargs)
        finally:
            _candidates.instances = None

    def can_be_placed_on_candidate(container_instance: Any, requirements: dict[str, Any]) -> bool:
        allowed = getattr(_candidates, "instances", None)
        if allowed is not None and container_instance.ec2_instance_id not in allowed:
            return False
        return bool(can_be_placed(container_instance, requirements))

    EC2ContainerServiceBackend.run_task = run_task_on_provider_instances  # type: ignore[method-assign]
    EC2ContainerServiceBackend._can_be_placed = staticmethod(can_be_placed_on_candidate)  # type: ignore[method-assign,assignment]
    _applied = True


def _instances_of_provider(ecs_backend: Any, provider_name: str) -> set[str]:
    """EC2 instance ids of the Auto Scaling group behind a capacity provider (empty if none)."""
    from moto.autoscaling.models import autoscaling_backends

    provider = ecs_backend.capacity_providers.get(provider_name)
    if provider is None:
        return set()
    arn = provider.auto_scaling_group_provider.get("autoScalingGroupArn", "")
    group_name = arn.rsplit("autoScalingGroupName/", 1)[-1]
    groups = autoscaling_backends[ecs_backend.account_id][ecs_backend.region_name]
    group = groups.autoscaling_groups.get(group_name)
    if group is None:
        return set()
    return {state.instance.id for state in group.instance_states}


def main(argv: list[str] | None = None) -> None:
    """`python -m reconciler.sandbox.moto_fidelity ARGS`: moto's server, with `apply()` done."""
    apply()
    from moto.server import main as moto_main

    moto_main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
