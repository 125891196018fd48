"""The runner-state interface: what the runner inside each task is doing (busy / idle).

The planner only ever sees a mapping task ARN -> `RunnerState`; where it comes from is
this interface's business. `UnknownRunnerStates` is the safe default when no source is
configured: every runner is "unknown", so no runner task is ever stopped. The sandbox
implements it with task tags; the GitHub integration will implement it with the runner API.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping, Sequence
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

    def registered(self, task: ObservedTask, name: str) -> int | None:
        """The id of the runner registered as `name` in the task's scope (as listed by the
        last `states` call), or None: the runner of an unbound task may exist after all."""
        ...


class UnknownRunnerStates:
    """No source of runner state: everything is unknown, so nothing is ever stopped."""

    def states(self, tasks: Sequence[ObservedTask]) -> dict[str, RunnerState]:
        """Every task's runner is unknown."""
        return {task.arn: RunnerState.UNKNOWN for task in tasks}

    def confirm_stoppable(self, task: ObservedTask) -> bool:
        """Never confirmed."""
        return False

    def registered(self, task: ObservedTask, name: str) -> int | None:
        """No registrations are known."""
        return None


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


# A runner task is bound (tagged with its runner name) by the apply that started it, seconds
# after RunTask. One still unbound this long after it was created lost its binding (the lease
# was lost, or the process died, between RunTask and binding): a later cycle binds it...
REBIND_AFTER_SECONDS = 30.0
# ...while its runner still waits for its configuration (the image's RUNNER_JIT_WAIT_SECONDS,
# 120 s from its start, with margin for the binding itself); an older one is stopped instead.
REBIND_UNTIL_SECONDS = 90.0


@dataclass(frozen=True)
class Unbound:
    """Runner tasks that lost their binding: to bind now, and too old to bind (to stop)."""

    bind: tuple[ObservedTask, ...] = ()
    stop: tuple[ObservedTask, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.bind or self.stop)


class UnboundWatch:
    """Finds the running tasks that lost their binding (no runner-name tag).

    A task's age is the longer of: since ECS created it (`created_at`, epoch seconds), and
    since this watch first saw it unbound (monotonic; for a task whose creation time is not
    reported, as moto's are not). Unbound for `bind_after` seconds: bound if younger than
    `bind_until` and its pool is still specified, else stopped. The controller's one thread
    uses it (not thread-safe)."""

    def __init__(
        self,
        bind_after: float = REBIND_AFTER_SECONDS,
        bind_until: float = REBIND_UNTIL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 <= bind_after < bind_until:
            raise ValueError(f"need 0 <= bind_after < bind_until, got {bind_after}, {bind_until}")
        self.bind_after, self.bind_until, self.clock = bind_after, bind_until, clock
        self._first_seen: dict[str, float] = {}

    def check(self, tasks: Sequence[ObservedTask], now: float, pools: Collection[str]) -> Unbound:
        """The unbound tasks among `tasks` (observed at epoch `now`) old enough to act on."""
        seen_at = self.clock()
        unbound = [
            task
            for task in tasks
            if not task.tags.get(RUNNER_NAME_TAG) and task.last_status != "STOPPED"
        ]
        self._first_seen = {task.arn: self._first_seen.get(task.arn, seen_at) for task in unbound}
        bind: list[ObservedTask] = []
        stop: list[ObservedTask] = []
        for task in unbound:
            age = seen_at - self._first_seen[task.arn]
            if task.created_at is not None:
                age = max(age, now - task.created_at)
            if age < self.bind_after:
                continue
            (bind if age < self.bind_until and task.pool in pools else stop).append(task)
        return Unbound(tuple(bind), tuple(stop))
