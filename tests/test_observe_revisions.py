"""The controller's observer lists each family's revisions at most every `revision_refresh`
seconds (one call per pool per cycle otherwise); our own changes are seen at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.aws.executor import Executor
from reconciler.aws.observe import Observer
from reconciler.clock import utc_now
from reconciler.plan.desired import render_desired
from reconciler.plan.guard import GuardPolicy, refused_actions
from reconciler.reconcile import plan_cycle
from reconciler.runners import UnknownRunnerStates
from reconciler.sandbox.scenario import Sandbox
from reconciler.spec.loader import load_specs

pytestmark = pytest.mark.e2e  # starts servers or processes

FAMILY = "ecs-reconciler-platform-linux-dind"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_revision_lists_are_reused_until_the_refresh_or_a_forget(
    sandbox: Sandbox, specs: Path
) -> None:
    clients = sandbox.clients()
    cycle = plan_cycle([specs], Observer(clients), UnknownRunnerStates(), utc_now())
    executor = Executor(clients, cycle.observed, UnknownRunnerStates())
    assert executor.apply(cycle.plan, refused_actions(cycle.plan, GuardPolicy())).ok
    desired = render_desired(load_specs([specs]), utc_now(), "us-east-1")

    clock = Clock()
    observer = Observer(sandbox.clients(), revision_refresh=300, clock=clock)
    listings = observer.clients.calls
    observer.observe(desired)
    assert listings["ecs:ListTaskDefinitions"] == 3  # one per pool's family
    observer.observe(desired)
    assert listings["ecs:ListTaskDefinitions"] == 3  # reused

    ours = observer.observe(desired).task_definitions[FAMILY][0]
    described = clients.ecs.describe_task_definition(taskDefinition=ours.arn)["taskDefinition"]
    keep = ("family", "containerDefinitions", "networkMode", "requiresCompatibilities", "cpu")
    clients.ecs.register_task_definition(
        **{k: described[k] for k in keep}, memory=described["memory"]
    )  # by hand
    clock.now = 299
    assert len(observer.observe(desired).task_definitions[FAMILY]) == 1
    clock.now = 300
    assert len(observer.observe(desired).task_definitions[FAMILY]) == 2  # seen at the refresh
    assert listings["ecs:ListTaskDefinitions"] == 6

    observer.forget_families([FAMILY])  # what the controller does after registering one
    observer.observe(desired)
    assert listings["ecs:ListTaskDefinitions"] == 7
