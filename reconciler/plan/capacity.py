"""The reconciler-driven cluster autoscaler: instances per Auto Scaling group, by bin packing.

For a capacity provider with `scaling: reconciler`, the runner tasks this cycle starts on it
(its pools' `run` and rollout actions) are packed, largest first, into the room the group
already has: the remaining CPU / memory of registered instances that run tasks (best fit
first), then of empty ones (protected ones first: they stay anyway), then whole instances
still booting. Tasks that do not fit open
new instances of the size the group's instances register with, and the group's desired
capacity is raised by that many, within its max, in the same cycle (ECS managed scaling
waits for CloudWatch datapoints and alarm periods, minutes).

Scale-in only ever removes registered instances that run nothing, are not protected from
scale-in, are not needed for this cycle's tasks, and have been registered for the provider's
`minInstanceLifetime` (a burst soon after finds them warm), down to the group's min: they are set
DRAINING (no task can land on them any more), re-checked, and terminated with a capacity
decrement, exactly those. Groups not tagged `ecs-reconciler:managed-by=ecs-reconciler` are
never touched. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .actions import Action, Note, SetDesiredCapacity, TerminateInstances
from .state import (
    MANAGED_BY_TAG,
    MANAGED_BY_VALUE,
    DesiredCapacityProvider,
    DesiredState,
    ObservedAutoScalingGroup,
    ObservedInstance,
    ObservedState,
    group_name_of,
)

Resources = tuple[int, int]  # CPU units, memory MiB
LIVE_STATES = ("Pending", "Pending:Wait", "Pending:Proceed", "InService")


@dataclass(frozen=True)
class Packing:
    """Where tasks went: indexes of the existing bins used, and new instances opened."""

    used: frozenset[int]
    new_instances: int
    too_large: int = 0  # tasks bigger than a whole instance


def pack(tasks: Sequence[Resources], bins: Sequence[Resources], capacity: Resources) -> Packing:
    """First-fit decreasing: each task (largest memory first) into the first existing bin with
    room, in the order given, else into a new instance of `capacity`."""
    rooms = [list(room) for room in bins]
    opened: list[list[int]] = []
    used: set[int] = set()
    too_large = 0
    for cpu, memory in sorted(tasks, key=lambda t: (t[1], t[0]), reverse=True):
        if cpu > capacity[0] or memory > capacity[1]:
            too_large += 1
            continue
        index = next(
            (i for i, room in enumerate(rooms) if room[0] >= cpu and room[1] >= memory), None
        )
        if index is not None:
            rooms[index][0] -= cpu
            rooms[index][1] -= memory
            used.add(index)
            continue
        room = next((r for r in opened if r[0] >= cpu and r[1] >= memory), None)
        if room is None:
            room = list(capacity)
            opened.append(room)
        room[0] -= cpu
        room[1] -= memory
    return Packing(frozenset(used), len(opened), too_large)


@dataclass
class CapacityPlan:
    """The autoscaler's actions and notes, and the capacity providers whose tasks this cycle
    need instances that are booting or being added (their starts may wait a cycle or two)."""

    actions: list[Action]
    notes: list[Note]
    waiting: set[str]


def plan_capacity(
    desired: DesiredState,
    observed: ObservedState,
    starts: Mapping[str, int],
    now: float,
    scale_in_allowed: bool = True,
    placements: Mapping[str, str] | None = None,
) -> CapacityPlan:
    """Scale-out and scale-in actions for every reconciler-scaled capacity provider.

    `starts` is the runner tasks each pool starts this cycle; `scale_in_allowed` is False when
    the cycle could not observe everything (nothing is removed on a partial picture); `now`
    is epoch seconds; `placements` names the provider a pool's new runners go to when it is not
    the pool's own (a spot pool on its on-demand fallback, see `plan.spot`).
    """
    placed = placements or {}
    result = CapacityPlan([], [], set())
    actions, notes = result.actions, result.notes
    for provider in sorted(desired.capacity_providers.values(), key=lambda p: p.name):
        if provider.scaling != "reconciler":
            continue
        name = group_name_of(provider.auto_scaling_group)
        group = observed.scaling_groups.get(name)
        if group is None:
            notes.append(Note("error", f"Auto Scaling group {name} not found: not scaled"))
            continue
        if not group.owned:
            notes.append(
                Note(
                    "error",
                    f"Auto Scaling group {name} lacks the tag {MANAGED_BY_TAG}="
                    f"{MANAGED_BY_VALUE}: the reconciler does not scale groups it was not "
                    "given (tag it, or use scaling: managed)",
                )
            )
            continue
        pools = [
            p
            for p in desired.pools.values()
            if placed.get(p.name, p.capacity_provider) == provider.name
        ]
        tasks = [
            _resources(pool.task_definition)
            for pool in pools
            for _ in range(starts.get(pool.name, 0))
        ]
        # room a queue-wait objective keeps for runners not yet asked for (plan.slo)
        spare = [_resources(pool.task_definition) for pool in pools for _ in range(pool.spare_room)]
        scale_in_now = now if scale_in_allowed else None
        if _plan_group(provider, group, tasks, scale_in_now, actions, notes, spare):
            result.waiting.add(provider.name)
    return result


def _plan_group(
    provider: DesiredCapacityProvider,
    group: ObservedAutoScalingGroup,
    tasks: list[Resources],
    now: float | None,
    actions: list[Action],
    notes: list[Note],
    spare: Sequence[Resources] = (),
) -> bool:
    """Adds the group's actions; True when this cycle's tasks wait for instances.

    `spare` is room to keep for runners a queue-wait objective may need soon: packed after the
    tasks, it keeps empty instances from scale-in and opens instances like a task would.
    `now` is None when nothing may be removed this cycle."""
    live = [i for i in group.instances if i.lifecycle_state in LIVE_STATES]
    registered = [i for i in live if i.container_instance_arn and i.status == "ACTIVE"]
    booting = [i for i in live if not i.container_instance_arn]
    capacity = max((i.registered for i in registered), default=None)
    if capacity is None:  # no instance has registered: its size is unknown
        if (tasks or spare) and not live and group.desired < max(group.minimum, 1) <= group.maximum:
            actions.append(
                _set_desired(
                    provider,
                    group,
                    max(group.minimum, 1),
                    "first instance: its size is learnt when it registers",
                )
            )
        return bool(tasks)
    busy = sorted((i for i in registered if not i.empty), key=lambda i: i.remaining)
    empty = sorted((i for i in registered if i.empty), key=lambda i: not i.protected)
    bins = [i.remaining for i in busy] + [i.remaining for i in empty] + [capacity] * len(booting)
    packing = pack([*tasks, *spare], bins, capacity)
    if packing.too_large:
        notes.append(
            Note(
                "error",
                f"{packing.too_large} runner task(s) need more than a whole instance of "
                f"{group.name} ({capacity[0]} CPU, {capacity[1]} MiB)",
            )
        )
    if packing.new_instances:
        base = max(group.desired, len(live))
        wanted = min(group.maximum, base + packing.new_instances)
        if wanted > group.desired:
            actions.append(
                _set_desired(
                    provider,
                    group,
                    wanted,
                    f"scale out: {len(tasks)} runner task(s) to place"
                    + (f" + room for {len(spare)} (slo)" if spare else "")
                    + f", {packing.new_instances} more instance(s) needed (bin packing)",
                )
            )
        if base + packing.new_instances > group.maximum:
            notes.append(
                Note(
                    "warning",
                    f"Auto Scaling group {group.name} is at its max {group.maximum}: "
                    f"{base + packing.new_instances - group.maximum} more instance(s) would be "
                    "needed",
                )
            )
        return bool(tasks)
    first_booting = len(busy) + len(empty)
    waiting = any(index >= first_booting for index in packing.used)
    if now is None:
        return waiting
    first_empty = len(busy)
    idle = [
        instance
        for index, instance in enumerate(empty, start=first_empty)
        if index not in packing.used
        and not instance.protected
        and now - (instance.registered_at or 0.0) >= provider.min_instance_lifetime
    ]
    removable = idle[: max(0, len(live) - group.minimum)]
    if removable:
        actions.append(_drain_and_terminate(provider, group, removable))
    return waiting


def _set_desired(
    provider: DesiredCapacityProvider, group: ObservedAutoScalingGroup, count: int, reason: str
) -> Action:
    return SetDesiredCapacity(
        group.name,
        f"{reason}; desired {group.desired} -> {count} (min {group.minimum}, max {group.maximum})",
        cluster=provider.cluster,
        before={"desiredCapacity": group.desired},
        after={"desiredCapacity": count},
    )


def _drain_and_terminate(
    provider: DesiredCapacityProvider,
    group: ObservedAutoScalingGroup,
    instances: list[ObservedInstance],
) -> Action:
    return TerminateInstances(
        group.name,
        f"scale in: {len(instances)} empty instance(s) not needed; drained, then terminated "
        f"with a capacity decrement (min {group.minimum})",
        cluster=provider.cluster,
        before={"desiredCapacity": group.desired},
        after={
            "instances": [
                {"instanceId": i.instance_id, "containerInstanceArn": i.container_instance_arn}
                for i in instances
            ]
        },
    )


def _resources(task_definition: Mapping[str, object]) -> Resources:
    return int(str(task_definition.get("cpu", 0))), int(str(task_definition.get("memory", 0)))
