"""Garbage collection: orphaned runner registrations (local GitHub) and JIT parameters (moto)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from reconciler.github import GitHubClient, TokenAuth
from reconciler.github.janitor import RunnerJanitor
from reconciler.github.registry import GitHubRunnerStates
from reconciler.plan.state import RUNNER_NAME_TAG, SCOPE_TAG, ObservedTask
from reconciler.sandbox.github_server import FakeGitHub
from reconciler.sandbox.scenario import Sandbox

pytestmark = pytest.mark.e2e  # starts servers or processes

TOKEN = "test-token"
ORG = "/orgs/platform"
POOL = "platform-linux-dind"


class Clock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def task(runner: str) -> ObservedTask:
    return ObservedTask(
        f"arn:aws:ecs:us-east-1:123456789012:task/ci/{runner}",
        "ci",
        POOL,
        f"arn:aws:ecs:us-east-1:123456789012:task-definition/ecs-reconciler-{POOL}:1",
        "hash",
        "RUNNING",
        time.time() - 30,
        {SCOPE_TAG: "organization:platform", RUNNER_NAME_TAG: runner},
    )


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub(tokens=[TOKEN]) as server:
        yield server


def test_orphans_are_removed_after_the_grace_period_and_nothing_else_is(
    sandbox: Sandbox, github: FakeGitHub
) -> None:
    orphan, booting, online = f"{POOL}-0123abcd", f"{POOL}-deadbeef", f"{POOL}-0badf00d"
    github.add_runner(ORG, orphan, status="offline")  # its task died before it came online
    github.add_runner(ORG, booting, status="offline")  # its task is still starting
    github.add_runner(ORG, online)  # online without a task: maybe not ours to judge
    github.add_runner(ORG, "build-box-7", status="offline")  # a runner someone else runs
    github.add_runner(ORG, f"{POOL}-cafe0123", status="offline", busy=True)
    ssm = sandbox.clients().client("ssm")
    for name in (orphan, booting):
        ssm.put_parameter(
            Name=f"/ecs-reconciler/jit/{POOL}/{name}", Value="jit", Type="SecureString"
        )
    tasks = [task(booting)]
    clock = Clock()
    with GitHubClient(github.url, TokenAuth(TOKEN)) as client:
        states = GitHubRunnerStates(client, clock=clock)
        janitor = RunnerJanitor(states, ssm, grace=120, sweep_interval=0, clock=clock)
        states.states(tasks)
        assert janitor.collect(tasks, [POOL]) == []  # inside the grace period
        clock.offset = 121
        states.states(tasks)
        removed = janitor.collect(tasks, [POOL])

    assert sorted(removed) == [
        f"parameter /ecs-reconciler/jit/{POOL}/{orphan}: its task is gone",
        f"runner {orphan} (organization platform): offline, no task",
    ]
    assert sorted(r["name"] for r in github.runners(ORG)) == sorted(
        [booting, online, "build-box-7", f"{POOL}-cafe0123"]
    )
    left = ssm.get_parameters_by_path(Path="/ecs-reconciler/jit", Recursive=True)["Parameters"]
    assert [p["Name"] for p in left] == [f"/ecs-reconciler/jit/{POOL}/{booting}"]


def test_parameters_are_swept_at_most_once_per_interval(
    sandbox: Sandbox, github: FakeGitHub
) -> None:
    clients = sandbox.clients()
    ssm = clients.client("ssm")
    clock = Clock()
    with GitHubClient(github.url, TokenAuth(TOKEN)) as client:
        janitor = RunnerJanitor(
            GitHubRunnerStates(client, clock=clock), ssm, sweep_interval=300, clock=clock
        )
        for _ in range(5):
            janitor.collect([], [POOL])
    assert clients.calls.get("ssm:GetParametersByPath") == 1
