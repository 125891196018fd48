"""Bursts (issue 19): batched RunTask, runners bound to their task after placement, bindings
in parallel through the fence, a burst of triggers as one cycle.

End-to-end parts run the real executor against moto (ECS, SSM) and the local GitHub.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from reconciler.aws.executor import (
    RUN_TASK_CONCURRENCY,
    RUN_TASK_MAX_COUNT,
    ApplyResult,
    Bindings,
    Collected,
    Executor,
)
from reconciler.aws.observe import Observer
from reconciler.clock import utc_now
from reconciler.controller.loop import Triggers
from reconciler.fencing import LeaseLost
from reconciler.github import GitHubClient, TokenAuth
from reconciler.github.janitor import _is_ours
from reconciler.github.jit import JitProvisioner
from reconciler.github.registry import GitHubRunnerStates
from reconciler.plan.expectations import Expectations, InFlight, start_token
from reconciler.plan.guard import GuardPolicy, refused_actions
from reconciler.plan.state import (
    RUNNER_ID_TAG,
    RUNNER_NAME_TAG,
    START_TOKEN_TAG,
    ObservedTask,
)
from reconciler.reconcile import plan_cycle
from reconciler.runners import Provision, Unbound, UnboundWatch, runner_name
from reconciler.sandbox.github_server import FakeGitHub
from reconciler.sandbox.scenario import Sandbox
from reconciler.sandbox.server import MotoServer

from .conftest import platform_pool_alone, wait_for

TOKEN = "burst-token"
CLUSTER = "ci-runners"
POOL = "platform-linux-dind"
GROUP = "ci-runners-linux-x64"
TASK_ARN = "arn:aws:ecs:us-east-1:123456789012:task/ci-runners/0123456789abcdef0123456789abcdef"


# ------------------------------------------------------------------ pure parts


def test_a_runner_is_named_after_its_task_within_githubs_64_characters() -> None:
    assert runner_name("linux", TASK_ARN) == "linux-0123456789abcdef0123456789abcdef"
    long = runner_name("p" * 63, TASK_ARN)
    assert len(long) == 64 and long.endswith("-0123456789abcdef0123456789abcdef")
    moto_arn = "arn:aws:ecs:us-east-1:1:task/c/12345678-1234-1234-1234-123456789abc"
    assert len(runner_name("p" * 63, moto_arn)) == 64
    # the janitor knows them as ours (and still knows the names earlier versions gave)
    assert _is_ours(runner_name("linux", TASK_ARN), ["linux"])
    assert not _is_ours(runner_name("linux", TASK_ARN), ["other"])
    assert _is_ours("linux-0a1b2c3d", ["linux"])


@pytest.mark.parametrize("arn", ["", "0123456789abcdef", "task/0123", "arn:aws:ecs:x:1:task/"])
def test_a_runner_name_needs_a_task_arn(arn: str) -> None:
    with pytest.raises(ValueError, match="not an ECS task ARN"):
        runner_name("linux", arn)


def test_a_batch_takes_a_run_of_slots_and_its_own_token() -> None:
    expectations = Expectations()
    assert expectations.next_slot("p", 1, count=10) == 0
    assert expectations.next_slot("p", 1, count=3) == 10
    assert expectations.next_slot("p", 1) == 13
    with pytest.raises(ValueError, match="at least one task"):
        expectations.next_slot("p", 1, count=0)
    # the batch size is part of the token: a retry of one batch is idempotent, two batches
    # from the same slot with other sizes never share a token
    assert start_token("p", "td:1", 1, 0, "x", 10) == start_token("p", "td:1", 1, 0, "y", 10)
    assert start_token("p", "td:1", 1, 0, "x", 10) != start_token("p", "td:1", 1, 0, "x", 9)


def _task(arn: str, tags: dict[str, str]) -> ObservedTask:
    return ObservedTask(
        arn=arn,
        cluster=CLUSTER,
        pool="p",
        task_definition_arn="td:1",
        spec_hash="h",
        last_status="RUNNING",
        started_at=None,
        tags=tags,
    )


def test_starts_known_only_by_their_batch_token_settle_as_its_tasks_are_listed() -> None:
    expectations = Expectations()
    for _ in range(3):  # RunTask of 3 failed without an answer: counted by its token
        expectations.expect_start("p", token="t1")
    expectations.expect_start("p", "", "arn:known", CLUSTER, "t2")  # known by its ARN
    with pytest.raises(ValueError, match="runner name, a task ARN or a batch token"):
        expectations.expect_start("p")
    listed = [
        _task("arn:a", {START_TOKEN_TAG: "t1"}),
        _task("arn:b", {START_TOKEN_TAG: "t1"}),
        _task("arn:known", {START_TOKEN_TAG: "t2"}),  # settles its own start only
    ]
    assert expectations.observe(listed) == InFlight(starts={"p": 1})
    listed.append(_task("arn:c", {START_TOKEN_TAG: "t1"}))
    assert expectations.observe(listed) == InFlight()


def test_a_task_unbound_for_30_s_is_bound_until_90_s_then_stopped() -> None:
    monotonic = [0.0]
    watch = UnboundWatch(clock=lambda: monotonic[0])
    now = 1_800_000_000.0
    bound = _task("arn:bound", {RUNNER_NAME_TAG: "p-bound"})
    fresh = _task("arn:fresh", {})  # no creation time (moto): aged from when first seen
    created = dataclasses.replace(_task("arn:created", {}), created_at=now - 45.0)
    old = dataclasses.replace(_task("arn:old", {}), created_at=now - 95.0)
    removed = dataclasses.replace(_task("arn:removed", {}), pool="gone", created_at=now - 45.0)
    stopped = dataclasses.replace(_task("arn:stopped", {}), last_status="STOPPED")
    tasks = [bound, fresh, created, old, removed, stopped]
    first = watch.check(tasks, now, pools={"p"})
    assert first == Unbound(bind=(created,), stop=(old, removed))  # a removed pool's: stopped
    monotonic[0] += 29.0
    assert fresh not in watch.check(tasks, now + 29.0, pools={"p"}).bind
    monotonic[0] += 1.0
    assert fresh in watch.check(tasks, now + 30.0, pools={"p"}).bind
    monotonic[0] += 60.0
    assert fresh in watch.check(tasks, now + 90.0, pools={"p"}).stop
    watch.check([bound], now + 91.0, pools={"p"})  # bound, or gone: forgotten
    assert watch._first_seen == {}
    assert not Unbound()
    with pytest.raises(ValueError, match="bind_after < bind_until"):
        UnboundWatch(bind_after=90.0, bind_until=30.0)


def test_triggers_together_are_one_wake_up_and_a_stop_ends_the_wait() -> None:
    triggers = Triggers(coalesce=60.0)  # longer than the test may take: only stop ends it
    triggers.fire("webhook: job 1 queued")
    calls = 0

    def clock() -> float:  # once the wait has begun to gather, more arrive, then a stop
        nonlocal calls
        calls += 1
        if calls == 1:
            threading.Thread(
                target=lambda: [
                    triggers.fire("webhook: job 2 queued"),
                    triggers.fire(Triggers.STOP),
                ]
            ).start()
        return 0.0

    triggers._clock = clock
    assert triggers.wait(timeout=60.0) == [
        "webhook: job 1 queued",
        "webhook: job 2 queued",
        Triggers.STOP,
    ]
    assert Triggers(coalesce=0.0).wait(timeout=0.0) == []  # nothing rang: the timer's turn
    with pytest.raises(ValueError, match="coalesce must be >= 0"):
        Triggers(coalesce=-1.0)


# ------------------------------------------------------------------ against moto + GitHub


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub(tokens=[TOKEN]) as server:
        yield server


def burst_specs(tmp_path: Path, idle: int) -> Path:
    return platform_pool_alone(
        tmp_path,
        ("max: 40", "max: 100"),
        ("    idle: 2\n", f"    idle: {idle}\n"),
    )


def apply_once(
    sandbox: Sandbox, specs: Path, github: FakeGitHub, bindings: Bindings | None = None
) -> tuple[ApplyResult, Any]:
    """One plan + apply with JIT runners; returns the result and the controller's clients.
    With the controller's `bindings`, waits until the background bindings are done."""
    clients = sandbox.clients()
    with GitHubClient(github.url, TokenAuth(TOKEN)) as client:
        states = GitHubRunnerStates(client)
        cycle = plan_cycle([specs], Observer(clients), states, utc_now())
        provisioner = JitProvisioner(client, clients.client("ssm"))
        executor = Executor(
            clients, cycle.observed, states, provisioner=provisioner, bindings=bindings
        )
        result = executor.apply(cycle.plan, refused_actions(cycle.plan, GuardPolicy()))
        if bindings is not None:
            wait_for(lambda: not bindings.pending(), timeout=60)
        return result, clients


def our_tasks(sandbox: Sandbox) -> list[dict[str, Any]]:
    ecs = sandbox.clients(read_only=True).ecs
    arns = ecs.list_tasks(cluster=CLUSTER, desiredStatus="RUNNING")["taskArns"]
    tasks: list[dict[str, Any]] = []
    for index in range(0, len(arns), 100):
        chunk = arns[index : index + 100]
        tasks += ecs.describe_tasks(cluster=CLUSTER, tasks=chunk, include=["TAGS"])["tasks"]
    return tasks


def jit_parameters(sandbox: Sandbox) -> list[str]:
    ssm = sandbox.clients(read_only=True).client("ssm")
    pages = ssm.get_paginator("get_parameters_by_path").paginate(
        Path="/ecs-reconciler/jit", Recursive=True
    )
    return [p["Name"] for page in pages for p in page["Parameters"]]


def tags_of(task: dict[str, Any]) -> dict[str, str]:
    return {tag["key"]: tag["value"] for tag in task.get("tags", [])}


pytestmark = pytest.mark.e2e


def test_a_burst_is_started_ten_a_run_task_and_each_task_binds_its_own_runner(
    tmp_path: Path, moto_server: MotoServer, github: FakeGitHub
) -> None:
    runners = 25
    specs = burst_specs(tmp_path, runners)
    with Sandbox([specs], server=moto_server, instances_per_group=4) as sandbox:  # room: 28
        result, clients = apply_once(sandbox, specs, github)
        assert result.ok, result.failed
        assert clients.calls["ecs:RunTask"] == math.ceil(runners / RUN_TASK_MAX_COUNT) == 3
        tasks = our_tasks(sandbox)
        parameters = jit_parameters(sandbox)
    assert len(tasks) == runners
    registered = {r["name"]: r for r in github.runners("/orgs/platform")}
    assert len(registered) == runners and clients.calls["ssm:PutParameter"] == runners
    batches = Counter(tags_of(task)[START_TOKEN_TAG] for task in tasks)
    assert sorted(batches.values()) == [5, 10, 10]  # the tasks of a batch share its token
    for task in tasks:  # each task is bound to its own runner, named after the task
        tags = tags_of(task)
        assert tags[RUNNER_NAME_TAG] == runner_name(POOL, task["taskArn"])
        assert tags[RUNNER_ID_TAG] == str(registered[tags[RUNNER_NAME_TAG]]["id"])
    assert sorted(p.rsplit("/", 1)[-1] for p in parameters) == sorted(
        task["taskArn"].rsplit("/", 1)[-1] for task in tasks
    )
    # the task is started with the prefix only, the same for every task of a batch
    environments = {
        repr(task["overrides"]["containerOverrides"][0]["environment"]) for task in tasks
    }
    assert environments == {
        repr([{"name": "RUNNER_JIT_PARAMETER_PREFIX", "value": f"/ecs-reconciler/jit/{POOL}"}])
    }


def test_a_shortfall_registers_only_the_tasks_ecs_placed_and_leaves_nothing_behind(
    tmp_path: Path, moto_server: MotoServer, github: FakeGitHub
) -> None:
    """As `run` does it: the runners are bound in the background, after the apply."""
    specs = burst_specs(tmp_path, 60)
    bindings = Bindings(workers=4)
    with Sandbox([specs], server=moto_server, instances_per_group=3) as sandbox:
        # the group may not grow: room for 3 x 7 = 21 tasks of 512 CPU / 1024 MiB
        sandbox.clients().autoscaling.update_auto_scaling_group(
            AutoScalingGroupName=GROUP, MaxSize=3
        )
        result, clients = apply_once(sandbox, specs, github, bindings)
        tasks = our_tasks(sandbox)
        parameters = jit_parameters(sandbox)
    collected = bindings.collect(Expectations())
    bindings.close()
    placed = len(tasks)
    assert collected == Collected(bound=placed)
    assert all(
        tags_of(task)[RUNNER_NAME_TAG] == runner_name(POOL, task["taskArn"]) for task in tasks
    )
    assert 0 < placed < 60
    # no registration, parameter or clean-up call for a task ECS did not place
    assert len(github.runners("/orgs/platform")) == placed == len(parameters)
    assert clients.calls["ssm:PutParameter"] == placed
    assert clients.calls["ssm:DeleteParameter"] == 0 and clients.calls["ecs:StopTask"] == 0
    assert not [path for method, path in github.request_log if method == "DELETE"]
    # the batches stop at the first that ECS could not fill (and those already in flight)
    assert clients.calls["ecs:RunTask"] <= math.ceil(placed / RUN_TASK_MAX_COUNT) + (
        RUN_TASK_CONCURRENCY
    )
    # the rest waits for the instances the plan adds (capped here): said, not failed
    assert any(f"started {placed} of 60 runner(s)" in outcome for _, outcome in result.done)


class LosableFence:
    """A lease this replica holds until `lost` (epoch `epoch`)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch
        self.lost = False

    def remaining(self) -> float:
        return 0.0 if self.lost else 100.0


class LostAtFirstBinding:
    """The real provisioner, with the lease lost once ECS placed the batch, before its first
    registration: the batch stays placed and unbound (the leader's process paused there)."""

    def __init__(self, provisioner: JitProvisioner, fence: LosableFence) -> None:
        self.provisioner, self.fence = provisioner, fence

    def environment(self, pool: str, launch: Mapping[str, Any]) -> dict[str, str]:
        return self.provisioner.environment(pool, launch)

    def bind(self, pool: str, launch: Mapping[str, Any], task_arn: str) -> Provision:
        self.fence.lost = True
        return self.provisioner.bind(pool, launch, task_arn)

    def abandon(self, provision: Provision) -> None:
        self.provisioner.abandon(provision)


def test_tasks_placed_but_never_bound_are_bound_by_a_later_cycle_or_stopped(
    tmp_path: Path, moto_server: MotoServer, github: FakeGitHub
) -> None:
    """The lease is lost between RunTask and binding: the batch is placed and unbound. The
    next leader's cycle finds the tasks unbound 40 s after RunTask: one whose runner was
    registered after all (the binding was cut off before its tag) is adopted, not registered
    twice; one too old is stopped; the rest are bound. The deposed leader's re-binding is
    fenced like its apply."""
    specs = burst_specs(tmp_path, 4)
    deposed, leader = LosableFence(1), LosableFence(2)
    with (
        Sandbox([specs], server=moto_server, instances_per_group=1) as sandbox,
        GitHubClient(github.url, TokenAuth(TOKEN)) as client,
    ):
        clients = sandbox.clients()
        states = GitHubRunnerStates(client)
        jit = JitProvisioner(client, clients.client("ssm"))
        cycle = plan_cycle([specs], Observer(clients), states, utc_now())
        provisioner = LostAtFirstBinding(jit, deposed)
        executor = Executor(clients, cycle.observed, states, provisioner=provisioner, fence=deposed)  # type: ignore[arg-type]
        assert executor.apply(cycle.plan).lease_lost
        assert not github.runners("/orgs/platform") and not jit_parameters(sandbox)

        cycle = plan_cycle([specs], Observer(clients), states, utc_now())
        adopted, old, *rest = sorted(cycle.observed.tasks, key=lambda t: t.arn)
        adopted_id = github.add_runner("/orgs/platform", runner_name(POOL, adopted.arn))
        states.states(cycle.observed.tasks)  # as listed had the registration been made before
        now, monotonic = utc_now().timestamp(), [0.0]
        watch = UnboundWatch(clock=lambda: monotonic[0])  # moto reports no createdAt
        assert not watch.check(cycle.observed.tasks, now, cycle.desired.pools)  # first seen
        monotonic[0] += 40.0
        unbound = watch.check(cycle.observed.tasks, now + 40.0, cycle.desired.pools)
        assert len(unbound.bind) == 4 and not unbound.stop
        unbound = Unbound(tuple(t for t in unbound.bind if t.arn != old.arn), (old,))
        with pytest.raises(LeaseLost):  # the deposed leader: refused before any call
            Executor(clients, cycle.observed, states, provisioner=jit, fence=deposed).rebind(
                unbound, cycle.desired.pools
            )
        assert len(github.runners("/orgs/platform")) == 1  # only the one added above
        executor = Executor(clients, cycle.observed, states, provisioner=jit, fence=leader)
        done = executor.rebind(unbound, cycle.desired.pools)
        tasks = {task["taskArn"]: tags_of(task) for task in our_tasks(sandbox)}
        parameters = jit_parameters(sandbox)
    assert any("was registered; tagged" in line for line in done)
    assert any(f"binding {len(rest)} unbound task(s)" in line for line in done)
    assert any("too old to bind; stopped" in line for line in done)
    assert old.arn not in tasks and len(tasks) == 3
    assert executor.expectations.observe(cycle.observed.tasks).stops == {old.arn}
    registered = {r["name"]: r["id"] for r in github.runners("/orgs/platform")}
    assert len(registered) == 1 + len(rest)  # the adopted runner was not registered twice
    for tags in tasks.values():
        assert registered[tags[RUNNER_NAME_TAG]] == int(tags[RUNNER_ID_TAG])
    assert tasks[adopted.arn][RUNNER_ID_TAG] == str(adopted_id)
    assert sorted(p.rsplit("/", 1)[-1] for p in parameters) == sorted(
        t.task_id for t in rest
    )  # the adopted one's parameter was its first binding's to make
