"""GitHub decides every stop: before a runner task is stopped its runner is deleted by id on
the local GitHub-compatible server, and only a 204 or a 404 lets the stop go on."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from reconciler.github import GitHubClient, TokenAuth
from reconciler.github.client import Scope
from reconciler.github.registry import GitHubRunnerStates
from reconciler.plan.state import (
    RUNNER_ID_TAG,
    RUNNER_NAME_TAG,
    SCOPE_TAG,
    ObservedTask,
    RunnerState,
)
from reconciler.sandbox.github_server import FakeGitHub

pytestmark = pytest.mark.e2e  # starts servers or processes

TOKEN = "test-token"
ORG = "/orgs/acme"
STARTED = 1_000.0
LATER = STARTED + 3_600.0  # long past the boot timeout


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub(tokens=[TOKEN]) as server:
        yield server


@pytest.fixture
def client(github: FakeGitHub) -> Iterator[GitHubClient]:
    with GitHubClient(github.url, TokenAuth(TOKEN), max_retries=1, sleep=lambda _: None) as c:
        yield c


def runner_task(name: str, runner_id: int | None = None) -> ObservedTask:
    tags = {SCOPE_TAG: "organization:acme", RUNNER_NAME_TAG: name}
    if runner_id is not None:
        tags[RUNNER_ID_TAG] = str(runner_id)
    return ObservedTask(f"arn:task/{name}", "ci", "pool", "td", "h", "RUNNING", STARTED, tags)


def states_of(client: GitHubClient) -> GitHubRunnerStates:
    return GitHubRunnerStates(client, grace=0.0, boot_timeout=600.0, clock=lambda: LATER)


def deletes(github: FakeGitHub) -> list[str]:
    return [path for method, path in github.request_log if method == "DELETE"]


def test_a_runner_missing_from_the_cycle_listing_that_took_a_job_since_is_kept(
    github: FakeGitHub, client: GitHubClient
) -> None:
    # a self-registering runner (no id tag), not registered when the cycle listed runners
    task = runner_task("pool-slow0001")
    states = states_of(client)
    assert states.states([task]) == {task.arn: RunnerState.FAILED}  # boot timeout passed
    runner_id = github.add_runner(ORG, "pool-slow0001", status="online", busy=True)
    assert not states.confirm_stoppable(task), "it runs a job now: GitHub refused (422)"
    assert deletes(github) == [f"{ORG}/actions/runners/{runner_id}"]
    assert [r["name"] for r in github.runners(ORG)] == ["pool-slow0001"]


def test_a_runner_registered_since_the_listing_and_idle_is_removed_first(
    github: FakeGitHub, client: GitHubClient
) -> None:
    task = runner_task("pool-slow0002")
    states = states_of(client)
    assert states.states([task]) == {task.arn: RunnerState.FAILED}
    github.add_runner(ORG, "pool-slow0002", status="online", busy=False)
    assert states.confirm_stoppable(task)
    assert github.runners(ORG) == [], "deregistered before its task stops"


def test_the_tagged_runner_id_decides_whatever_the_listing_said(
    github: FakeGitHub, client: GitHubClient
) -> None:
    jit = client.create_jit_config(Scope("organization", "acme"), "pool-jit00001", 1, ["x"])
    github.set_runner_status(ORG, "pool-jit00001", "online", busy=False)
    task = runner_task("pool-jit00001", jit.runner_id)
    states = states_of(client)
    assert states.states([task]) == {task.arn: RunnerState.IDLE}
    github.set_runner_status(ORG, "pool-jit00001", "online", busy=True)  # took a job since
    assert not states.confirm_stoppable(task)
    github.set_runner_status(ORG, "pool-jit00001", "online", busy=False)
    assert states.confirm_stoppable(task)
    assert deletes(github) == [f"{ORG}/actions/runners/{jit.runner_id}"] * 2
    assert github.runners(ORG) == []


def test_a_runner_already_gone_404_lets_its_task_stop(
    github: FakeGitHub, client: GitHubClient
) -> None:
    task = runner_task("pool-gone0001", runner_id=4242)
    states = states_of(client)
    assert states.states([task]) == {task.arn: RunnerState.FAILED}
    assert states.confirm_stoppable(task)
    assert deletes(github) == [f"{ORG}/actions/runners/4242"]


def test_no_answer_from_github_keeps_the_task(github: FakeGitHub, client: GitHubClient) -> None:
    jit = client.create_jit_config(Scope("organization", "acme"), "pool-jit00002", 1, ["x"])
    task = runner_task("pool-jit00002", jit.runner_id)
    states = states_of(client)
    assert states.states([task]) == {task.arn: RunnerState.FAILED}
    github.fail_next(2, status=502)  # the attempt and its one retry
    assert not states.confirm_stoppable(task), "no approval, no stop (and no exception)"
    assert [r["name"] for r in github.runners(ORG)] == ["pool-jit00002"]


def test_busy_and_unknown_runners_are_never_even_asked_about(
    github: FakeGitHub, client: GitHubClient
) -> None:
    github.add_runner(ORG, "pool-busy0001", status="online", busy=True)
    busy = runner_task("pool-busy0001")
    young = ObservedTask("arn:task/young", "ci", "pool", "td", "h", "RUNNING", LATER, {})
    states = states_of(client)
    assert states.states([busy, young]) == {
        busy.arn: RunnerState.BUSY,
        young.arn: RunnerState.UNKNOWN,
    }
    assert not states.confirm_stoppable(busy) and not states.confirm_stoppable(young)
    assert deletes(github) == []
