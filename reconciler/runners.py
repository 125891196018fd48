"""The runner-state interface: what the runner inside each task is doing (busy / idle).

The planner only ever sees a mapping task ARN -> `RunnerState`; where it comes from is
this interface's business. `UnknownRunnerStates` is the safe default when no source is
configured: every runner is "unknown", so no runner task is ever stopped. The sandbox
implements it with task tags; the GitHub integration will implement it with the runner API.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .plan.state import RUNNER_NAME_TAG, ObservedTask, RunnerState


class RunnerStateSource(Protocol):
    """Reports runner states, and re-checks one just before it would be stopped."""

    def states(self, tasks: Sequence[ObservedTask]) -> dict[str, RunnerState]:
        """State of the runner in each task, by task ARN."""
        ...

    def confirm_stoppable(self, task: ObservedTask) -> bool:
        """Re-check, right before stopping it, that the runner is still idle (or failed)."""
        ...


class UnknownRunnerStates:
    """No source of runner state: everything is unknown, so nothing is ever stopped."""

    def states(self, tasks: Sequence[ObservedTask]) -> dict[str, RunnerState]:
        """Every task's runner is unknown."""
        return {task.arn: RunnerState.UNKNOWN for task in tasks}

    def confirm_stoppable(self, task: ObservedTask) -> bool:
        """Never confirmed."""
        return False


class ProvisionFailed(Exception):
    """A runner could not be prepared (registration refused, parameter store error...)."""


@dataclass(frozen=True)
class Provision:
    """What one placed runner task is bound to: its runner name and the tags that say so."""

    pool: str
    name: str
    tags: dict[str, str] = field(default_factory=dict)
    handles: dict[str, Any] = field(default_factory=dict, repr=False)  # for `abandon`


class RunnerProvisioner(Protocol):
    """Binds each runner task to its runner *after* ECS placed it.

    Tasks are started in batches (RunTask `count` up to 10), so every task of a batch is
    started identically: `environment` is the same for all of them and never a secret (it
    is readable by anyone with ecs:DescribeTasks). Only for a task ECS actually placed does
    `bind` create what its runner needs, under names derived from the task's id, which the
    runner finds by itself (the ECS task metadata endpoint gives it its task ARN). A task
    ECS did not place therefore costs nothing and leaves nothing behind.

    `bind` and `abandon` are called from a small pool of worker threads: they must be
    thread-safe."""

    def environment(self, pool: str, launch: Mapping[str, Any]) -> dict[str, str]:
        """The environment every runner task of `pool` is started with."""
        ...

    def bind(self, pool: str, launch: Mapping[str, Any], task_arn: str) -> Provision:
        """Create the runner (registration, if any) of the placed task `task_arn`.

        Raises ProvisionFailed when the runner cannot be prepared; nothing is left behind."""
        ...

    def abandon(self, provision: Provision) -> None:
        """The task could not be bound after all: remove what `bind` created."""
        ...


def task_id_of(task_arn: str) -> str:
    """The short task id: the last part of the ARN."""
    return task_arn.rsplit("/", 1)[-1]


def runner_name(pool: str, task_arn: str) -> str:
    """The runner name of a task: the pool and the task id (GitHub allows 64 characters).

    Derived from the task, so the task's runner (and its parameter) can always be found from
    the task alone, whether or not its tags were written."""
    task_id = task_id_of(task_arn)
    if not task_arn.startswith("arn:") or "/" not in task_arn or not task_id:
        raise ValueError(f"not an ECS task ARN: {task_arn!r}")
    return f"{pool[: max(1, 63 - len(task_id))]}-{task_id}"


class NamingProvisioner:
    """No registration (the sandbox, or runners that register themselves): a name only."""

    def environment(self, pool: str, launch: Mapping[str, Any]) -> dict[str, str]:
        """Nothing: the runner needs no parameter."""
        return {}

    def bind(self, pool: str, launch: Mapping[str, Any], task_arn: str) -> Provision:
        """A name, carried as the task's runner-name tag."""
        name = runner_name(pool, task_arn)
        return Provision(pool, name, tags={RUNNER_NAME_TAG: name})

    def abandon(self, provision: Provision) -> None:
        """Nothing was created."""
