"""Expectations: no cycle starts a runner twice although ECS lists new tasks late.

The end-to-end tests put `EcsListingLag` (an HTTP proxy that plays ECS's eventual
consistency and RunTask's client-token idempotency, which moto lacks) between boto3 and
moto; the planner, the executor and the observer are the real ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.aws.clients import AwsClients
from reconciler.aws.executor import HANDLERS, ApplyResult, Executor, Issued, handles
from reconciler.aws.observe import Observer
from reconciler.clock import utc_now
from reconciler.github import GitHubClient, TokenAuth
from reconciler.github.jit import JitProvisioner
from reconciler.github.registry import GitHubRunnerStates
from reconciler.plan.actions import TYPED_ACTIONS, Plan, RunRunners, SpecChange, StopRunners
from reconciler.plan.expectations import Expectations, InFlight, start_token
from reconciler.plan.state import RUNNER_NAME_TAG, ObservedState, ObservedTask
from reconciler.reconcile import Cycle, plan_cycle
from reconciler.runners import RunnerProvisioner, RunnerStateSource, UnknownRunnerStates
from reconciler.sandbox.github_server import FakeGitHub
from reconciler.sandbox.proxy import EcsListingLag
from reconciler.sandbox.runners import TaskTagRunnerStates
from reconciler.sandbox.scenario import Sandbox
from reconciler.sandbox.server import SANDBOX_ACCESS_KEY_ID, SANDBOX_SECRET_ACCESS_KEY

CLUSTER = "ci-runners"
TOKEN = "test-token"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def task(arn: str, runner: str = "", pool: str = "p") -> ObservedTask:
    tags = {RUNNER_NAME_TAG: runner} if runner else {}
    return ObservedTask(arn, CLUSTER, pool, "td", "h", "RUNNING", 0.0, tags)


# ------------------------------------------------------------------ bookkeeping (pure)


def test_issued_starts_and_stops_are_recorded_as_of_when_they_were_issued() -> None:
    clock = Clock()
    expectations, issued = Expectations(ttl=120.0, clock=clock), Issued(clock)
    issued.starts(3, "p", CLUSTER, "t1")  # a batch whose tasks are not known
    issued.starts(1, "p", CLUSTER, "t2", "arn:2")
    issued.stop("p", "arn:1")
    assert expectations.in_flight() == InFlight()  # nothing recorded before the action ends
    clock.now += 100.0  # the action took 100 s
    issued.record(expectations)
    issued.record(expectations)  # recorded once
    assert expectations.observe([task("arn:1")]) == InFlight({"p": 4}, frozenset({"arn:1"}))
    clock.now += 20.0  # 120 s after they were issued, 20 s after they were recorded
    assert expectations.observe([task("arn:1")]) == InFlight()


def test_every_action_class_has_exactly_one_handler() -> None:
    assert set(HANDLERS) == set(TYPED_ACTIONS)
    with pytest.raises(TypeError, match="RunRunners has two handlers"):
        handles(RunRunners)(lambda *_: "")


def test_an_action_without_a_handler_fails_clearly_and_blocks_its_pool() -> None:
    executor = Executor(
        AwsClients(region="us-east-1", credentials=("x", "x")),  # sends nothing here
        ObservedState(),
        UnknownRunnerStates(),
        expectations=Expectations(),
    )
    shown = SpecChange("update", "runner_pool", "p", "spec changed", pool="p")
    stop = StopRunners("p", "scale in", pool="p", task_arns=("arn:1",))
    result = executor.apply(Plan(actions=(shown, stop)))
    assert result.failed == [(shown, "no handler for SpecChange (runner_pool.p)")]
    assert result.skipped == [(stop, "skipped: an earlier action of pool p failed")]


def test_starts_count_until_listed_by_arn_or_runner_name_then_settle() -> None:
    expectations = Expectations(ttl=120.0, clock=Clock())
    expectations.expect_start("p", "p-1", "arn:1")
    expectations.expect_start("p", "p-2")  # RunTask's outcome unknown: by runner name
    expectations.expect_start("q", "q-1", "arn:3")
    assert expectations.observe([]) == InFlight(starts={"p": 2, "q": 1})
    assert expectations.observe([task("arn:1"), task("arn:9", "p-2")]) == InFlight({"q": 1})
    assert expectations.observe([task("arn:3")]) == InFlight()


def test_stops_count_while_still_listed_and_everything_expires() -> None:
    clock = Clock()
    expectations = Expectations(ttl=120.0, clock=clock)
    expectations.expect_stop("p", "arn:1")
    expectations.expect_start("p", "p-1", "arn:2")
    listed = [task("arn:1")]
    assert expectations.observe(listed) == InFlight({"p": 1}, frozenset({"arn:1"}))
    clock.now += 119.0
    assert expectations.observe(listed) == InFlight({"p": 1}, frozenset({"arn:1"}))
    clock.now += 1.0  # never listed (stopped before ECS listed it?): forgotten after the TTL
    assert expectations.observe(listed) == InFlight()
    expectations.expect_stop("p", "arn:1")
    assert expectations.observe([]) == InFlight(), "a stop settles once the task is gone"


def test_a_start_whose_task_stopped_before_any_listing_settles_at_once() -> None:
    expectations = Expectations(clock=Clock())
    expectations.expect_start("p", "p-1", "arn:1", CLUSTER)
    expectations.expect_start("p", "p-2", "arn:2", CLUSTER)
    expectations.expect_start("p", "p-3")  # no ARN: nothing to describe
    assert expectations.unlisted([task("arn:2")]) == {CLUSTER: ["arn:1"]}
    assert expectations.observe([task("arn:2")], stopped={"arn:1"}) == InFlight({"p": 1})


def test_client_tokens_are_deterministic_per_start_and_never_shared() -> None:
    expectations = Expectations()
    slots = [expectations.next_slot("p", 7) for _ in range(3)]
    assert slots == [0, 1, 2] and expectations.next_slot("p", 8) == 0
    assert expectations.next_slot("q", 7) == 0
    token = start_token("p", "arn:td:3", 7, 1, "aaaa")
    assert token == start_token("p", "arn:td:3", 7, 1, "bbbb"), "with a lease: the epoch decides"
    assert len(token) == 32 and token.isalnum()
    others = {
        start_token("p", "arn:td:3", 7, 2, "aaaa"),
        start_token("p", "arn:td:4", 7, 1, "aaaa"),
        start_token("p", "arn:td:3", 8, 1, "aaaa"),
        start_token("q", "arn:td:3", 7, 1, "aaaa"),
    }
    assert token not in others and len(others) == 4
    # without a lease (epoch 0) a restarted process does not reuse an earlier one's tokens
    assert start_token("p", "arn:td:3", 0, 1, "aaaa") != start_token("p", "arn:td:3", 0, 1, "bbbb")


# ------------------------------------------------------------------ end to end


@pytest.fixture
def lagging(sandbox: Sandbox) -> Iterator[EcsListingLag]:
    with EcsListingLag(sandbox.endpoint_url) as proxy:
        yield proxy


def clients_through(proxy: EcsListingLag, max_attempts: int = 8) -> AwsClients:
    return AwsClients(
        region="us-east-1",
        endpoint_url=proxy.url,
        credentials=(SANDBOX_ACCESS_KEY_ID, SANDBOX_SECRET_ACCESS_KEY),
        max_attempts=max_attempts,
    )


def tasks_in_ecs(sandbox: Sandbox) -> list[dict[str, Any]]:
    """What moto really runs (not through the lagging proxy)."""
    ecs = sandbox.clients(read_only=True).ecs
    arns = ecs.list_tasks(cluster=CLUSTER)["taskArns"]
    if not arns:
        return []
    return ecs.describe_tasks(cluster=CLUSTER, tasks=arns, include=["TAGS"])["tasks"]


def reconcile(
    clients: AwsClients,
    specs: Path,
    states: RunnerStateSource,
    expectations: Expectations | None,
    provisioner: RunnerProvisioner | None = None,
) -> tuple[Cycle, ApplyResult]:
    """One controller cycle: observe and plan, then apply (as Controller.reconcile does)."""
    cycle = plan_cycle([specs], Observer(clients), states, utc_now(), expectations=expectations)
    executor = Executor(
        clients, cycle.observed, states, provisioner=provisioner, expectations=expectations
    )
    return cycle, executor.apply(cycle.plan)


@pytest.mark.parametrize("remembered", [False, True], ids=["no-expectations", "expectations"])
def test_a_back_to_back_cycle_does_not_start_the_runners_ecs_does_not_list_yet(
    sandbox: Sandbox, specs: Path, lagging: EcsListingLag, remembered: bool
) -> None:
    clients = clients_through(lagging)
    states = TaskTagRunnerStates(clients)
    expectations = Expectations() if remembered else None
    first, applied = reconcile(clients, specs, states, expectations)
    assert first.plan.counts()["runners_start"] == 4 and applied.ok
    assert len(tasks_in_ecs(sandbox)) == 4

    second, _ = reconcile(clients, specs, states, expectations)  # ListTasks lags behind
    assert lagging.hidden_answers >= 1
    if not remembered:  # what the controller did before expectations
        assert second.plan.counts()["runners_start"] == 4
        # started twice, as far as the instances had room for them
        assert len(tasks_in_ecs(sandbox)) > 4, "runners started twice"
        return
    assert second.plan.counts()["runners_start"] == 0
    assert len(tasks_in_ecs(sandbox)) == 4
    platform = next(p for p in second.plan.pools if p.name == "platform-linux-dind")
    assert (platform.running, platform.unknown) == (2, 2), "counted as starting"

    lagging.reveal()
    third = plan_cycle([specs], Observer(clients), states, utc_now(), expectations=expectations)
    assert expectations is not None and expectations.in_flight() == InFlight()
    assert third.plan.counts()["runners_start"] == 0


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub(tokens=[TOKEN]) as server:
        server.add_runner_group("/enterprises/acme", "large-runners")
        yield server


def registered(github: FakeGitHub) -> set[str]:
    return {
        runner["name"]
        for path in ("/enterprises/acme", "/orgs/platform", "/repos/acme/mobile-app")
        for runner in github.runners(path)
    }


def runner_names(tasks: list[dict[str, Any]]) -> set[str]:
    return {t["value"] for task in tasks for t in task["tags"] if t["key"] == RUNNER_NAME_TAG}


@pytest.mark.parametrize("listed", [True, False], ids=["task-listed", "task-not-listed-yet"])
def test_an_unclear_run_task_failure_looks_the_task_up_and_never_abandons_a_live_runner(
    sandbox: Sandbox, specs: Path, lagging: EcsListingLag, github: FakeGitHub, listed: bool
) -> None:
    if listed:
        lagging.lag = 0.0
    clients = clients_through(lagging, max_attempts=2)
    lagging.fail_next_run_tasks(1)  # performed, but both attempts answered with a 500
    expectations = Expectations()
    with GitHubClient(github.url, TokenAuth(TOKEN)) as client:
        states = GitHubRunnerStates(client)
        provisioner = JitProvisioner(client, clients.client("ssm"))
        _, applied = reconcile(clients, specs, states, expectations, provisioner)
        in_ecs = tasks_in_ecs(sandbox)
        assert len(in_ecs) == 4, "the retry with the same client token started nothing more"
        assert runner_names(in_ecs) == registered(github), "no registration of a live task lost"
        if listed:
            assert applied.ok, applied.failed
        else:
            [(failed, message)] = applied.failed
            assert failed.pool == "enterprise-linux-large"
            # counted by its batch's token; no registration was made for a task not seen
            assert "without a clear answer" in message and "counted as starting" in message
            assert expectations.in_flight().starts == {
                "enterprise-linux-large": 1,
                "platform-linux-dind": 2,
                "mobile-app-arm64": 1,
            }
        second, _ = reconcile(clients, specs, states, expectations, provisioner)
        assert second.plan.counts()["runners_start"] == 0
        assert len(tasks_in_ecs(sandbox)) == 4
