"""The runner-state interface: what the runner inside each task is doing (busy / idle).

The planner only ever sees a mapping task ARN -> `RunnerState`; where it comes from is
this interface's business. `UnknownRunnerStates` is the safe default when no source is
configured: every runner is "unknown", so no runner task is ever stopped. The sandbox
implements it with task tags; the GitHub integration will implement it with the runner API.
"""

from __future__ import annotations

import secrets
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
    """What one runner task is started with: its runner name, extra tags and environment."""

    pool: str
    name: str
    tags: dict[str, str] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)  # never a secret: it is
    # readable by anyone with ecs:DescribeTasks
    handles: dict[str, Any] = field(default_factory=dict, repr=False)  # for `abandon`


class RunnerProvisioner(Protocol):
    """Prepares each runner before its task starts, and cleans up when the start fails."""

    def prepare(self, pool: str, launch: Mapping[str, Any]) -> Provision:
        """A fresh runner name (and registration, if any) for one task of `pool`.

        Raises ProvisionFailed when the runner cannot be prepared."""
        ...

    def abandon(self, provision: Provision) -> None:
        """The task did not start: remove what `prepare` created."""
        ...


def runner_name(pool: str) -> str:
    """A unique runner name: the pool and a random suffix (GitHub allows 64 characters)."""
    return f"{pool[:54]}-{secrets.token_hex(4)}"


class NamingProvisioner:
    """No registration (the sandbox, or runners that register themselves): a name only."""

    def prepare(self, pool: str, launch: Mapping[str, Any]) -> Provision:
        """A name, carried as the task's runner-name tag."""
        name = runner_name(pool)
        return Provision(pool, name, tags={RUNNER_NAME_TAG: name})

    def abandon(self, provision: Provision) -> None:
        """Nothing was created."""
