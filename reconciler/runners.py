"""The runner-state interface: what the runner inside each task is doing (busy / idle).

The planner only ever sees a mapping task ARN -> `RunnerState`; where it comes from is
this interface's business. `UnknownRunnerStates` is the safe default when no source is
configured: every runner is "unknown", so no runner task is ever stopped. The sandbox
implements it with task tags; the GitHub integration will implement it with the runner API.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from .plan.state import ObservedTask, RunnerState


class RunnerStateSource(Protocol):
    """Reports runner states, and re-checks one just before it would be stopped."""

    def states(self, tasks: Sequence[ObservedTask]) -> dict[str, RunnerState]:
        """State of the runner in each task, by task ARN."""
        ...

    def confirm_idle(self, task: ObservedTask) -> bool:
        """Re-check, right before stopping it, that the runner is still idle."""
        ...


class UnknownRunnerStates:
    """No source of runner state: everything is unknown, so nothing is ever stopped."""

    def states(self, tasks: Sequence[ObservedTask]) -> dict[str, RunnerState]:
        """Every task's runner is unknown."""
        return {task.arn: RunnerState.UNKNOWN for task in tasks}

    def confirm_idle(self, task: ObservedTask) -> bool:
        """Never confirmed."""
        return False
