"""Where a pool's rollout stands: canary first, then maxSurge; halted after repeated failures.

A rollout is in progress while runners of an older revision still run. The new revision
first gets `rollout.canary` runners; until that many have come online (idle or busy) nothing
more is replaced and scale-out keeps starting the previous revision. Then idle runners are
replaced `maxSurge` at a time.

A runner task of the new revision that stopped on its own before doing its job is a failure:
a pull or start error (`CannotPullContainerError`, ...), our stop after the boot timeout
("never came online"), a runner container that exited non-zero, or a stopped task whose JIT
registration still exists (GitHub removes an ephemeral runner once it ran its job, and we
deregister before we stop: the runner source reports those `failed`). Failures are recorded
on the revision itself (tag `ecs-reconciler:rollout-failures`, short task ids), so they
survive a controller restart and ECS forgetting stopped tasks after an hour. After
`rollout.maxFailures` the rollout is halted: nothing more is replaced, scale-out stays on the
previous revision, and the pool is Degraded (RolloutHalted). A spec change makes a new
revision, with no failures: a fresh rollout. Pure: no I/O.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .state import (
    ROLLOUT_FAILURES_TAG,
    DesiredPool,
    ObservedState,
    ObservedTask,
    ObservedTaskDefinition,
    RunnerState,
)

#: stop reasons of ECS (and ours) that mean the runner never got to do its job
FAILED_TO_START = (
    "CannotPullContainerError",
    "CannotStartContainerError",
    "CannotCreateContainerError",
    "ResourceInitializationError",
    "TaskFailedToStart",
)
BOOT_TIMEOUT_REASON = "never came online"  # in the reason of the planner's own stop
ESSENTIAL_EXITED = "Essential container in task exited"
SHORT_ID = 8  # characters of a task id kept in the tag (256 characters hold 28)


@dataclass(frozen=True)
class Rollout:
    """The rollout of one pool: what the planner may do, and what to tell the operator."""

    old_hash: str = ""  # set while canary pending or halted: scale-out stays on this revision
    halted: bool = False
    message: str = ""
    severity: str = "info"
    failures: dict[str, str] = field(default_factory=dict)  # short task id -> why

    def budget(
        self,
        pool: DesiredPool,
        current: Sequence[ObservedTask],
        starting: Sequence[ObservedTask],
        in_flight: int = 0,
    ) -> int:
        """Outdated idle runners that may be replaced now; `in_flight`: starts issued that
        the listing does not show yet (counted against the surge, to be safe)."""
        if self.halted:
            return 0
        if self.old_hash:  # canary first: at most `canary` runners on the new revision
            return max(0, pool.canary - len(current) - in_flight)
        return max(0, pool.max_surge - len(starting) - in_flight)


def failure_of(task: ObservedTask, state: RunnerState) -> str | None:
    """Why a stopped runner task counts as a failure, or None for a normal end."""
    reason = task.stopped_reason
    if reason.startswith(FAILED_TO_START) or BOOT_TIMEOUT_REASON in reason:
        return reason[:120]
    if task.exit_code not in (None, 0):
        return f"runner exited with code {task.exit_code}"
    if state is RunnerState.FAILED:
        return f"stopped before running a job ({reason or 'no reason given'})"[:120]
    return None


def recorded_failures(revision: ObservedTaskDefinition | None) -> set[str]:
    """Short task ids recorded as failures on a revision."""
    value = revision.tags.get(ROLLOUT_FAILURES_TAG, "") if revision else ""
    return {item for item in value.split(",") if item}


def current_revision(pool: DesiredPool, observed: ObservedState) -> ObservedTaskDefinition | None:
    """The registered revision that matches the pool's spec, if any."""
    revisions = [
        r
        for r in observed.task_definitions.get(pool.family, [])
        if r.owned and r.content_hash == pool.spec_hash == r.tagged_hash
    ]
    return max(revisions, key=lambda r: r.revision, default=None)


def new_failures(
    pool: DesiredPool, observed: ObservedState, states: Mapping[str, RunnerState]
) -> dict[str, str]:
    """Failures of the pool's current revision seen in this observation, by short task id."""
    failures = {}
    for task in observed.stopped_tasks:
        if task.pool != pool.name or task.spec_hash != pool.spec_hash:
            continue
        why = failure_of(task, states.get(task.arn, RunnerState.UNKNOWN))
        if why:
            failures[task.task_id[:SHORT_ID]] = why
    return failures


def failures_tag_value(
    pool: DesiredPool, observed: ObservedState, states: Mapping[str, RunnerState]
) -> str:
    """The failures tag the current revision should carry: recorded ones plus new ones."""
    ids = recorded_failures(current_revision(pool, observed)) | set(
        new_failures(pool, observed, states)
    )
    return ",".join(sorted(ids)[: 256 // (SHORT_ID + 1)])


def rollout_of(
    pool: DesiredPool,
    observed: ObservedState,
    current: Sequence[ObservedTask],
    outdated: Sequence[ObservedTask],
    states: Mapping[str, RunnerState],
) -> Rollout:
    """Where the pool's rollout stands (no rollout when no older runner runs)."""
    if not outdated:
        return Rollout()
    revisions = {r.tagged_hash: r.revision for r in observed.task_definitions.get(pool.family, [])}
    old_hash = Counter(t.spec_hash for t in outdated).most_common(1)[0][0]
    old = f"{pool.family}:{revisions[old_hash]}" if old_hash in revisions else old_hash
    new = (
        f"{pool.family}:{revisions[pool.spec_hash]}"
        if pool.spec_hash in revisions
        else "a new revision"
    )
    seen = new_failures(pool, observed, states)
    failed = recorded_failures(current_revision(pool, observed)) | set(seen)
    if pool.max_failures and len(failed) >= pool.max_failures:
        evidence = "; ".join(f"task {task}: {why}" for task, why in sorted(seen.items()))
        return Rollout(
            old_hash,
            halted=True,
            severity="warning",
            failures=seen,
            message=f"rollout {old} -> {new} HALTED: {len(failed)} runner(s) of the new "
            f"revision failed (maxFailures {pool.max_failures})"
            + (f": {evidence}" if evidence else "")
            + f"; {len(outdated)} runner(s) of the previous revision keep serving; fix the "
            "spec to start a new rollout",
        )
    online = sum(
        1
        for t in current
        if states.get(t.arn, RunnerState.UNKNOWN) in (RunnerState.IDLE, RunnerState.BUSY)
    )
    so_far = f"; {len(failed)} failure(s) so far" if failed else ""
    if pool.canary and online < pool.canary:
        waiting = (
            f"waiting for {pool.canary - online} canary runner(s) to come online"
            if len(current) >= pool.canary
            else f"canary first: {pool.canary} runner(s) on the new revision"
        )
        return Rollout(
            old_hash,
            failures=seen,
            message=f"rollout {old} -> {new}: {waiting}; {len(outdated)} outdated "
            f"runner(s){so_far}",
        )
    return Rollout(
        failures=seen,
        message=f"rollout {old} -> {new}: canary up ({online} online); {len(outdated)} "
        f"outdated runner(s) replaced {pool.max_surge} at a time as they turn idle{so_far}",
    )
