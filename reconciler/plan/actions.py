"""The plan as data: an ordered list of actions plus notes, serialisable to versioned JSON.

Renderers only read a `Plan`; `apply` executes one. Nothing here performs I/O.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Literal

FORMAT_VERSION = "1.0"

ActionKind = Literal["create", "update", "replace", "delete", "run", "stop"]
NoteSeverity = Literal["info", "warning", "error"]


class Phase(IntEnum):
    """Apply order: what later phases need is done by earlier ones."""

    SPECS = 0  # spec-level changes, shown by `plan --base` (never applied as such)
    CAPACITY_PROVIDERS = 1
    CLUSTER_ASSOCIATION = 2
    CAPACITY = 3  # Auto Scaling groups scaled out by the reconciler (before tasks need room)
    TASK_DEFINITIONS = 4
    RUNNER_TASKS = 5
    CLEAN_UP = 6


@dataclass(frozen=True, eq=False)
class Action:
    """One change: what (address), how (action), why (reason), and its data.

    Compared and hashed by identity (a plan holds each action once); compare `to_json()`
    for equal content.
    """

    action: ActionKind
    resource_type: str
    name: str
    phase: Phase
    reason: str
    cluster: str = ""
    pool: str | None = None
    before: Any = None
    after: Any = None
    patch: list[dict[str, Any]] = field(default_factory=list)
    # runner tasks: how many to start, which to stop, and with which task definition
    count: int = 0
    task_arns: tuple[str, ...] = ()
    spec_hash: str = ""
    # set when this action stops runners or removes a pool for good (the blast-radius guard)
    deletes_pool: bool = False
    # where in the specs the change comes from: "" for the document, or a patch path
    locations: dict[str, str] = field(default_factory=dict)

    @property
    def address(self) -> str:
        """Terraform-like address, for example `runner_tasks.linux-large`."""
        return f"{self.resource_type}.{self.name}"

    @property
    def stops(self) -> int:
        """Runner tasks this action stops."""
        return len(self.task_arns)

    def to_json(self) -> dict[str, Any]:
        """The action in the plan's JSON format."""
        data: dict[str, Any] = {
            "address": self.address,
            "action": self.action,
            "resource_type": self.resource_type,
            "name": self.name,
            "cluster": self.cluster,
            "pool": self.pool,
            "phase": self.phase.name.lower(),
            "reason": self.reason,
            "before": self.before,
            "after": self.after,
            "patch": self.patch,
        }
        if self.resource_type == "runner_tasks":
            data.update(
                count=self.count,
                stop_task_arns=list(self.task_arns),
                spec_hash=self.spec_hash,
            )
        if self.deletes_pool:
            data["deletes_pool"] = True
        if self.locations:
            data["locations"] = self.locations
        return data


# One class per kind of action (what the executor has a handler for). Each fixes its kind
# (`action`, `resource_type`) and its apply phase; the constructor takes the rest:
# `RunRunners(name, reason, cluster=..., pool=..., count=...)`.


@dataclass(frozen=True, eq=False)
class CreateCapacityProvider(Action):
    """CreateCapacityProvider for an Auto Scaling group, tagged as ours."""

    action: ActionKind = field(default="create", init=False)
    resource_type: str = field(default="capacity_provider", init=False)
    phase: Phase = field(default=Phase.CAPACITY_PROVIDERS, init=False)


@dataclass(frozen=True, eq=False)
class UpdateCapacityProvider(Action):
    """UpdateCapacityProvider (managed scaling, termination protection) and its tags."""

    action: ActionKind = field(default="update", init=False)
    resource_type: str = field(default="capacity_provider", init=False)
    phase: Phase = field(default=Phase.CAPACITY_PROVIDERS, init=False)


@dataclass(frozen=True, eq=False)
class ReplaceCapacityProvider(Action):
    """A change ECS cannot make in place: detach, delete, create, attach again."""

    action: ActionKind = field(default="replace", init=False)
    resource_type: str = field(default="capacity_provider", init=False)
    phase: Phase = field(default=Phase.CAPACITY_PROVIDERS, init=False)


@dataclass(frozen=True, eq=False)
class DeleteCapacityProvider(Action):
    """DeleteCapacityProvider of a provider no spec names any more."""

    action: ActionKind = field(default="delete", init=False)
    resource_type: str = field(default="capacity_provider", init=False)
    phase: Phase = field(default=Phase.CLEAN_UP, init=False)


@dataclass(frozen=True, eq=False)
class AssociateCapacityProviders(Action):
    """PutClusterCapacityProviders: the providers a cluster may use."""

    action: ActionKind = field(default="update", init=False)
    resource_type: str = field(default="cluster_capacity_providers", init=False)
    phase: Phase = field(default=Phase.CLUSTER_ASSOCIATION, init=False)


@dataclass(frozen=True, eq=False)
class SetDesiredCapacity(Action):
    """SetDesiredCapacity of a reconciler-scaled Auto Scaling group (room for new runners)."""

    action: ActionKind = field(default="update", init=False)
    resource_type: str = field(default="auto_scaling_group", init=False)
    phase: Phase = field(default=Phase.CAPACITY, init=False)


@dataclass(frozen=True, eq=False)
class TerminateInstances(Action):
    """Drain empty container instances, then terminate them with a capacity decrement."""

    action: ActionKind = field(default="stop", init=False)
    resource_type: str = field(default="instances", init=False)
    phase: Phase = field(default=Phase.CLEAN_UP, init=False)


@dataclass(frozen=True, eq=False)
class RegisterTaskDefinition(Action):
    """RegisterTaskDefinition: the first revision of a pool."""

    action: ActionKind = field(default="create", init=False)
    resource_type: str = field(default="task_definition", init=False)
    phase: Phase = field(default=Phase.TASK_DEFINITIONS, init=False)


@dataclass(frozen=True, eq=False)
class UpdateTaskDefinition(Action):
    """A new revision for a content change, or new tags on an existing revision."""

    action: ActionKind = field(default="update", init=False)
    resource_type: str = field(default="task_definition", init=False)
    phase: Phase = field(default=Phase.TASK_DEFINITIONS, init=False)


@dataclass(frozen=True, eq=False)
class DeregisterTaskDefinition(Action):
    """DeregisterTaskDefinition of a revision no runner uses any more."""

    action: ActionKind = field(default="delete", init=False)
    resource_type: str = field(default="task_definition", init=False)
    phase: Phase = field(default=Phase.CLEAN_UP, init=False)


@dataclass(frozen=True, eq=False)
class RunRunners(Action):
    """Start `count` runner tasks of the revision `spec_hash`, placed as `after` says."""

    action: ActionKind = field(default="run", init=False)
    resource_type: str = field(default="runner_tasks", init=False)
    phase: Phase = field(default=Phase.RUNNER_TASKS, init=False)


@dataclass(frozen=True, eq=False)
class StopRunners(Action):
    """Stop the runner tasks `task_arns` (each only if GitHub lets it go)."""

    action: ActionKind = field(default="stop", init=False)
    resource_type: str = field(default="runner_tasks", init=False)
    phase: Phase = field(default=Phase.RUNNER_TASKS, init=False)


@dataclass(frozen=True, eq=False)
class ReplaceRunners(Action):
    """A rollout step: start `count` runners of the new revision, stop `task_arns`."""

    action: ActionKind = field(default="replace", init=False)
    resource_type: str = field(default="runner_tasks", init=False)
    phase: Phase = field(default=Phase.RUNNER_TASKS, init=False)


@dataclass(frozen=True, eq=False)
class SpecChange(Action):
    """A spec-level change shown by `plan --base` (any kind; never applied as such)."""

    phase: Phase = field(default=Phase.SPECS, init=False)


TYPED_ACTIONS: tuple[type[Action], ...] = (
    CreateCapacityProvider,
    UpdateCapacityProvider,
    ReplaceCapacityProvider,
    DeleteCapacityProvider,
    AssociateCapacityProviders,
    SetDesiredCapacity,
    TerminateInstances,
    RegisterTaskDefinition,
    UpdateTaskDefinition,
    DeregisterTaskDefinition,
    RunRunners,
    StopRunners,
    ReplaceRunners,
)
# (resource type, action) -> its class: the kind a plan's JSON names
_BY_KIND: dict[tuple[str, str], type[Action]] = {
    (cls.resource_type, cls.action): cls  # type: ignore[misc]  # the fixed defaults
    for cls in TYPED_ACTIONS
}


def action_from_json(data: dict[str, Any]) -> Action:
    """An action read back from the plan's JSON format (`Action.to_json`), as its class."""
    try:
        phase = Phase.__members__.get(str(data["phase"]).upper())
        kind = (str(data["resource_type"]), str(data["action"]))
        fields: dict[str, Any] = {
            "name": data["name"],
            "reason": data["reason"],
            "cluster": data["cluster"],
            "pool": data["pool"],
            "before": data["before"],
            "after": data["after"],
            "patch": data["patch"],
            "count": data.get("count", 0),
            "task_arns": tuple(data.get("stop_task_arns", ())),
            "spec_hash": data.get("spec_hash", ""),
            "deletes_pool": data.get("deletes_pool", False),
            "locations": data.get("locations", {}),
        }
    except KeyError as error:
        raise ValueError(f"a plan action needs the field {error}: {data!r:.200}") from None
    if phase is None:
        raise ValueError(f"unknown phase {data['phase']!r} of {data.get('address')}")
    if phase is Phase.SPECS:
        return SpecChange(action=kind[1], resource_type=kind[0], **fields)  # type: ignore[arg-type]
    cls = _BY_KIND.get(kind)
    if cls is None:
        raise ValueError(f"unknown plan action {kind[1]!r} of {kind[0]!r} ({data.get('address')})")
    action = cls(**fields)
    if action.phase is not phase:
        raise ValueError(f"{action.address}: phase {phase.name.lower()} is not its phase")
    return action


@dataclass(frozen=True)
class Note:
    """Something the operator should know that is not a change: held runners, warnings."""

    severity: NoteSeverity
    message: str
    pool: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The note in the plan's JSON format."""
        return {"severity": self.severity, "pool": self.pool, "message": self.message}


@dataclass(frozen=True)
class PoolSummary:
    """Runner counts of one pool as observed, and its target."""

    name: str
    cluster: str
    desired: int
    running: int
    busy: int
    idle: int
    unknown: int
    outdated: int
    count_reason: str = ""
    failed: int = 0  # runners that never came online (being stopped and replaced)
    rollout_halted: str = ""  # why the pool's rollout is halted, when it is
    spot_fallback: str = ""  # the on-demand provider new runners go to while spot cannot launch
    draining: int = 0  # busy or starting runners kept on draining (interrupted) instances

    def to_json(self) -> dict[str, Any]:
        """The summary in the plan's JSON format."""
        return {
            "name": self.name,
            "cluster": self.cluster,
            "desired": self.desired,
            "running": self.running,
            "busy": self.busy,
            "idle": self.idle,
            "unknown": self.unknown,
            "outdated": self.outdated,
            "failed": self.failed,
            "rollout_halted": self.rollout_halted,
            "spot_fallback": self.spot_fallback,
            "draining": self.draining,
            "count_reason": self.count_reason,
        }


@dataclass(frozen=True)
class Plan:
    """What `apply` would do, in order, and what it would deliberately not do."""

    actions: tuple[Action, ...] = ()
    notes: tuple[Note, ...] = ()
    pools: tuple[PoolSummary, ...] = ()
    spec_errors: tuple[str, ...] = ()
    generated_at: str = ""

    @property
    def has_changes(self) -> bool:
        """True when apply would change anything."""
        return bool(self.actions)

    def counts(self) -> Counter[str]:
        """Actions by kind, plus runner tasks to start and stop, instances to add and remove."""
        counter: Counter[str] = Counter()
        for action in self.actions:
            if action.resource_type == "runner_tasks":
                counter["runners_start"] += action.count
                counter["runners_stop"] += action.stops
            elif action.resource_type == "auto_scaling_group":
                counter["instances_add"] += (
                    action.after["desiredCapacity"] - action.before["desiredCapacity"]
                )
            elif action.resource_type == "instances":
                counter["instances_remove"] += len(action.after["instances"])
            else:
                counter[action.action] += 1
        return counter

    def summary_line(self) -> str:
        """One line like terraform's `Plan: 1 to add, 0 to change, 0 to destroy.`"""
        if not self.actions:
            return "No changes. ECS matches the specs."
        c = self.counts()
        return (
            f"Plan: {c['create']} to create, {c['update']} to update, {c['replace']} to "
            f"replace, {c['delete']} to delete; runners: {c['runners_start']} to start, "
            f"{c['runners_stop']} to stop"
            + (
                f"; instances: {c['instances_add']} to add, {c['instances_remove']} to remove."
                if c["instances_add"] or c["instances_remove"]
                else "."
            )
        )

    def for_pool(self, pool: str) -> list[Action]:
        """Actions that belong to one pool."""
        return [a for a in self.actions if a.pool == pool]

    def to_json(self) -> dict[str, Any]:
        """The versioned, machine-readable plan."""
        counts = self.counts()
        return {
            "format_version": FORMAT_VERSION,
            "generated_at": self.generated_at,
            "has_changes": self.has_changes,
            "summary": {
                "create": counts["create"],
                "update": counts["update"],
                "replace": counts["replace"],
                "delete": counts["delete"],
                "runners_start": counts["runners_start"],
                "runners_stop": counts["runners_stop"],
                "line": self.summary_line(),
            },
            "actions": [a.to_json() for a in self.actions],
            "notes": [n.to_json() for n in self.notes],
            "pools": [p.to_json() for p in self.pools],
            "spec_errors": list(self.spec_errors),
        }


def plan_from_json(data: dict[str, Any]) -> Plan:
    """A plan read back from its JSON format (`Plan.to_json`), each action as its class."""
    if data.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"plan format {data.get('format_version')!r} is not {FORMAT_VERSION!r}")
    try:
        return Plan(
            actions=tuple(action_from_json(a) for a in data["actions"]),
            notes=tuple(Note(n["severity"], n["message"], n["pool"]) for n in data["notes"]),
            pools=tuple(PoolSummary(**p) for p in data["pools"]),
            spec_errors=tuple(data["spec_errors"]),
            generated_at=data["generated_at"],
        )
    except (KeyError, TypeError) as error:
        raise ValueError(f"not a plan: {error}") from None
