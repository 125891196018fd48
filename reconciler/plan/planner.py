"""The planner: (desired, observed, runner states) -> Plan. Pure, deterministic, no I/O.

What it guarantees, whatever the inputs:
- it never proposes to touch a resource without our ownership tags;
- it never proposes to stop a task whose runner is busy or in an unknown state (only idle
  runners, and runners that never came online within the boot timeout);
- it proposes no deletion when the spec set had errors (a broken file is not a deletion);
- its output is ordered by phase, then by address, so equal inputs give equal plans;
- runners started or stopped by earlier cycles and not listed as such yet (`InFlight`,
  see `expectations`) are counted as starting, or as gone: no runner is started twice.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jsonpatch

from .actions import (
    Action,
    AssociateCapacityProviders,
    CreateCapacityProvider,
    DeleteCapacityProvider,
    DeregisterTaskDefinition,
    Note,
    Plan,
    PoolSummary,
    RegisterTaskDefinition,
    ReplaceCapacityProvider,
    ReplaceRunners,
    RunRunners,
    StopRunners,
    UpdateCapacityProvider,
    UpdateTaskDefinition,
)
from .capacity import plan_capacity
from .expectations import InFlight
from .rollout import failures_tag_value, rollout_of
from .spot import spot_placement
from .state import (
    DELETION_POLICY_TAG,
    ROLLOUT_FAILURES_TAG,
    SPEC_HASH_TAG,
    DesiredCapacityProvider,
    DesiredPool,
    DesiredState,
    ObservedCapacityProvider,
    ObservedState,
    ObservedTask,
    ObservedTaskDefinition,
    RunnerState,
    group_name_of,
    pool_of_family,
)


@dataclass
class _Out:
    """What one phase of the planner proposes, returned to `plan` (phases share no state:
    what a later phase needs from an earlier one is passed to it as an argument)."""

    actions: list[Action] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    pools: list[PoolSummary] = field(default_factory=list)
    blocked: set[str] = field(default_factory=set)  # pools that may start no runner

    def note(self, severity: str, message: str, pool: str | None = None) -> None:
        self.notes.append(Note(severity, message, pool))  # type: ignore[arg-type]

    @staticmethod
    def merged(outs: list[_Out]) -> _Out:
        """The phases' proposals in the order they were made."""
        return _Out(
            actions=[a for o in outs for a in o.actions],
            notes=[n for o in outs for n in o.notes],
            pools=[p for o in outs for p in o.pools],
            blocked={b for o in outs for b in o.blocked},
        )


def plan(
    desired: DesiredState,
    observed: ObservedState,
    runner_states: Mapping[str, RunnerState],
    now: datetime.datetime,
    spec_errors: tuple[str, ...] = (),
    in_flight: InFlight | None = None,
) -> Plan:
    """Compute the ordered actions that take `observed` to `desired` at `now` (instance
    lifetimes are measured against it; the planner never reads a clock).

    `in_flight`: starts issued and not listed yet (counted as starting runners), stops
    issued of tasks still listed (counted as gone)."""
    in_flight = in_flight or InFlight()
    out = _Out()
    for scope, problem in sorted(observed.problems.items()):
        out.note("error", problem, scope if scope in desired.pools else None)
    if not desired.complete:
        out.note(
            "warning",
            "the spec set has errors: nothing is deleted or drained on account of specs that "
            "failed to load",
        )
    blind, holding = _hold_what_cannot_be_seen(desired, observed)
    outs = [out, holding]
    if not blind.capacity_providers:
        outs.append(_plan_capacity_providers(desired, observed))
        outs.append(_plan_cluster_associations(desired, observed, blind.deletions_held))
    blocked = {name for o in outs for name in o.blocked}  # by the phases so far
    placements: dict[str, str] = {}  # pool -> the provider of its new runners
    for pool in sorted(desired.pools.values(), key=lambda p: p.name):
        if pool.cluster in blind.clusters or blind.all_revisions or pool.family in blind.families:
            continue
        outs.append(_plan_task_definition(pool, observed, runner_states, blind.deletions_held))
        placements[pool.name], placing = _place_new_runners(
            pool, desired, observed, now.timestamp()
        )
        outs.append(placing)
        outs.append(
            _plan_runner_tasks(
                pool,
                observed,
                runner_states,
                in_flight,
                blocked=pool.name in blocked,
                placed=placements[pool.name],
            )
        )
    outs.append(
        _plan_removed_pools(desired, observed, runner_states, in_flight, blind.deletions_held)
    )
    out = _Out.merged(outs)
    if not blind.capacity_providers:
        out.actions, capacity = _plan_instances(
            desired, observed, out.actions, blind.deletions_held, placements, now.timestamp()
        )
        out = _Out.merged([out, capacity])
    actions = sorted(out.actions, key=lambda a: (a.phase, a.resource_type, a.name, a.action))
    return Plan(
        actions=tuple(actions),
        notes=tuple(out.notes),
        pools=tuple(sorted(out.pools, key=lambda p: p.name)),
        spec_errors=spec_errors,
        generated_at=now.isoformat(timespec="seconds"),
    )


def _plan_instances(
    desired: DesiredState,
    observed: ObservedState,
    proposed: list[Action],
    deletions_held: str,
    placements: Mapping[str, str],
    now: float,
) -> tuple[list[Action], _Out]:
    """Reconciler-scaled Auto Scaling groups: room for the runner tasks this plan starts.
    Returns the `proposed` actions (the starts that wait for instances being added marked
    so) and this phase's own."""
    starts: Counter[str] = Counter()
    for action in proposed:
        if action.resource_type == "runner_tasks" and action.action in ("run", "replace"):
            starts[action.pool or ""] += action.count
    capacity = plan_capacity(
        desired,
        observed,
        starts,
        now,
        scale_in_allowed=desired.complete and not deletions_held,
        placements=placements,
    )
    proposed = [
        dataclasses.replace(action, after={**action.after, "capacityPending": True})
        if action.resource_type == "runner_tasks"
        and action.count
        and isinstance(action.after, dict)
        and action.after.get("capacityProvider") in capacity.waiting
        else action
        for action in proposed
    ]
    return proposed, _Out(actions=list(capacity.actions), notes=list(capacity.notes))


# ------------------------------------------------------------------ partial observation


@dataclass(frozen=True)
class _Blind:
    """What the observer could not read this cycle (see ObservedState.problems)."""

    clusters: frozenset[str]  # their runner tasks are unknown, not zero
    families: frozenset[str]  # their revisions are unknown
    all_revisions: bool
    capacity_providers: bool
    # why nothing is deleted this cycle ("" when everything was observed)
    deletions_held: str = ""


def _hold_what_cannot_be_seen(
    desired: DesiredState, observed: ObservedState
) -> tuple[_Blind, _Out]:
    """Plan nothing that rests on what was not observed.

    Tasks that could not be listed are unknown, not absent: starting runners for them would
    add more every cycle while the error lasts, and deleting a capacity provider or a revision
    they use would pull the ground from under them. So the pools concerned are left alone and
    nothing at all is deleted until a cycle sees everything again.
    """
    problems = observed.problems
    blind = _Blind(
        clusters=frozenset(c for c in desired.clusters if c in problems),
        families=frozenset(
            key.removeprefix("family ") for key in problems if key.startswith("family ")
        ),
        all_revisions="task-definitions" in problems,
        capacity_providers=bool({"capacity-providers", "auto-scaling-groups"} & set(problems)),
        deletions_held="AWS could not be fully observed this cycle" if problems else "",
    )
    out = _Out()
    for pool in desired.pools.values():
        if pool.cluster in blind.clusters:
            reason = f"the runner tasks of cluster {pool.cluster} could not be listed"
        elif blind.all_revisions or pool.family in blind.families:
            reason = f"the revisions of {pool.family} could not be read"
        else:
            continue
        out.blocked.add(pool.name)
        out.note("error", f"pool left as it is this cycle: {reason}", pool.name)
    if blind.capacity_providers:
        out.note(
            "error",
            "capacity providers and cluster associations left as they are this cycle: "
            "they could not be fully observed",
        )
    return blind, out


# ------------------------------------------------------------------ capacity providers


def _provider_document(
    provider: DesiredCapacityProvider | ObservedCapacityProvider, group_arn: str
) -> dict[str, object]:
    user_tags = {k: v for k, v in provider.tags.items() if not k.startswith("ecs-reconciler:")}
    return {"autoScalingGroupArn": group_arn, **provider.settings, "tags": user_tags}


def _plan_capacity_providers(desired: DesiredState, observed: ObservedState) -> _Out:
    out = _Out()
    for name, provider in sorted(desired.capacity_providers.items()):
        group_arn = observed.auto_scaling_groups.get(provider.auto_scaling_group)
        current = observed.capacity_providers.get(name)
        if group_arn is None:
            out.note(
                "error",
                f"capacity provider {name}: Auto Scaling group {provider.auto_scaling_group!r} "
                "not found; create it first (it is infrastructure, not managed here)",
            )
            _block_pools_using(name, desired, out)
            continue
        _check_mixed_instances(name, provider, observed, out)
        after = _provider_document(provider, group_arn)
        if current is None:
            out.actions.append(
                CreateCapacityProvider(
                    name,
                    "defined in specs, missing in ECS",
                    cluster=provider.cluster,
                    after=after,
                    patch=patch_of({}, after),
                )
            )
            continue
        if not current.owned:
            out.note(
                "warning",
                f"capacity provider {name} exists but was not created by ecs-reconciler "
                "(no managed-by tag); it is used as it is and never changed",
            )
            continue
        before = _provider_document(current, current.auto_scaling_group_arn)
        in_use = _tasks_on_provider(observed, name)
        if current.auto_scaling_group_arn != group_arn and in_use:
            out.note(
                "warning",
                f"capacity provider {name}: its Auto Scaling group changed, which needs a "
                f"replacement; held while {in_use} task(s) run on it",
            )
        elif current.auto_scaling_group_arn != group_arn or before != after:
            replace = current.auto_scaling_group_arn != group_arn
            out.actions.append(
                (ReplaceCapacityProvider if replace else UpdateCapacityProvider)(
                    name,
                    "Auto Scaling group changed (ECS cannot update it in place)"
                    if replace
                    else "settings differ from the spec (drift or spec change)",
                    cluster=provider.cluster,
                    before=before,
                    after=after,
                    patch=patch_of(before, after),
                )
            )
    return out


def _check_mixed_instances(
    name: str, provider: DesiredCapacityProvider, observed: ObservedState, out: _Out
) -> None:
    """The group (infrastructure) launches what `spec.mixedInstances` says: a warning if not
    (a pool would fall back on the wrong premise, or run on spot without knowing it)."""
    group = group_name_of(provider.auto_scaling_group)
    actual = observed.mixed_instances.get(group)
    wanted = provider.mixed_instances
    if actual and not actual["spotAllocationStrategy"]:
        # not reported: its default is not compared
        actual = {**actual, "spotAllocationStrategy": wanted.get("spotAllocationStrategy", "")}
    if actual is None or actual == wanted:
        return
    if wanted and actual:
        differs = ", ".join(k for k in wanted if wanted[k] != actual.get(k))
        detail = f"{differs} differ ({_mix(wanted)} in the spec, {_mix(actual)} in the group)"
    elif wanted:
        detail = "the spec says spot (mixedInstances) but the group has no mixed instances policy"
    else:
        detail = f"the group has a mixed instances policy ({_mix(actual)}) the spec does not state"
    out.note(
        "warning",
        f"capacity provider {name}: Auto Scaling group {group}: {detail}; fix the group or "
        "spec.mixedInstances (the group is infrastructure, never changed here)",
    )


def _mix(policy: Mapping[str, Any]) -> str:
    return (
        f"{'/'.join(policy['instanceTypes'])}, on-demand base {policy['onDemandBaseCapacity']} "
        f"+ {policy['onDemandPercentageAboveBaseCapacity']}%"
        + (f", {policy['spotAllocationStrategy']}" if policy["spotAllocationStrategy"] else "")
    )


def _block_pools_using(provider: str, desired: DesiredState, out: _Out) -> None:
    for pool in desired.pools.values():
        if pool.capacity_provider == provider:
            out.blocked.add(pool.name)


def _tasks_on_provider(observed: ObservedState, provider: str) -> int:
    return sum(1 for task in observed.tasks if task.capacity_provider == provider)


def _plan_cluster_associations(
    desired: DesiredState, observed: ObservedState, deletions_held: str
) -> _Out:
    out = _Out()
    removable = _removable_providers(desired, observed, deletions_held, out)
    for cluster_name in desired.clusters:
        cluster = observed.clusters.get(cluster_name)
        if cluster is None or cluster.status != "ACTIVE":
            out.note("error", f"cluster {cluster_name} not found or not ACTIVE; create it first")
            for pool in desired.pools.values():
                if pool.cluster == cluster_name:
                    out.blocked.add(pool.name)
            continue
        current = set(cluster.capacity_providers)
        wanted = {
            name
            for name, provider in desired.capacity_providers.items()
            if provider.cluster == cluster_name
            and observed.auto_scaling_groups.get(provider.auto_scaling_group)
        }
        keep = {name for name in current if name not in removable}
        after_names = sorted(keep | wanted)
        if set(after_names) != current:
            before = {"capacityProviders": sorted(current)}
            after = {"capacityProviders": after_names}
            added = sorted(set(after_names) - current)
            removed = sorted(current - set(after_names))
            reason = "; ".join(
                part
                for part in (
                    f"attach {', '.join(added)}" if added else "",
                    f"detach {', '.join(removed)}" if removed else "",
                )
                if part
            )
            out.actions.append(
                AssociateCapacityProviders(
                    cluster_name,
                    reason + " (other entries kept)",
                    cluster=cluster_name,
                    before=before,
                    after=after,
                    patch=patch_of(before, after),
                )
            )
    for name in sorted(removable):
        provider = observed.capacity_providers[name]
        out.actions.append(
            DeleteCapacityProvider(
                name,
                "no longer in the specs",
                before=_provider_document(provider, provider.auto_scaling_group_arn),
                patch=[{"op": "remove", "path": ""}],
            )
        )
    return out


def _removable_providers(
    desired: DesiredState, observed: ObservedState, deletions_held: str, out: _Out
) -> set[str]:
    removable = set()
    for name, provider in sorted(observed.capacity_providers.items()):
        if not provider.owned or name in desired.capacity_providers:
            continue
        if not desired.complete or deletions_held:
            because = "spec errors" if not desired.complete else deletions_held
            out.note("warning", f"capacity provider {name} is not in the specs; kept ({because})")
            continue
        in_use = _tasks_on_provider(observed, name)
        if in_use:
            out.note(
                "info",
                f"capacity provider {name} is no longer in the specs; kept while {in_use} "
                "task(s) still run on it",
            )
            continue
        removable.add(name)
    return removable


# ------------------------------------------------------------------ task definitions


def _plan_task_definition(
    pool: DesiredPool,
    observed: ObservedState,
    runner_states: Mapping[str, RunnerState],
    deletions_held: str,
) -> _Out:
    out = _Out()
    revisions = observed.task_definitions.get(pool.family, [])
    owned = [r for r in revisions if r.owned]
    for foreign in (r for r in revisions if not r.owned):
        out.note(
            "warning",
            f"{foreign.family}:{foreign.revision} was registered outside ecs-reconciler "
            "(no managed-by tag); it is never used nor deregistered by us",
            pool.name,
        )
    in_use = observed.task_definitions_in_use
    current = [r for r in owned if r.content_hash == pool.spec_hash == r.tagged_hash]
    if not current:
        after = {**pool.task_definition, "tags": pool.task_definition_tags}
        latest = max(owned, key=lambda r: r.revision, default=None)
        before = {**latest.content, "tags": latest.tags} if latest else None
        out.actions.append(
            (UpdateTaskDefinition if latest else RegisterTaskDefinition)(
                pool.name,
                "register a new revision: "
                + ("the spec changed" if latest else "no revision of ours exists yet"),
                cluster=pool.cluster,
                pool=pool.name,
                before=before,
                after=after,
                patch=patch_of(before or {}, after),
                spec_hash=pool.spec_hash,
            )
        )
    keep = max(current, key=lambda r: r.revision, default=None)
    failures = failures_tag_value(pool, observed, runner_states) if keep else ""
    wanted = {**pool.task_definition_tags, **({ROLLOUT_FAILURES_TAG: failures} if failures else {})}
    if keep is not None and keep.tags != wanted:
        recording = keep.tags.get(ROLLOUT_FAILURES_TAG, "") != failures
        out.actions.append(
            UpdateTaskDefinition(
                f"{pool.name}[{keep.revision}]",
                "rollout failures recorded on the revision: retagged in place"
                if recording
                else "tags differ from the spec (tags or deletionPolicy changed): "
                "retagged in place",
                cluster=pool.cluster,
                pool=pool.name,
                before={"taskDefinitionArn": keep.arn, "tags": keep.tags},
                after={"taskDefinitionArn": keep.arn, "tags": wanted},
                patch=patch_of({"tags": keep.tags}, {"tags": wanted}),
            )
        )
    for revision in sorted(owned, key=lambda r: r.revision):
        if revision is keep:
            continue
        drifted = revision.content_hash != revision.tagged_hash
        if revision.arn in in_use or deletions_held:
            continue  # runners still use it (or may): deregistered once they are gone
        out.actions.append(
            DeregisterTaskDefinition(
                f"{pool.name}[{revision.revision}]",
                "changed by hand after registration (drift)"
                if drifted
                else "outdated revision no task uses any more",
                cluster=pool.cluster,
                pool=pool.name,
                before={"taskDefinitionArn": revision.arn},
                patch=[{"op": "remove", "path": ""}],
            )
        )
    return out


# ------------------------------------------------------------------ runner tasks


def _place_new_runners(
    pool: DesiredPool,
    desired: DesiredState,
    observed: ObservedState,
    now: float,
) -> tuple[str, _Out]:
    """Spot pools: this cycle's new runners go to the fallback while spot cannot launch.
    Returns the provider of the pool's new runners, and the note that says why."""
    placement = spot_placement(pool, desired, observed, now)
    out = _Out()
    if placement.reason:
        out.note("warning" if placement.on_fallback else "info", placement.reason, pool.name)
    return placement.provider, out


#: runners that may be stopped (after the runner-state source confirms it right before)
STOPPABLE = (RunnerState.IDLE, RunnerState.FAILED)


def _state(task: ObservedTask, runner_states: Mapping[str, RunnerState]) -> RunnerState:
    return runner_states.get(task.arn, RunnerState.UNKNOWN)


def _oldest_first(tasks: list[ObservedTask]) -> list[ObservedTask]:
    """By creation time, which ECS sets once: `startedAt` appears when a task reaches RUNNING,
    so ordering by it would change between two plans of the same tasks."""
    return sorted(tasks, key=lambda t: (t.created_at or t.started_at or 0.0, t.arn))


def _plan_runner_tasks(
    pool: DesiredPool,
    observed: ObservedState,
    runner_states: Mapping[str, RunnerState],
    in_flight: InFlight,
    blocked: bool,
    placed: str,
) -> _Out:
    """The pool's runners: `in_flight` counted, none started when `blocked` (an earlier
    phase found a resource it needs missing), new ones on the provider `placed`."""
    out = _Out()
    stopping = in_flight.stops
    tasks = [t for t in observed.tasks_by_pool.get(pool.name, []) if t.arn not in stopping]
    misplaced = [t for t in tasks if t.cluster != pool.cluster]
    tasks = [t for t in tasks if t.cluster == pool.cluster]
    draining = [t for t in tasks if t.container_instance_arn in observed.draining_instances]
    tasks = [t for t in tasks if t not in draining]
    states = {t.arn: _state(t, runner_states) for t in tasks + misplaced + draining}
    failed = _oldest_first([t for t in tasks if states[t.arn] is RunnerState.FAILED])
    expected = in_flight.starts.get(pool.name, 0)  # started, not listed yet
    running = len(tasks) + expected
    tasks = [t for t in tasks if t not in failed]  # replaced, so they do not count
    current = [t for t in tasks if t.spec_hash == pool.spec_hash]
    outdated = [t for t in tasks if t.spec_hash != pool.spec_hash]
    idle_outdated = _oldest_first([t for t in outdated if states[t.arn] is RunnerState.IDLE])
    idle_current = _oldest_first([t for t in current if states[t.arn] is RunnerState.IDLE])
    starting = [t for t in current if states[t.arn] is RunnerState.UNKNOWN]
    busy = sum(1 for t in tasks if states[t.arn] is RunnerState.BUSY)
    target, why = pool.target(busy)
    rollout = rollout_of(pool, observed, current, outdated, runner_states)
    out.pools.append(
        PoolSummary(
            name=pool.name,
            cluster=pool.cluster,
            desired=target,
            running=running,
            busy=busy,
            idle=sum(1 for t in tasks if states[t.arn] is RunnerState.IDLE),
            unknown=sum(1 for t in tasks if states[t.arn] is RunnerState.UNKNOWN) + expected,
            outdated=len(outdated),
            count_reason=why,
            failed=len(failed),
            rollout_halted=rollout.message if rollout.halted else "",
            spot_fallback="" if placed == pool.capacity_provider else placed,
            draining=sum(1 for t in draining if states[t.arn] not in STOPPABLE),
        )
    )
    stop = [t for t in misplaced if states[t.arn] in STOPPABLE]
    if stop:
        _stop(out, pool, stop, f"runner moved to cluster {pool.cluster}")
    if failed:
        _stop(out, pool, failed, "runner never came online (boot timeout): replaced")
    _leave_draining_instances(out, pool, draining, states)
    network = _resolve_network(pool, observed, out)
    blocked = blocked or network is None
    if blocked:
        out.note("error", "no runner is started: a resource it needs is missing", pool.name)

    if rollout.message:
        out.note(rollout.severity, rollout.message, pool.name)
    excess = len(tasks) + expected - target
    if excess > 0:
        candidates = idle_outdated + idle_current
        chosen = candidates[:excess]
        if chosen:
            _stop(out, pool, chosen, f"scale in: {len(tasks)} running, {why}")
        held = excess - len(chosen)
        if held:
            out.note(
                "info",
                f"{held} runner(s) above target kept: busy or state unknown (never stopped)",
                pool.name,
            )
        idle_outdated = [t for t in idle_outdated if t not in chosen]
    elif excess < 0 and not blocked:
        reason = f"scale out: {len(tasks)} running, {why}"
        if expected:
            reason = f"scale out: {len(tasks)} running + {expected} starting, {why}"
        if placed != pool.capacity_provider:
            reason += f"; on {placed} (spot fallback)"
        if rollout.halted:
            reason += "; on the previous revision (rollout halted)"
        elif rollout.old_hash:
            reason += "; on the previous revision until the canary is up"
        _run(out, pool, -excess, reason, network, placed, rollout.old_hash)

    if idle_outdated and not blocked:
        batch = idle_outdated[: rollout.budget(pool, current, starting, expected)]
        if batch and network is not None:
            out.actions.append(
                ReplaceRunners(
                    pool.name,
                    f"rollout: {len(batch)} of {len(outdated)} outdated idle runner(s) "
                    + (
                        f"replaced by canary runner(s) (canary {pool.canary})"
                        if rollout.old_hash
                        else f"replaced (maxSurge {pool.max_surge})"
                    ),
                    cluster=pool.cluster,
                    pool=pool.name,
                    count=len(batch),
                    task_arns=tuple(t.arn for t in batch),
                    spec_hash=pool.spec_hash,
                    after=_launch(pool, network, provider=placed),
                )
            )
    busy_outdated = [t for t in outdated if states[t.arn] is not RunnerState.IDLE]
    if busy_outdated:
        out.note(
            "info",
            f"{len(busy_outdated)} runner(s) on an outdated revision are busy or unknown; "
            "they finish their job before being replaced",
            pool.name,
        )
    return out


def _leave_draining_instances(
    out: _Out,
    pool: DesiredPool,
    draining: list[ObservedTask],
    states: Mapping[str, RunnerState],
) -> None:
    """Runners on DRAINING instances (ECS spot instance draining: the instance goes within
    two minutes) no longer count: idle ones are stopped (GitHub decides, as every stop) and
    replaced on other instances by this cycle's scale out; busy ones keep their job, and the
    plan says so (ECS does not stop standalone tasks on a draining instance, nor do we)."""
    idle = _oldest_first([t for t in draining if states[t.arn] in STOPPABLE])
    if idle:
        _stop(
            out,
            pool,
            idle,
            f"{len(idle)} idle runner(s) on draining instance(s) (spot interruption): "
            "replaced on other instances",
        )
    held = [t for t in draining if t not in idle]
    if held:
        busy = sum(1 for t in held if states[t.arn] is RunnerState.BUSY)
        out.note(
            "warning",
            f"{len(held)} runner(s) on draining instance(s) (spot interruption) are "
            f"busy ({busy}) or starting ({len(held) - busy}): never stopped; their jobs may be "
            "lost when the instance goes",
            pool.name,
        )


def _stop(out: _Out, pool: DesiredPool, tasks: list[ObservedTask], reason: str) -> None:
    out.actions.append(
        StopRunners(
            pool.name,
            reason,
            cluster=pool.cluster,
            pool=pool.name,
            task_arns=tuple(t.arn for t in tasks),
        )
    )


def _resolve_network(
    pool: DesiredPool, observed: ObservedState, out: _Out
) -> dict[str, list[str]] | None:
    subnets = [observed.subnets.get(ref) for ref in pool.subnets]
    groups = [observed.security_groups.get(ref) for ref in pool.security_groups]
    missing = [ref for ref, found in zip(pool.subnets, subnets, strict=True) if not found] + [
        ref for ref, found in zip(pool.security_groups, groups, strict=True) if not found
    ]
    if missing:
        out.note(
            "error",
            f"network references not found (by ID or Name tag): {', '.join(missing)}",
            pool.name,
        )
        return None
    return {
        "subnets": [s for s in subnets if s],
        "securityGroups": [g for g in groups if g],
    }


def _launch(
    pool: DesiredPool,
    network: dict[str, list[str]] | None,
    spec_hash: str = "",
    provider: str = "",
) -> dict[str, object]:
    """What a started task will look like: shown in the plan, used as-is by apply.
    `provider`: where it is placed, when not the pool's own (spot fallback)."""
    spec_hash = spec_hash or pool.spec_hash
    return {
        "taskDefinition": f"{pool.family} (spec hash {spec_hash})",
        "capacityProvider": provider or pool.capacity_provider,
        "network": network,
        "tags": {**pool.task_tags, SPEC_HASH_TAG: spec_hash},
        "runner": {"labels": list(pool.labels), "group": pool.runner_group},
    }


def _run(
    out: _Out,
    pool: DesiredPool,
    count: int,
    reason: str,
    network: dict[str, list[str]] | None,
    provider: str,
    spec_hash: str = "",
) -> None:
    """Start `count` runners on `provider` ("": the pool's own), on the current revision
    or on the revision of `spec_hash`."""
    spec_hash = spec_hash or pool.spec_hash
    out.actions.append(
        RunRunners(
            pool.name,
            reason,
            cluster=pool.cluster,
            pool=pool.name,
            count=count,
            spec_hash=spec_hash,
            after=_launch(pool, network, spec_hash, provider),
        )
    )


# ------------------------------------------------------------------ removed pools


def _plan_removed_pools(
    desired: DesiredState,
    observed: ObservedState,
    runner_states: Mapping[str, RunnerState],
    in_flight: InFlight,
    deletions_held: str,
) -> _Out:
    out = _Out()
    families = {
        pool_of_family(family): revisions
        for family, revisions in observed.task_definitions.items()
        if pool_of_family(family)
    }
    removed = ({t.pool for t in observed.tasks} | set(families)) - set(desired.pools)
    for name in sorted(n for n in removed if n):
        revisions = [r for r in families.get(name, []) if r.owned]
        tasks = [t for t in observed.tasks_by_pool.get(name, []) if t.arn not in in_flight.stops]
        if not desired.complete or deletions_held:
            because = "some specs failed to load" if not desired.complete else deletions_held
            out.note(
                "warning",
                f"pool {name} is not in the specs, but {because}: it is kept as it is until "
                "a complete cycle",
                name,
            )
            continue
        policy = _deletion_policy(revisions)
        if policy == "Orphan":
            if tasks or revisions:
                out.note(
                    "info",
                    f"pool {name} was removed from the specs; deletionPolicy Orphan leaves its "
                    f"{len(tasks)} runner(s) and {len(revisions)} revision(s) as they are",
                    name,
                )
            continue
        _drain_pool(name, tasks, revisions, runner_states, out)
    return out


def _deletion_policy(revisions: list[ObservedTaskDefinition]) -> str:
    latest = max(revisions, key=lambda r: r.revision, default=None)
    return latest.tags.get(DELETION_POLICY_TAG, "Drain") if latest else "Drain"


def _drain_pool(
    name: str,
    tasks: list[ObservedTask],
    revisions: list[ObservedTaskDefinition],
    runner_states: Mapping[str, RunnerState],
    out: _Out,
) -> None:
    states = [_state(t, runner_states) for t in tasks]
    stoppable = [t for t, state in zip(tasks, states, strict=True) if state in STOPPABLE]
    held = len(tasks) - len(stoppable)
    out.pools.append(
        PoolSummary(
            name=name,
            cluster=", ".join(sorted({t.cluster for t in tasks})),
            desired=0,
            running=len(tasks),
            busy=states.count(RunnerState.BUSY),
            idle=states.count(RunnerState.IDLE),
            unknown=states.count(RunnerState.UNKNOWN),
            outdated=0,
            count_reason="pool removed from the specs",
            failed=states.count(RunnerState.FAILED),
        )
    )
    for cluster in sorted({t.cluster for t in stoppable}):
        in_cluster = _oldest_first([t for t in stoppable if t.cluster == cluster])
        out.actions.append(
            StopRunners(
                name,
                "pool removed from the specs (deletionPolicy Drain): idle runners stop",
                cluster=cluster,
                pool=name,
                task_arns=tuple(t.arn for t in in_cluster),
                deletes_pool=True,
            )
        )
    if held:
        out.note(
            "info",
            f"pool {name} is draining: {held} busy or unknown runner(s) finish first",
            name,
        )
    in_use = {t.task_definition_arn for t in tasks if t not in stoppable}
    for revision in sorted(revisions, key=lambda r: r.revision):
        if revision.arn in in_use:
            continue
        out.actions.append(
            DeregisterTaskDefinition(
                f"{name}[{revision.revision}]",
                "pool removed from the specs (deletionPolicy Drain)",
                pool=name,
                before={"taskDefinitionArn": revision.arn},
                patch=[{"op": "remove", "path": ""}],
                deletes_pool=True,
            )
        )


def patch_of(before: object, after: object) -> list[dict[str, Any]]:
    """The RFC 6902 patch that turns `before` into `after`."""
    return list(jsonpatch.make_patch(before, after))
