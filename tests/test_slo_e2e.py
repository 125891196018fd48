"""A queue-wait objective end to end on the sandbox: webhooks count arrivals in DynamoDB
(moto), the controller marks the week watched, and a cycle a week later warms the pool the
objective asks for, saying why in the plan."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from reconciler.aws.dynamodb import ensure_table
from reconciler.clock import FixedClock
from reconciler.controller.loop import Controller, ControllerSettings
from reconciler.demand import JobEvent
from reconciler.demand.arrivals import DynamoArrivalStore
from reconciler.plan.guard import GuardPolicy
from reconciler.plan.slo import week_and_slot
from reconciler.sandbox.runners import TaskTagRunnerStates
from reconciler.sandbox.scenario import Sandbox

pytestmark = pytest.mark.e2e

PLATFORM = "platform-linux-dind"
LAST_WEEK = datetime.datetime(2026, 11, 23, 9, 0, 30, tzinfo=datetime.UTC)  # a Monday
NOW = LAST_WEEK + datetime.timedelta(days=7)


@pytest.fixture
def specs(specs: Path) -> Path:
    """The example specs; the platform pool's objective at 10 s (so it keeps warm runners)."""
    path = specs / "org-platform-dind.yaml"
    text = path.read_text()
    assert "queueWait: 30s" in text
    path.write_text(text.replace("queueWait: 30s", "queueWait: 10s"))
    return specs


def queued(job_id: int, at: datetime.datetime) -> JobEvent:
    return JobEvent(
        delivery=f"d-{job_id}",
        action="queued",
        job_id=job_id,
        run_id=job_id // 3,  # runs of three jobs
        repository="platform/api",
        organization="platform",
        labels=("self-hosted", "linux", "dind"),
        conclusion=None,
        runner_name=None,
        at=at,
        created_at=at,
    )


def controller_at(sandbox: Sandbox, specs: Path, at: datetime.datetime) -> Controller:
    clients = sandbox.clients()
    dynamodb = clients.client("dynamodb")
    ensure_table(dynamodb, "ecs-reconciler-demand", "pk")
    return Controller(
        ControllerSettings(spec_paths=[specs], guard=GuardPolicy(1.0)),
        clients,
        TaskTagRunnerStates(clients),
        wall_clock=FixedClock(at).now,
        arrivals=DynamoArrivalStore(dynamodb),
    )


def test_learned_arrivals_warm_the_pool_a_week_later(sandbox: Sandbox, specs: Path) -> None:
    last_week = controller_at(sandbox, specs, LAST_WEEK)
    cycle, _ = last_week.reconcile("start")
    assert cycle.desired.pools[PLATFORM].idle_target == 2  # nothing learned: the floor
    for job in range(60):  # 60 jobs in one 5-minute slot: 0.2 per second
        last_week.on_job_event(queued(job, LAST_WEEK))
    store = DynamoArrivalStore(sandbox.clients().client("dynamodb"))
    week, slot = week_and_slot(LAST_WEEK)
    loaded = store.load([PLATFORM], NOW)[PLATFORM]
    assert loaded.counts[week] == {slot: 60}
    assert loaded.observed_from == {week: slot}  # the cycle watched the week

    cycle, _ = controller_at(sandbox, specs, NOW).reconcile("a week later")
    pool = cycle.desired.pools[PLATFORM]
    # 0.2 jobs/s in runs of 3, a 10 s target: warm runners for 90% of the jobs arriving in
    # 25 s (9), room for 90% of those arriving in 95 s (22): 13 more
    assert (pool.idle_target, pool.spare_room) == (9, 13)
    runs = [a for a in cycle.plan.actions if a.pool == PLATFORM and a.action == "run"]
    assert runs and "slo: 9 warm = p90 of jobs arriving in 25 s" in runs[0].reason
    assert "runs of ~3 learned for Mon 09:00 UTC" in runs[0].reason
