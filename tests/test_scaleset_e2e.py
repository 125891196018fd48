"""Scale-set demand end to end: moto (ECS, SSM) + the simulated GitHub and Actions service.

A pool with ``demand.source: scaleSet`` and no webhook at all: the controller's listener
creates the pool's scale set, long-polls its queue, acquires the jobs GitHub gives it, and
the planner starts runners from the statistics; each runner gets its JIT config from the
scale set's ``generatejitconfig`` and the Actions service assigns it a job.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.controller.loop import Controller, ControllerSettings
from reconciler.demand.scaleset import ScaleSetDemand, ScaleSetListeners
from reconciler.github import GitHubClient, TokenAuth
from reconciler.github.jit import JitProvisioner
from reconciler.github.registry import GitHubRunnerStates
from reconciler.github.scaleset.pools import ScaleSetPools
from reconciler.plan.guard import GuardPolicy
from reconciler.sandbox.scenario import SANDBOX_GITHUB_TOKEN, Sandbox
from reconciler.sandbox.server import MotoServer
from reconciler.sandbox.world import GitHubWorld

from .conftest import platform_pool_alone, wait_for

pytestmark = pytest.mark.e2e  # starts servers or processes

POOL = "platform-linux-dind"
LABELS = ("self-hosted", "linux", "x64", "dind")
IDLE = 2


@pytest.fixture
def specs(tmp_path: Path) -> Path:
    """The platform pool alone, small tasks, its demand from a scale set."""
    return platform_pool_alone(
        tmp_path,
        ("    maxPerRepository: 10\n", ""),
        ("  deletionPolicy: Drain", "  deletionPolicy: Drain\n  demand:\n    source: scaleSet"),
    )


@pytest.fixture
def sandbox(specs: Path, moto_server: MotoServer) -> Iterator[Sandbox]:
    with Sandbox([specs], server=moto_server, github=True) as running:
        assert running.github is not None
        running.github.actions.poll_timeout = 0.5  # stops come quickly; GitHub holds ~50 s
        yield running


def test_twelve_jobs_on_a_scale_set_pool_without_webhooks_are_all_served(
    sandbox: Sandbox, specs: Path
) -> None:
    assert sandbox.github is not None
    actions = sandbox.github.actions
    clients = sandbox.clients()
    with GitHubClient(sandbox.github.url, TokenAuth(SANDBOX_GITHUB_TOKEN)) as github:
        pools = ScaleSetPools(github)
        demand = ScaleSetDemand()
        states = GitHubRunnerStates(github, grace=1.0, boot_timeout=120)
        controller: Controller | None = None

        def on_message(pool: str, message: object) -> None:
            if controller is not None:
                controller.triggers.fire(f"scale set {pool}")

        listeners = ScaleSetListeners(
            pools, demand, "replica-1", lambda: True, on_message=on_message, conflict_retry=0.2
        )
        controller = Controller(
            ControllerSettings(spec_paths=[specs], guard=GuardPolicy(max_stop_share=1.0)),
            clients,
            states,
            provisioner=JitProvisioner(github, clients.client("ssm"), scale_sets=pools),
            github=github,
            scale_set_listeners=listeners,
        )
        try:
            controller.reconcile("start")  # starts the listener, which creates the scale set
            wait_for(lambda: demand.latest(POOL) is not None)
            (scale_set,) = actions.scale_sets("/orgs/platform")
            assert scale_set["name"] == POOL
            assert [label["name"] for label in scale_set["labels"]] == list(LABELS)
            world = GitHubWorld(sandbox.github, clients, ["ci-runners"], None, b"")
            assert world.hook is None  # no webhook endpoint anywhere
            jobs = world.queue_jobs("platform/api", LABELS, 8, duration=1.5)
            jobs += world.queue_jobs("platform/web", LABELS, 4, duration=1.5)
            assert all(job.request_id is not None for job in jobs)  # given to the scale set

            summary = None
            for _ in range(200):
                cycle, result = controller.reconcile("test")
                assert result is None or result.ok, result.failed
                world.tick()
                summary = next(p for p in cycle.plan.pools if p.name == POOL)
                done = all(job.completed_at for job in jobs)
                if done and summary.running == summary.idle == IDLE and not cycle.plan.has_changes:
                    break
                time.sleep(0.2)
            else:
                pytest.fail(f"did not settle: {summary}, {len(world.queued)} job(s) queued")

            assert not world.interrupted
            assert {job.runner for job in jobs} <= {j["runner_name"] for j in actions.jobs()}
            assert len({job.runner for job in jobs}) == 12  # one ephemeral runner per job
            listener = listeners.listeners[POOL][0]
            assert listener.stats.acquired == 12
            assert actions.unacknowledged(scale_set["id"]) == []  # every message acknowledged
            assert actions.max_capacity(scale_set["id"]) == 40  # the pool's max
            assert github.calls["POST /orgs/{org}/actions/runners/generate-jitconfig"] == 0
            assert actions.conflicts == 0
        finally:
            controller.stop()
        wait_for(lambda: actions.active_sessions(scale_set["id"]) == 0, timeout=10)
