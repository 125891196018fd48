"""The sandbox's runner states: simulated runners write their state as a task tag.

Used by `make demo` and the tests that need runner states without GitHub (with a simulated
GitHub, `sandbox.world.GitHubWorld` runs the runners instead). The simulated runner
of a task is `idle` or `busy` as the task's `sandbox:runner` tag says; a task without the
tag has not registered yet (unknown). Tests flip the tag over moto's HTTP API
(`TagResource`) to make a runner busy, exactly as a job starting would.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..aws.clients import AwsClients
from ..aws.observe import tag_dict
from ..plan.state import STARTED_BY, ObservedTask, RunnerState

RUNNER_TAG = "sandbox:runner"


class TaskTagRunnerStates:
    """Runner states read from the `sandbox:runner` tag of each task."""

    def __init__(self, clients: AwsClients) -> None:
        self.clients = clients

    def states(self, tasks: Sequence[ObservedTask]) -> dict[str, RunnerState]:
        """State by task ARN, from the tags already observed (no extra calls)."""
        return {task.arn: _state(task.tags) for task in tasks}

    def confirm_stoppable(self, task: ObservedTask) -> bool:
        """Describe the task again: is its runner still idle right now?"""
        response = self.clients.ecs.describe_tasks(
            cluster=task.cluster, tasks=[task.arn], include=["TAGS"]
        )
        described = response.get("tasks", [])
        if not described or described[0].get("desiredStatus") != "RUNNING":
            return False
        return _state(tag_dict(described[0].get("tags"))) is RunnerState.IDLE

    def registered(self, task: ObservedTask, name: str) -> int | None:
        """Simulated runners have no registration."""
        return None


def _state(tags: dict[str, str]) -> RunnerState:
    value = tags.get(RUNNER_TAG, "")
    return RunnerState(value) if value in ("idle", "busy") else RunnerState.UNKNOWN


def running_runner_tasks(ecs: Any, cluster: str) -> list[dict[str, Any]]:
    """Our runner tasks still meant to run in `cluster`, described with their tags."""
    return describe_runner_tasks(ecs, cluster, runner_task_arns(ecs, cluster))


def runner_task_arns(ecs: Any, cluster: str) -> list[str]:
    """The ARNs of our runner tasks still meant to run in `cluster` (ListTasks only: cheap,
    where describing hundreds of tasks every tick would load moto more than the controller)."""
    pages = ecs.get_paginator("list_tasks").paginate(
        cluster=cluster, startedBy=STARTED_BY, desiredStatus="RUNNING"
    )
    return [arn for page in pages for arn in page["taskArns"]]


def describe_runner_tasks(ecs: Any, cluster: str, arns: Sequence[str]) -> list[dict[str, Any]]:
    """Those of `arns` still meant to run, described with their tags (100 a call)."""
    tasks: list[dict[str, Any]] = []
    for start in range(0, len(arns), 100):
        response = ecs.describe_tasks(
            cluster=cluster, tasks=list(arns[start : start + 100]), include=["TAGS"]
        )
        tasks += [t for t in response["tasks"] if t.get("desiredStatus") == "RUNNING"]
    return tasks


class SimulatedRunners:
    """The runners inside sandbox tasks: they register (idle), take jobs (busy), and exit."""

    def __init__(self, clients: AwsClients) -> None:
        self.clients = clients

    def register_new(self, cluster: str) -> int:
        """Every running task of ours whose runner has not registered yet becomes idle."""
        registered = 0
        for task in running_runner_tasks(self.clients.ecs, cluster):
            if RUNNER_TAG not in tag_dict(task.get("tags")):
                self.set_state(task["taskArn"], RunnerState.IDLE)
                registered += 1
        return registered

    def set_state(self, task_arn: str, state: RunnerState) -> None:
        """A runner takes a job (busy) or is idle."""
        self.clients.ecs.tag_resource(
            resourceArn=task_arn, tags=[{"key": RUNNER_TAG, "value": state.value}]
        )

    def finish_job(self, cluster: str, task_arn: str) -> None:
        """The job ends: an ephemeral runner exits, so its task stops."""
        self.clients.ecs.stop_task(cluster=cluster, task=task_arn, reason="runner exited")
