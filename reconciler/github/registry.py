"""Runner states from GitHub: the `RunnerStateSource` for real use.

Each runner task carries two tags set when it is started: `ecs-reconciler:runner-name`
(the name its just-in-time registration was created with) and `ecs-reconciler:scope`
(`organization:acme`, `repository:acme/app`, `enterprise:acme`). So a task maps to its
runner without any naming convention, and a pool removed from the specs can still be
drained. One listing per scope per cycle (conditional, so an unchanged list costs a 304).

- online and busy -> busy; online and not busy -> idle; anything else -> unknown (never
  stopped by the planner), except:
- a task older than `boot_timeout` whose runner is not online (never came up, or already
  removed) and not flagged busy -> failed: the planner stops and replaces it.
- a *stopped* task whose registration still exists -> failed: GitHub removes an ephemeral
  runner once it has run its job, and we deregister before we stop, so the runner exited
  without doing its job (a crash): evidence for halting a rollout.
- A runner younger than `grace` seconds is unknown unless GitHub says it is busy: a runner
  that has just come online may be about to receive its job (other controllers lost jobs by
  reaping runners seconds after they registered). A busy one is busy at any age, so a
  burst's young busy runners are not counted as spare ones covering its pending jobs
  (bench/burst.py: the last 10-25% of a 400-job burst waited out the grace).
- GitHub decides every stop. `confirm_stoppable` trusts neither the busy flag nor the
  cycle's listing (minutes old, perhaps): it deletes the task's runner by id (the
  `ecs-reconciler:runner-id` tag of a JIT runner, else the id listed, else the id of a
  fresh listing by name), and only GitHub's success or 404 (gone: it can take no job) lets
  the task stop; a refusal (HTTP 422, the runner is running a job) or no answer keeps it.
  A task whose runner is in no fresh listing either has no registration that could take a
  job, so it may stop (tasks are bound to their JIT registration seconds after placement;
  only young tasks, which are never stopped, can still be unbound).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from ..clock import WallClock, wall_time
from ..plan.state import RUNNER_ID_TAG, RUNNER_NAME_TAG, SCOPE_TAG, ObservedTask, RunnerState
from .client import GitHubClient, GitHubError, Runner, RunnerBusy, Scope

log = logging.getLogger(__name__)

DEFAULT_GRACE_SECONDS = 120.0
DEFAULT_BOOT_TIMEOUT_SECONDS = 600.0  # instance pull + runner start; minutes on a cold host


def scope_of_tag(value: str) -> Scope | None:
    """`organization:acme` -> Scope; None for a missing or malformed tag."""
    kind, _, name = value.partition(":")
    if kind not in ("enterprise", "organization", "repository"):
        return None
    try:
        return Scope(kind, name)  # type: ignore[arg-type]
    except ValueError:
        return None


class GitHubRunnerStates:
    """Busy / idle / unknown of each runner task, read from GitHub's runner API."""

    def __init__(
        self,
        client: GitHubClient,
        grace: float = DEFAULT_GRACE_SECONDS,
        clock: WallClock = wall_time,
        boot_timeout: float = DEFAULT_BOOT_TIMEOUT_SECONDS,
    ) -> None:
        self.client = client
        self.grace = grace
        self.clock = clock
        self.boot_timeout = boot_timeout
        self._runners: dict[Scope, dict[str, Runner]] = {}
        self._first_seen: dict[str, float] = {}  # for tasks reported without a start time

    def states(self, tasks: Sequence[ObservedTask]) -> dict[str, RunnerState]:
        """State by task ARN; lists the runners of each scope in use once."""
        scopes = {scope for task in tasks if (scope := _scope(task)) is not None}
        self._runners = {
            scope: {runner.name: runner for runner in self.client.list_runners(scope)}
            for scope in sorted(scopes, key=lambda s: (s.kind, s.name))
        }
        self._first_seen = {
            task.arn: self._first_seen.get(task.arn, self.clock())
            for task in tasks
            if task.started_at is None
        }
        return {task.arn: self._state(task) for task in tasks}

    def listed(self) -> dict[Scope, dict[str, Runner]]:
        """The runners of each scope as listed by the last `states` call, by name."""
        return self._runners

    def versions(self, tasks: Sequence[ObservedTask]) -> dict[str, set[str]]:
        """The runner versions each pool's runners reported to GitHub (as listed by the last
        `states` call); runners that never connected report none."""
        reported: dict[str, set[str]] = {}
        for task in tasks:
            runner = self._runner(task)
            if runner is not None and runner.version:
                reported.setdefault(task.pool, set()).add(runner.version)
        return reported

    def confirm_stoppable(self, task: ObservedTask) -> bool:
        """Delete the task's runner by id; True only when GitHub removed it or it is gone."""
        scope, state = _scope(task), self._state(task)
        if scope is None or state not in (RunnerState.IDLE, RunnerState.FAILED):
            return False
        name = task.tags.get(RUNNER_NAME_TAG, "")
        try:
            runner_id = self._runner_id(task, scope, name)
            if runner_id is None:
                return True  # registered nowhere now: no job can be lost
            return self.client.delete_runner(scope, runner_id)
        except RunnerBusy:
            return False  # it took a job since we looked: keep it
        except GitHubError as error:
            log.warning("runner %s kept: GitHub did not approve its removal: %s", name, error)
            return False

    def registered(self, task: ObservedTask, name: str) -> int | None:
        """The id of the runner called `name` in the task's scope, as listed this cycle."""
        scope = _scope(task)
        runner = self._runners.get(scope, {}).get(name) if scope is not None else None
        return runner.id if runner is not None else None

    def _runner_id(self, task: ObservedTask, scope: Scope, name: str) -> int | None:
        """The task's runner id: tagged at start, else listed this cycle, else listed now."""
        tagged = task.tags.get(RUNNER_ID_TAG, "")
        if tagged.isdigit():
            return int(tagged)
        runner = self._runner(task)
        if runner is None and name:
            runner = next((r for r in self.client.list_runners(scope) if r.name == name), None)
        return runner.id if runner is not None else None

    def _state(self, task: ObservedTask) -> RunnerState:
        runner = self._runner(task)
        if task.last_status == "STOPPED":  # ephemeral runners that ran their job are gone
            return RunnerState.FAILED if runner is not None else RunnerState.UNKNOWN
        if runner is not None and runner.status == "online":
            if runner.busy:  # at any age: busy is never stopped, and the planner must count
                return RunnerState.BUSY  # it (a burst's young busy runners are not spare)
            return RunnerState.UNKNOWN if self._young(task) else RunnerState.IDLE
        if (runner is None or not runner.busy) and self._boot_timed_out(task):
            return RunnerState.FAILED
        return RunnerState.UNKNOWN

    def _runner(self, task: ObservedTask) -> Runner | None:
        scope = _scope(task)
        name = task.tags.get(RUNNER_NAME_TAG, "")
        return self._runners.get(scope, {}).get(name) if scope else None

    def _age(self, task: ObservedTask) -> float:
        """Seconds since the task started; ECS always says when, else since first seen."""
        started = task.started_at
        if started is None:
            started = self._first_seen.get(task.arn, self.clock())
        return self.clock() - started

    def _young(self, task: ObservedTask) -> bool:
        return self._age(task) < self.grace

    def _boot_timed_out(self, task: ObservedTask) -> bool:
        """Old enough to have come online, and ours (tasks without our tags stay unknown)."""
        return (
            self._age(task) >= self.boot_timeout
            and _scope(task) is not None
            and bool(task.tags.get(RUNNER_NAME_TAG))
        )


def _scope(task: ObservedTask) -> Scope | None:
    return scope_of_tag(task.tags.get(SCOPE_TAG, ""))
