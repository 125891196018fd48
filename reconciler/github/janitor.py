"""Garbage collection of what runner tasks leave behind: registrations and JIT parameters.

Run by the leader after each cycle, from what the cycle already saw (no extra listing of
runners; one paginated SSM listing at most every `sweep_interval`):

- a registered runner of ours (named `<pool>-<task id>`, or `<pool>-<8 hex>` by earlier
  versions, for a pool of the specs or of a running task) that is offline, not busy, and
  belongs to no running task is deregistered once it has been seen that way for `grace`
  seconds (a runner registered by a task still being bound is not mistaken for an orphan);
- a JIT parameter (`/ecs-reconciler/jit/<pool>/<task id>`, or `.../<runner>` by earlier
  versions) older than `grace` whose task (or runner) is in no running task is deleted (the
  entrypoint deletes its own; this catches tasks that died before reading it).

Tasks whose runner never came online are not handled here: the runner-state source reports
them as failed and the planner stops and replaces them, visibly in the plan.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import re
from collections.abc import Collection, Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..clock import WallClock, wall_time
from ..plan.state import RUNNER_NAME_TAG, ObservedTask
from ..runners import runner_name as task_runner_name
from .client import GitHubError, RunnerBusy, Scope
from .jit import PARAMETER_PREFIX
from .registry import DEFAULT_GRACE_SECONDS, GitHubRunnerStates

log = logging.getLogger(__name__)

DEFAULT_SWEEP_SECONDS = 300.0
# an ECS task id (32 hex; moto's are UUIDs) at the end of a runner name
_TASK_ID = re.compile(
    r"-([0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$"
)
_RUNNER_SUFFIX = re.compile(r"-[0-9a-f]{8}")


class RunnerJanitor:
    """Deregisters orphaned runners and deletes leftover JIT parameters."""

    def __init__(
        self,
        states: GitHubRunnerStates,
        ssm: Any,
        prefix: str = PARAMETER_PREFIX,
        grace: float = DEFAULT_GRACE_SECONDS,
        sweep_interval: float = DEFAULT_SWEEP_SECONDS,
        clock: WallClock = wall_time,
    ) -> None:
        self.states = states
        self.ssm = ssm
        self.prefix = prefix.rstrip("/")
        self.grace = grace
        self.sweep_interval = sweep_interval
        self.clock = clock
        self._orphan_since: dict[tuple[Scope, str], float] = {}
        self._last_sweep: float | None = None

    def collect(self, tasks: Sequence[ObservedTask], pools: Collection[str]) -> list[str]:
        """One pass; returns what was removed, one line each (also logged)."""
        in_tasks = {task.tags.get(RUNNER_NAME_TAG, "") for task in tasks}
        known = set(pools) | {task.pool for task in tasks}
        removed = self._deregister_orphans(in_tasks, known)
        now = self.clock()
        if self._last_sweep is None or now - self._last_sweep >= self.sweep_interval:
            self._last_sweep = now
            removed += self._delete_parameters(in_tasks | {task.task_id for task in tasks})
        for line in removed:
            log.info("garbage collected: %s", line)
        return removed

    def _deregister_orphans(self, in_tasks: set[str], pools: set[str]) -> list[str]:
        now, removed = self.clock(), []
        seen: set[tuple[Scope, str]] = set()
        for scope, runners in self.states.listed().items():
            for name, runner in runners.items():
                if name in in_tasks or runner.status == "online" or runner.busy:
                    continue
                if not _is_ours(name, pools):
                    continue
                key = (scope, name)
                seen.add(key)
                since = self._orphan_since.setdefault(key, now)
                if now - since < self.grace:
                    continue
                try:
                    self.states.client.delete_runner(scope, runner.id)
                except (RunnerBusy, GitHubError) as error:
                    log.warning("could not deregister runner %s: %s", name, error)
                    continue
                removed.append(f"runner {name} ({scope.kind} {scope.name}): offline, no task")
        self._orphan_since = {k: v for k, v in self._orphan_since.items() if k in seen}
        return removed

    def _delete_parameters(self, in_tasks: set[str]) -> list[str]:
        removed = []
        cutoff = datetime.datetime.fromtimestamp(self.clock() - self.grace, datetime.UTC)
        try:
            pages = self.ssm.get_paginator("get_parameters_by_path").paginate(
                Path=self.prefix, Recursive=True, WithDecryption=False
            )
            parameters = [p for page in pages for p in page.get("Parameters", [])]
        except (ClientError, BotoCoreError) as error:
            log.warning("could not list JIT parameters: %s", error)
            return []
        for parameter in parameters:
            name = parameter["Name"]
            if name.rsplit("/", 1)[-1] in in_tasks or parameter["LastModifiedDate"] > cutoff:
                continue
            with contextlib.suppress(self.ssm.exceptions.ParameterNotFound):
                self.ssm.delete_parameter(Name=name)
            removed.append(f"parameter {name}: its task is gone")
        return removed


def _is_ours(runner_name: str, pools: Collection[str]) -> bool:
    """`<pool>-<task id>` (see `reconciler.runners.runner_name`), or `<pool>-<8 hex>` (what
    earlier versions named runners), for one of `pools`."""
    suffix = _TASK_ID.search(runner_name)
    for pool in pools:
        if suffix and runner_name == task_runner_name(pool, f"arn:task/{suffix.group(1)}"):
            return True
        if runner_name.startswith(pool[:54]) and _RUNNER_SUFFIX.fullmatch(
            runner_name[len(pool[:54]) :]
        ):
            return True
    return False
