"""JIT runners end to end: moto (ECS, SSM) and the local GitHub, through the real executor."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.aws.executor import ApplyResult, Executor
from reconciler.aws.observe import Observer
from reconciler.clock import utc_now
from reconciler.github import GitHubClient, TokenAuth
from reconciler.github.jit import PARAMETER_PREFIX_ENVIRONMENT, JitProvisioner
from reconciler.github.registry import GitHubRunnerStates
from reconciler.plan.guard import GuardPolicy, refused_actions
from reconciler.plan.state import RUNNER_ID_TAG, RUNNER_NAME_TAG
from reconciler.reconcile import plan_cycle
from reconciler.sandbox.github_server import FakeGitHub
from reconciler.sandbox.scenario import JIT_KEY_ALIAS, Sandbox

pytestmark = pytest.mark.e2e  # starts servers or processes

TOKEN = "test-token"
CLUSTER = "ci-runners"


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub(tokens=[TOKEN]) as server:
        yield server


def apply_with_jit_runners(sandbox: Sandbox, specs: Path, github: FakeGitHub) -> ApplyResult:
    """One plan + apply of `specs` with GitHub runner states and JIT registrations."""
    clients = sandbox.clients()
    with GitHubClient(github.url, TokenAuth(TOKEN)) as client:
        states = GitHubRunnerStates(client)
        cycle = plan_cycle([specs], Observer(clients), states, utc_now())
        # the key the sandbox's CloudFormation stack created, as the controller service uses it
        provisioner = JitProvisioner(client, clients.client("ssm"), kms_key=JIT_KEY_ALIAS)
        executor = Executor(clients, cycle.observed, states, provisioner=provisioner)
        return executor.apply(cycle.plan, refused_actions(cycle.plan, GuardPolicy()))


def test_each_task_gets_its_own_registration_and_never_sees_the_secret_in_ecs(
    sandbox: Sandbox, specs: Path, github: FakeGitHub
) -> None:
    clients = sandbox.clients()
    ssm = clients.client("ssm")
    github.add_runner_group("/enterprises/acme", "large-runners")
    result = apply_with_jit_runners(sandbox, specs, github)
    assert result.ok, result.failed

    arns = clients.ecs.list_tasks(cluster=CLUSTER)["taskArns"]
    described = clients.ecs.describe_tasks(cluster=CLUSTER, tasks=arns, include=["TAGS"])
    names = {
        tag["value"]
        for task in described["tasks"]
        for tag in task["tags"]
        if tag["key"] == RUNNER_NAME_TAG
    }
    assert len(names) == len(arns) == 4  # one distinct runner per task

    registered = {
        runner["name"]: runner
        for path in ("/enterprises/acme", "/orgs/platform", "/repos/acme/mobile-app")
        for runner in github.runners(path)
    }
    assert set(registered) == names
    for task in described["tasks"]:  # each task names its registration by id: stops delete it
        tags = {tag["key"]: tag["value"] for tag in task["tags"]}
        assert tags[RUNNER_ID_TAG] == str(registered[tags[RUNNER_NAME_TAG]]["id"])
    parameters = ssm.get_parameters_by_path(
        Path="/ecs-reconciler/jit", Recursive=True, WithDecryption=True
    )["Parameters"]
    # each parameter is named after its task, which finds it by its own task id
    assert {p["Name"].rsplit("/", 1)[-1] for p in parameters} == {
        a.rsplit("/", 1)[-1] for a in arns
    }
    assert all(p["Type"] == "SecureString" for p in parameters)
    described_parameters = ssm.describe_parameters(
        ParameterFilters=[{"Key": "Path", "Option": "Recursive", "Values": ["/ecs-reconciler/jit"]}]
    )["Parameters"]
    assert {p["KeyId"] for p in described_parameters} == {JIT_KEY_ALIAS}

    visible = json.dumps(described, default=str)
    for parameter in parameters:
        assert parameter["Value"] not in visible, "a JIT config leaked into DescribeTasks"
        # only the prefix its task id completes is handed to the task
        assert parameter["Name"].rsplit("/", 1)[0] in visible
    assert PARAMETER_PREFIX_ENVIRONMENT in visible


def test_an_unknown_runner_group_fails_that_pool_only_and_leaves_nothing_behind(
    sandbox: Sandbox, specs: Path, github: FakeGitHub
) -> None:
    result = apply_with_jit_runners(sandbox, specs, github)
    [(failed, message)] = result.failed
    assert failed.pool == "enterprise-linux-large"
    assert "no runner group 'large-runners'" in message
    assert github.runners("/enterprises/acme") == []
    assert len(github.runners("/orgs/platform")) == 2  # the other pools started
