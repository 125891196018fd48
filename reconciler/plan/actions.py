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
