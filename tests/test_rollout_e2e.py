"""Safe rollouts end to end: moto + the simulated GitHub world + the real controller.

A bump to an image that crashes after start halts after maxFailures with the previous
revision serving at full count and the pool Degraded (RolloutHalted); a restarted controller
keeps the halt; a follow-up fix rolls out canary first and clears the condition.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from reconciler.controller.loop import Controller, ControllerSettings
from reconciler.github import GitHubClient, TokenAuth
from reconciler.github.jit import JitProvisioner
from reconciler.github.registry import GitHubRunnerStates
from reconciler.plan.guard import GuardPolicy
from reconciler.reconcile import Cycle
from reconciler.sandbox.scenario import SANDBOX_GITHUB_TOKEN, Sandbox
from reconciler.sandbox.server import MotoServer
from reconciler.sandbox.world import GitHubWorld

from .conftest import edit, platform_pool_alone

pytestmark = pytest.mark.e2e  # starts servers or processes

POOL = "platform-linux-dind"
GOOD = "actions-runner:2.328.0@sha256:3f1a"
CRASHING = "actions-runner:2.329.0@sha256:4f1a"
FIXED = "actions-runner:2.329.1@sha256:5f1a"


@pytest.fixture
def specs(tmp_path: Path) -> Path:
    """The platform pool alone: 3 idle runners, small tasks, canary 1, maxFailures 2."""
    return platform_pool_alone(
        tmp_path,
        ("    idle: 2\n", "    idle: 3\n"),
        ("    maxSurge: 25%\n", "    maxSurge: 1\n    canary: 1\n    maxFailures: 2\n"),
    )


@pytest.fixture
def sandbox(specs: Path, moto_server: MotoServer) -> Iterator[Sandbox]:
    with Sandbox([specs], server=moto_server, github=True) as running:
        yield running


def image_of(sandbox: Sandbox, task_definition_arn: str) -> str:
    definition = sandbox.clients().ecs.describe_task_definition(taskDefinition=task_definition_arn)
    containers = definition["taskDefinition"]["containerDefinitions"]
    return next(c["image"] for c in containers if c["name"] == "runner")


def test_a_crashing_image_halts_survives_a_restart_and_a_fix_rolls_out(
    sandbox: Sandbox, specs: Path
) -> None:
    assert sandbox.github is not None
    clients = sandbox.clients()
    world = GitHubWorld(sandbox.github, sandbox.clients(), ["ci-runners"], None, b"-")
    github = GitHubClient(sandbox.github.url, TokenAuth(SANDBOX_GITHUB_TOKEN))

    def controller() -> Controller:
        return Controller(
            ControllerSettings(spec_paths=[specs], guard=GuardPolicy(max_stop_share=1.0)),
            clients,
            GitHubRunnerStates(github, grace=1.0, boot_timeout=300),
            provisioner=JitProvisioner(github, clients.client("ssm")),
        )

    def step(running: Controller) -> Cycle:
        cycle, result = running.reconcile("test")
        assert result is None or result.ok, result.failed
        sandbox.tick()  # the agent starts new tasks...
        sandbox.tick()  # ...and crashes those of a crashing image
        world.tick()  # the others' runners read their JIT config and come online
        return cycle

    def images(cycle: Cycle) -> Counter[str]:
        return Counter(
            image_of(sandbox, t.task_definition_arn) for t in cycle.observed.tasks if t.pool == POOL
        )

    def settle(running: Controller, done: Callable[[Cycle], bool]) -> Cycle:
        deadline = time.monotonic() + 90  # a loaded machine makes cycles slow, not wrong
        while True:
            cycle = step(running)
            if done(cycle):
                return cycle
            if time.monotonic() > deadline:
                break
            time.sleep(0.25)  # runners count as idle after a grace: cycling faster only burns CPU
        pytest.fail(
            f"did not settle: {cycle.plan.notes}, {[a.address for a in cycle.plan.actions]}"
        )

    first = controller()
    converged = settle(first, lambda c: not c.plan.has_changes and c.plan.pools[0].idle == 3)
    [good_image] = images(converged)

    pool_file = specs / "org-platform-dind.yaml"
    edit(pool_file, GOOD, CRASHING)
    sandbox.agent.crash_image(good_image.replace(GOOD, CRASHING))
    halted = settle(first, lambda c: bool(c.plan.pools[0].rollout_halted))
    assert "HALTED" in halted.plan.pools[0].rollout_halted
    assert "maxFailures 2" in halted.plan.pools[0].rollout_halted
    steady = settle(first, lambda c: not c.plan.has_changes)
    assert all(GOOD in image for image in images(steady)), "previous revision at full count"
    assert sum(images(steady).values()) == 3
    degraded = first.status.to_json()["pools"][POOL]["conditions"]
    assert {c["type"]: c["reason"] for c in degraded}["Degraded"] == "RolloutHalted"

    restarted = controller()  # new observer and runner states: only AWS and GitHub remain
    again = step(restarted)
    assert again.plan.pools[0].rollout_halted, "the restart forgot the halt"
    assert not again.plan.has_changes, "the restart started the failing revision again"

    edit(pool_file, CRASHING, FIXED)
    # a fresh rollout of a new revision, canary first (once the restarted controller has
    # seen the old runners long enough to call them idle: moto reports no task start times)
    canary = settle(restarted, lambda c: any(a.action == "replace" for a in c.plan.actions))
    [replace] = [a for a in canary.plan.actions if a.action == "replace"]
    assert replace.count == 1 and "canary" in replace.reason
    rolled = settle(
        restarted,
        lambda c: (
            not c.plan.has_changes
            and sum(images(c).values()) == 3
            and all(FIXED in i for i in images(c))
        ),
    )
    assert not rolled.plan.pools[0].rollout_halted
    conditions = {c["type"]: c for c in restarted.status.to_json()["pools"][POOL]["conditions"]}
    assert conditions["Degraded"]["status"] is False and conditions["Ready"]["status"] is True
    assert world.interrupted == []
    github.close()
