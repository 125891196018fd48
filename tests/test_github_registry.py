"""GitHub as the runner-state source, over real sockets against `FakeGitHub`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from reconciler.github import GitHubClient, Scope, TokenAuth
from reconciler.github.registry import GitHubRunnerStates, scope_of_tag
from reconciler.plan.state import RUNNER_NAME_TAG, SCOPE_TAG, ObservedTask, RunnerState
from reconciler.sandbox.github_server import FakeGitHub

pytestmark = pytest.mark.e2e  # starts servers or processes

TOKEN = "test-token"
ORG = "/orgs/acme"
NOW = 1_700_000_000.0
OLD = NOW - 3600  # started an hour ago: past the grace period


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub(tokens=[TOKEN]) as server:
        yield server


@pytest.fixture
def client(github: FakeGitHub) -> Iterator[GitHubClient]:
    with GitHubClient(github.url, TokenAuth(TOKEN)) as c:
        yield c


def task(
    name: str, started_at: float | None = OLD, scope: str = "organization:acme"
) -> ObservedTask:
    tags = {SCOPE_TAG: scope, RUNNER_NAME_TAG: name} if name else {SCOPE_TAG: scope}
    return ObservedTask(
        f"arn:aws:ecs:us-east-1:123456789012:task/ci/{name or 'nameless'}-{scope}",
        "ci",
        "pool-a",
        "arn:aws:ecs:us-east-1:123456789012:task-definition/ecs-reconciler-pool-a:1",
        "hash",
        "RUNNING",
        started_at,
        tags,
    )


def test_states_follow_github(github: FakeGitHub, client: GitHubClient) -> None:
    github.add_runner(ORG, "idle-one")
    github.add_runner(ORG, "busy-one", busy=True)
    github.add_runner(ORG, "offline-one", status="offline")
    github.add_runner(ORG, "young-one")
    tasks = [
        task("idle-one"),
        task("busy-one"),
        task("offline-one"),
        task("young-one", started_at=NOW - 5),
        task("never-registered"),
        task(""),
        task("idle-one", scope="bogus"),
    ]
    source = GitHubRunnerStates(client, grace=120, clock=lambda: NOW, boot_timeout=7200)
    assert list(source.states(tasks).values()) == [
        RunnerState.IDLE,
        RunnerState.BUSY,
        RunnerState.UNKNOWN,  # offline
        RunnerState.UNKNOWN,  # inside the grace period
        RunnerState.UNKNOWN,  # no runner of that name (yet)
        RunnerState.UNKNOWN,  # no runner-name tag
        RunnerState.UNKNOWN,  # unreadable scope tag
    ]


def test_a_runner_not_online_after_the_boot_timeout_is_failed_and_stoppable(
    github: FakeGitHub, client: GitHubClient
) -> None:
    github.add_runner(ORG, "never-came-up", status="offline")
    github.add_runner(ORG, "offline-mid-job", status="offline", busy=True)
    github.add_runner(ORG, "booting", status="offline")
    tasks = [
        task("never-came-up"),
        task("gone"),  # registration removed (an ephemeral runner after its job)
        task("offline-mid-job"),  # busy flag set: maybe a network blip, never failed
        task("booting", started_at=NOW - 60),
        task("", started_at=OLD),  # not tagged by us: never failed
    ]
    source = GitHubRunnerStates(client, grace=120, clock=lambda: NOW, boot_timeout=600)
    assert list(source.states(tasks).values()) == [
        RunnerState.FAILED,
        RunnerState.FAILED,
        RunnerState.UNKNOWN,
        RunnerState.UNKNOWN,
        RunnerState.UNKNOWN,
    ]
    failed, gone, mid_job, booting, _ = tasks
    assert source.confirm_stoppable(failed) is True  # deregistered first
    assert source.confirm_stoppable(gone) is True  # nothing registered to lose
    assert source.confirm_stoppable(mid_job) is False
    assert source.confirm_stoppable(booting) is False
    assert sorted(r["name"] for r in github.runners(ORG)) == ["booting", "offline-mid-job"]


def test_one_listing_per_scope_whatever_the_number_of_tasks(
    github: FakeGitHub, client: GitHubClient
) -> None:
    for n in range(150):
        github.add_runner(ORG, f"runner-{n}")
    github.add_runner("/repos/acme/app", "repo-runner")
    tasks = [task(f"runner-{n}") for n in range(150)]
    tasks.append(task("repo-runner", scope="repository:acme/app"))
    source = GitHubRunnerStates(client, clock=lambda: NOW)
    assert set(source.states(tasks).values()) == {RunnerState.IDLE}
    assert client.calls == {
        "GET /orgs/{org}/actions/runners": 2,  # 150 runners, 100 a page
        "GET /repos/{owner}/{repo}/actions/runners": 1,
    }
    source.states(tasks)  # nothing changed: conditional requests answered 304
    assert client.not_modified.total() == 3


def test_confirm_stoppable_deregisters_and_a_busy_refusal_keeps_the_runner(
    github: FakeGitHub, client: GitHubClient
) -> None:
    github.add_runner(ORG, "idle-one")
    github.add_runner(ORG, "took-a-job")
    source = GitHubRunnerStates(client, clock=lambda: NOW)
    idle, racing = task("idle-one"), task("took-a-job")
    assert source.states([idle, racing]) == {
        idle.arn: RunnerState.IDLE,
        racing.arn: RunnerState.IDLE,
    }
    github.set_runner_status(ORG, "took-a-job", "online", busy=True)  # a job arrived since
    assert source.confirm_stoppable(idle) is True
    assert source.confirm_stoppable(racing) is False
    assert [r["name"] for r in github.runners(ORG)] == ["took-a-job"]


def test_confirm_stoppable_never_reaps_a_young_runner(
    github: FakeGitHub, client: GitHubClient
) -> None:
    github.add_runner(ORG, "fresh")
    source = GitHubRunnerStates(client, grace=120, clock=lambda: NOW)
    fresh = task("fresh", started_at=NOW - 10)
    source.states([fresh])
    assert source.confirm_stoppable(fresh) is False
    assert [r["name"] for r in github.runners(ORG)] == ["fresh"]


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("organization:acme", Scope("organization", "acme")),
        ("repository:acme/app", Scope("repository", "acme/app")),
        ("enterprise:big", Scope("enterprise", "big")),
        ("repository:no-slash", None),
        ("team:acme", None),
        ("", None),
    ],
)
def test_scope_tag(tag: str, expected: Scope | None) -> None:
    assert scope_of_tag(tag) == expected


def test_versions_are_what_each_pool_s_runners_report(
    github: FakeGitHub, client: GitHubClient
) -> None:
    github.add_runner(ORG, "old", version="2.327.1")
    github.add_runner(ORG, "current", version="2.328.0")
    github.add_runner(ORG, "booting", status="offline")  # never connected: no version
    tasks = [task("old"), task("current"), task("booting"), task("gone")]
    source = GitHubRunnerStates(client, clock=lambda: NOW)
    source.states(tasks)
    assert source.versions(tasks) == {"pool-a": {"2.327.1", "2.328.0"}}
