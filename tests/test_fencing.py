"""Fencing against real moto (DynamoDB lease, ECS, SSM) and the local GitHub: a leader
paused past its lease while a standby took over sends no mutating call when it resumes.

The pause is played with the replicas' own monotonic clocks (each its own, as two hosts):
the provisioner in front of the real JIT provisioner "pauses" the leader at its first
runner start, the standby takes the lease in DynamoDB meanwhile, and the leader resumes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from reconciler.aws.executor import Executor
from reconciler.aws.observe import Observer
from reconciler.clock import utc_now
from reconciler.controller.lease import LeaderElector, LeaseConfig
from reconciler.fencing import LeaseLost, fenced
from reconciler.github import GitHubClient, TokenAuth
from reconciler.github.client import Scope
from reconciler.github.jit import JitProvisioner
from reconciler.github.registry import GitHubRunnerStates
from reconciler.plan.guard import GuardPolicy, refused_actions
from reconciler.plan.state import LEASE_EPOCH_TAG, RUNNER_NAME_TAG
from reconciler.reconcile import plan_cycle
from reconciler.runners import Provision
from reconciler.sandbox.github_server import FakeGitHub
from reconciler.sandbox.runners import TaskTagRunnerStates
from reconciler.sandbox.scenario import Sandbox

from .conftest import edit, run_cli

pytestmark = pytest.mark.e2e  # starts servers or processes

TOKEN = "test-token"
CLUSTER = "ci-runners"
TIMING = LeaseConfig(name="fencing", lease_duration=15.0, renew_deadline=10.0, retry_period=2.0)


class Clock:
    """One replica's monotonic clock."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


class PausedAtFirstStart:
    """The real JIT provisioner, with the leader's process paused before its first runner:
    before its first RunTask (`at="start"`), or in a bind worker, after ECS placed the first
    batch and before its first registration (`at="bind"`)."""

    def __init__(self, provisioner: JitProvisioner, pause: Any, at: str = "start") -> None:
        self.provisioner = provisioner
        self.pause = pause
        self.at = at
        self.paused = False
        self._lock = threading.Lock()

    def _maybe_pause(self, where: str) -> None:
        with self._lock:
            if where == self.at and not self.paused:
                self.paused = True
                self.pause()

    def environment(self, pool: str, launch: Mapping[str, Any]) -> dict[str, str]:
        self._maybe_pause("start")
        return self.provisioner.environment(pool, launch)

    def bind(self, pool: str, launch: Mapping[str, Any], task_arn: str) -> Provision:
        self._maybe_pause("bind")
        return self.provisioner.bind(pool, launch, task_arn)

    def abandon(self, provision: Provision) -> None:
        self.provisioner.abandon(provision)


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub(tokens=[TOKEN]) as server:
        server.add_runner_group("/enterprises/acme", "large-runners")
        yield server


def running_tasks(sandbox: Sandbox) -> list[dict[str, Any]]:
    ecs = sandbox.clients(read_only=True).ecs
    arns = ecs.list_tasks(cluster=CLUSTER)["taskArns"]
    if not arns:
        return []
    return ecs.describe_tasks(cluster=CLUSTER, tasks=arns, include=["TAGS"])["tasks"]


@pytest.mark.parametrize(
    ("fenced_apply", "at"),
    [(False, "start"), (True, "start"), (True, "bind")],
    ids=["unfenced", "fenced", "fenced-in-a-bind-worker"],
)
def test_a_deposed_leader_mutates_nothing_once_a_standby_took_over(
    sandbox: Sandbox, specs: Path, github: FakeGitHub, fenced_apply: bool, at: str
) -> None:
    clients = sandbox.clients()
    dynamodb = clients.client("dynamodb")
    leader_clock, standby_clock = Clock(1_000.0), Clock(7_000_000.0)  # unrelated clocks
    leader = LeaderElector(dynamodb, "leader", TIMING, leader_clock)
    standby = LeaderElector(dynamodb, "standby", TIMING, standby_clock)
    leader.ensure_table()
    assert leader.try_acquire_or_renew() and not standby.try_acquire_or_renew()
    writes_at_pause: dict[str, int] = {}

    def pause() -> None:
        """SIGSTOP for 20 s: the standby sees the record unchanged for a lease and takes over."""
        writes_at_pause.update(
            jit=sum(1 for method, _ in github.request_log if method == "POST"),
            ssm=clients.calls.get("ssm:PutParameter", 0),
        )
        leader_clock.now += 20.0
        standby_clock.now += 15.0
        assert standby.try_acquire_or_renew() and standby.epoch == leader.epoch + 1

    with GitHubClient(github.url, TokenAuth(TOKEN)) as client:
        states = GitHubRunnerStates(client)
        cycle = plan_cycle([specs], Observer(clients), states, utc_now())
        assert cycle.plan.counts()["runners_start"] == 4
        provisioner = PausedAtFirstStart(JitProvisioner(client, clients.client("ssm")), pause, at)
        executor = Executor(
            clients,
            cycle.observed,
            states,
            provisioner=provisioner,  # type: ignore[arg-type]
            fence=leader if fenced_apply else None,
        )
        # without a fence, leadership is only asked between actions (as the loop did)
        result = executor.apply(
            cycle.plan,
            refused_actions(cycle.plan, GuardPolicy()),
            should_stop=lambda: not leader.is_leader,
        )

    assert provisioner.paused
    jit_after = sum(1 for m, _ in github.request_log if m == "POST") - writes_at_pause["jit"]
    ssm_after = clients.calls.get("ssm:PutParameter", 0) - writes_at_pause["ssm"]
    started = running_tasks(sandbox)
    if not fenced_apply:  # the old behaviour: the deposed leader starts its whole action
        assert jit_after >= 1 and ssm_after >= 1 and started
        return
    if at == "bind":  # a worker's calls pass the same fence: the placed batch stays unbound
        assert (jit_after, ssm_after) == (0, 0) and started
        assert not any(tag["key"] == RUNNER_NAME_TAG for t in started for tag in t["tags"])
    else:
        assert (jit_after, ssm_after, started) == (0, 0, [])
    assert result.lease_lost and "lease not held" in result.lease_lost
    [(failed, message)] = result.failed
    assert failed.resource_type == "runner_tasks" and "lease lost" in message
    assert all("lease was lost" in why for _, why in result.skipped)
    assert len(result.skipped) >= 2  # the other pools' starts were not attempted


def test_tasks_and_capacity_changes_carry_the_lease_epoch(sandbox: Sandbox, specs: Path) -> None:
    clients = sandbox.clients()
    dynamodb = clients.client("dynamodb")
    clock = Clock(50.0)
    first = LeaderElector(dynamodb, "first", TIMING, clock)
    first.ensure_table()
    assert first.try_acquire_or_renew()
    first.release()
    leader = LeaderElector(dynamodb, "second", TIMING, clock)
    assert leader.try_acquire_or_renew() and leader.epoch == 2

    edit(specs / "org-platform-dind.yaml", "    idle: 2\n", "    idle: 12\n")  # needs instances
    states = TaskTagRunnerStates(clients)
    cycle = plan_cycle([specs], Observer(clients), states, utc_now())
    result = Executor(clients, cycle.observed, states, fence=leader).apply(cycle.plan)
    assert not result.failed
    tasks = running_tasks(sandbox)
    assert tasks
    for task in tasks:
        tags = {tag["key"]: tag["value"] for tag in task["tags"]}
        assert tags[LEASE_EPOCH_TAG] == "2"
    resized = [a for a, _ in result.done if a.resource_type == "auto_scaling_group"]
    assert resized
    groups = clients.autoscaling.describe_auto_scaling_groups(
        AutoScalingGroupNames=[a.name for a in resized]
    )["AutoScalingGroups"]
    for group in groups:
        assert {t["Key"]: t["Value"] for t in group["Tags"]}[LEASE_EPOCH_TAG] == "2"
    assert all("(epoch 2)" in message for a, message in result.done if a in resized)


def test_every_mutating_attempt_is_fenced_and_reads_are_not(
    sandbox: Sandbox, github: FakeGitHub
) -> None:
    clients = sandbox.clients()
    dynamodb = clients.client("dynamodb")
    clock = Clock(0.0)
    lease = LeaderElector(dynamodb, "solo", TIMING, clock)
    lease.ensure_table()
    assert lease.try_acquire_or_renew()
    with GitHubClient(github.url, TokenAuth(TOKEN)) as client, fenced(lease):
        clock.now += 4.0  # 6 s left: enough for one 5 s attempt
        clients.ecs.create_cluster(clusterName="fenced-ok")
        client.create_jit_config(Scope("organization", "acme"), "r-1", 1, ["self-hosted"])
        clock.now += 2.0  # 4 s left: not enough for an attempt's worst case
        with pytest.raises(LeaseLost, match=r"ecs:CreateCluster refused: lease 4\.0s left"):
            clients.ecs.create_cluster(clusterName="fenced-late")
        with pytest.raises(LeaseLost, match="generate-jitconfig refused"):
            client.create_jit_config(Scope("organization", "acme"), "r-2", 1, ["self-hosted"])
        clients.ecs.list_clusters()  # reads pass
        assert [r.name for r in client.list_runners(Scope("organization", "acme"))] == ["r-1"]
    clusters = clients.ecs.list_clusters()["clusterArns"]
    assert any(arn.endswith("/fenced-ok") for arn in clusters)
    assert not any(arn.endswith("/fenced-late") for arn in clusters)
    clients.ecs.create_cluster(clusterName="unfenced")  # outside an apply: no fence


def test_run_refuses_lease_timings_that_cannot_fence(tmp_path: Path) -> None:
    result = run_cli(
        "run",
        "--leader-election",
        "--lease-timing",
        "10,10,2",
        "--listen",
        "127.0.0.1:0",
        env={"AWS_REGION": "us-east-1", "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "retry period < renew deadline < lease duration, got 10,10,2" in result.stderr
    result = run_cli(
        "run",
        "--leader-election",
        "--lease-timing",
        "3,2,0.5",
        "--listen",
        "127.0.0.1:0",
        env={"AWS_REGION": "us-east-1", "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "renew deadline (2s) must be at least a mutating call attempt's worst case" in (
        result.stderr
    )
