"""Demand-driven scaling end to end: moto (ECS, SSM, DynamoDB) + the simulated GitHub world.

The real controller (JIT runners through SSM, GitHub runner states, the demand book in
DynamoDB fed by signed webhooks over HTTP) runs cycle by cycle while `GitHubWorld` plays
GitHub and the runner image: 30 jobs queued across 3 repositories with maxPerRepository 5.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from reconciler.aws.clients import AwsClients
from reconciler.controller.loop import Controller, ControllerSettings
from reconciler.controller.server import ControllerServer
from reconciler.demand import DemandBook, DynamoDemandStore, Redeliverer, WebhookReceiver
from reconciler.github import GitHubClient, TokenAuth
from reconciler.github.jit import JitProvisioner
from reconciler.github.registry import GitHubRunnerStates
from reconciler.plan.guard import GuardPolicy
from reconciler.sandbox.scenario import SANDBOX_GITHUB_TOKEN, Sandbox
from reconciler.sandbox.server import MotoServer
from reconciler.sandbox.world import GitHubWorld

from .conftest import platform_pool_alone

pytestmark = pytest.mark.e2e  # starts servers or processes

POOL = "platform-linux-dind"
LABELS = ("self-hosted", "linux", "x64", "dind")
SECRET = b"webhook-secret"
CAP = 5
IDLE = 2


@pytest.fixture
def specs(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    """The platform pool alone, small tasks, cap 5 (and the edits a test gives as its param)."""
    edits = getattr(request, "param", ())
    return platform_pool_alone(
        tmp_path, ("maxPerRepository: 10", f"maxPerRepository: {CAP}"), *edits
    )


@dataclass
class WebhookLoop:
    """The real controller fed by signed webhooks over HTTP, and the simulated GitHub world."""

    controller: Controller
    book: DemandBook
    receiver: WebhookReceiver
    world: GitHubWorld
    github: GitHubClient


def dynamo_book(clients: AwsClients) -> DemandBook:
    """A demand book on the sandbox's DynamoDB table (created if missing)."""
    store = DynamoDemandStore(clients.client("dynamodb"))
    store.ensure_table()
    return DemandBook(store)


def demand_controller(
    clients: AwsClients, specs: Path, github: GitHubClient, book: DemandBook
) -> Controller:
    """The real controller: JIT runners through SSM, GitHub runner states, `book` as demand."""
    return Controller(
        ControllerSettings(spec_paths=[specs], guard=GuardPolicy(max_stop_share=1.0)),
        clients,
        GitHubRunnerStates(github, grace=1.0, boot_timeout=120),
        provisioner=JitProvisioner(github, clients.client("ssm")),
        demand=book,
        github=github,
    )


def listen(
    controller: Controller, book: DemandBook, port: int = 0
) -> tuple[ControllerServer, WebhookReceiver]:
    """The controller's webhook endpoint, served on `port` (0: any)."""
    receiver = WebhookReceiver.queued(
        SECRET, book, controller.demand_pools, controller.on_job_event
    )
    server = ControllerServer("127.0.0.1", port, controller.status, lambda: True, None, receiver)
    server.start()
    return server, receiver


def delivering_world(sandbox: Sandbox, server: ControllerServer, **options: Any) -> GitHubWorld:
    """The simulated GitHub world, delivering webhooks to the controller's endpoint."""
    assert sandbox.github is not None
    url = f"http://{server.address}/webhook"
    return GitHubWorld(sandbox.github, sandbox.clients(), ["ci-runners"], url, SECRET, **options)


@contextlib.contextmanager
def webhook_loop(
    sandbox: Sandbox, specs: Path, content_type: str = "json"
) -> Iterator[WebhookLoop]:
    """A controller with JIT runners, GitHub runner states and the demand book in DynamoDB,
    its webhook endpoint served, and a `GitHubWorld` delivering to it."""
    assert sandbox.github is not None
    clients = sandbox.clients()
    book = dynamo_book(clients)
    with GitHubClient(sandbox.github.url, TokenAuth(SANDBOX_GITHUB_TOKEN)) as github:
        controller = demand_controller(clients, specs, github, book)
        server, receiver = listen(controller, book)
        try:
            world = delivering_world(sandbox, server, content_type=content_type)
            yield WebhookLoop(controller, book, receiver, world, github)
        finally:
            server.close()
            receiver.close()


@pytest.fixture
def sandbox(specs: Path, moto_server: MotoServer) -> Iterator[Sandbox]:
    # six instances of 7 small tasks: the burst's peak fits without waiting for instances
    with Sandbox([specs], server=moto_server, github=True, instances_per_group=6) as running:
        yield running


def test_sixteen_jobs_three_repositories_capped_served_and_back_to_idle(
    sandbox: Sandbox, specs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="reconciler")
    assert sandbox.github is not None
    clients = sandbox.clients()
    store = DynamoDemandStore(clients.client("dynamodb"))
    store.ensure_table()
    book = DemandBook(store)
    with GitHubClient(sandbox.github.url, TokenAuth(SANDBOX_GITHUB_TOKEN)) as github:
        states = GitHubRunnerStates(github, grace=1.0, boot_timeout=120)
        controller = Controller(
            ControllerSettings(
                spec_paths=[specs],
                guard=GuardPolicy(max_stop_share=1.0),
                background_binding=True,  # as run binds: across cycles
            ),
            clients,
            states,
            provisioner=JitProvisioner(github, clients.client("ssm")),
            demand=book,
            github=github,
        )
        receiver = WebhookReceiver.queued(
            SECRET, book, controller.demand_pools, controller.on_job_event
        )
        server = ControllerServer(
            "127.0.0.1", 0, controller.status, lambda: True, controller.metrics.render, receiver
        )
        server.start()
        try:
            world = GitHubWorld(
                sandbox.github,
                sandbox.clients(),
                ["ci-runners"],
                f"http://{server.address}/webhook",
                SECRET,
            )
            described: list[dict] = []

            def settle() -> int:
                """Cycle until every job is done and the pool is its idle pool; peak of
                runners not busy (started ahead of demand) seen meanwhile."""
                peak = 0
                for _ in range(150):
                    cycle, result = controller.reconcile("test")
                    assert result is None or result.ok, result.failed
                    pending = Counter(
                        job.repository for job in book.pending_jobs(POOL, cycle.demand_pools)
                    )
                    assert max(pending.values(), default=0) <= CAP, pending
                    world.tick()
                    arns = clients.ecs.list_tasks(cluster="ci-runners", desiredStatus="RUNNING")[
                        "taskArns"
                    ]
                    if arns:
                        described.append(
                            clients.ecs.describe_tasks(cluster="ci-runners", tasks=arns)
                        )
                    peak = max(peak, len(arns) - world.busy_runners)
                    summary = next(p for p in cycle.plan.pools if p.name == POOL)
                    done = all(job.completed_at for job in world.jobs.values())
                    if (
                        done
                        and summary.running == summary.idle == IDLE
                        and not cycle.plan.has_changes
                    ):
                        return peak
                    time.sleep(0.3)
                pytest.fail(f"did not settle: {summary}, {len(world.queued)} job(s) queued")

            for repository, count in (
                ("platform/api", 10),  # twice the per-repository cap
                ("platform/web", 3),
                ("platform/cli", 3),
            ):
                world.queue_jobs(repository, LABELS, count, duration=1.5)
            world.tick()  # the queued deliveries reach /webhook
            peak_not_busy = settle()
            ran = list(world.jobs.values())
            assert github.calls["DELETE /orgs/{org}/actions/runners/{runner_id}"] == 0

            # 6 jobs queued: the 2 warm runners take 2 at once, runners start for the other
            # 4, which are cancelled before a runner is up
            docs = world.queue_jobs("platform/docs", LABELS, 6, duration=1.5)
            world.tick()
            cancelled = [job for job in docs if job.started_at is None]
            assert receiver.writer is not None and receiver.writer.drain(10)  # all recorded
            controller.reconcile("jobs queued")
            world.cancel(cancelled)
            settle()
        finally:
            server.close()
            receiver.close()
            assert controller.bindings is not None
            controller.bindings.close()

    assert len(ran) == 16
    assert all(job.started_at and job.completed_at for job in ran), "a job never ran"
    assert len({job.runner for job in ran}) == 16  # one fresh runner per job
    assert world.interrupted == [], "a busy runner was stopped"
    # never more started ahead of demand than 5 per repository + the idle pool: 10 jobs of
    # platform/api count as 5 (without the cap up to 18 runners would wait for a job)
    assert peak_not_busy <= CAP + 3 + 3 + IDLE
    # a cancelled job stops counting: its runner was surplus, deregistered first, then stopped
    assert len(cancelled) == 4 and all(job.started_at is None for job in cancelled)
    assert github.calls["DELETE /orgs/{org}/actions/runners/{runner_id}"] == 4
    assert world.jit_configs, "no runner read a JIT configuration"
    visible = repr(described) + caplog.text
    for config in world.jit_configs:
        assert config not in visible, "a JIT config appeared in DescribeTasks or a log line"


def test_a_form_delivery_starts_a_runner(sandbox: Sandbox, specs: Path) -> None:
    """A hook with content type `form` (GitHub's default through the API) starts runners too."""
    clients = sandbox.clients()
    with webhook_loop(sandbox, specs, content_type="form") as loop:
        controller, book, receiver, world = loop.controller, loop.book, loop.receiver, loop.world
        controller.reconcile("start")  # the pools are known, the idle runners start
        jobs = world.queue_jobs("platform/api", LABELS, IDLE + 2, duration=1.0)
        world.tick()
        # 4 queued deliveries, and in_progress ones for jobs the idle runners took
        assert receiver.counts["accepted"] >= len(jobs)
        assert receiver.writer is not None and receiver.writer.drain(timeout=30)
        assert receiver.writer.counts["recorded"] == receiver.counts["accepted"]
        assert all(book.job(job.job_id) is not None for job in jobs)
        cycle, _ = controller.reconcile("jobs queued")
        pending = len(book.pending_jobs(POOL, cycle.demand_pools))
        assert pending == len(world.queued) > 0  # the form deliveries are the demand
        started = clients.ecs.list_tasks(cluster="ci-runners", desiredStatus="RUNNING")
        assert len(started["taskArns"]) >= IDLE + pending  # a runner per pending job
        deadline = time.monotonic() + 90
        while not all(job.completed_at for job in jobs):
            assert time.monotonic() < deadline, f"{len(world.queued)} job(s) still queued"
            controller.reconcile("test")
            world.tick()
            time.sleep(0.3)
    assert len({job.runner for job in jobs}) == IDLE + 2


#: the pool's runner group admits platform/api only (GitHub: visibility selected)
API_ONLY = (
    "runnerGroup: Default",
    "runnerGroup: shared\n  runnerGroupAccess:\n    repositories: [platform/api]",
)


@pytest.mark.parametrize("specs", [(API_ONLY,)], indirect=True)
def test_a_runner_group_serves_and_counts_only_the_repositories_it_admits(
    sandbox: Sandbox, specs: Path
) -> None:
    """The sandbox's GitHub has the group as the specs state it: platform/api's jobs run,
    platform/e2e's (same labels, same organization) are never handed the group's runners nor
    counted as its demand, and the plan says so; a change of the group in GitHub is drift."""
    assert sandbox.github is not None
    with webhook_loop(sandbox, specs) as loop:
        controller, book, world = loop.controller, loop.book, loop.world
        controller.reconcile("start")
        api = world.queue_jobs("platform/api", LABELS, 3, duration=1.0)
        e2e = world.queue_jobs("platform/e2e", LABELS, 3, duration=1.0)
        world.tick()
        assert loop.receiver.writer is not None and loop.receiver.writer.drain(timeout=30)
        deadline = time.monotonic() + 90
        while not all(job.completed_at for job in api):
            assert time.monotonic() < deadline, f"{len(world.queued)} job(s) still queued"
            cycle, _ = controller.reconcile("test")
            pending = book.pending_jobs(POOL, cycle.demand_pools)
            assert {job.repository for job in pending} <= {"platform/api"}
            world.tick()
            time.sleep(0.3)
        cycle, _ = controller.reconcile("test")
        warnings = [n.message for n in cycle.plan.notes if n.severity == "warning"]
        assert any("3 queued job(s) of platform/e2e" in w for w in warnings), warnings
        assert not any("GitHub admits" in w or "in GitHub" in w for w in warnings), warnings
        sandbox.github.set_runner_group_access(
            "/orgs/platform", "shared", ["platform/api", "platform/web"]
        )
        assert controller.group_access is not None
        controller.group_access.ttl = 0  # read the group again in the next cycle
        cycle, _ = controller.reconcile("test")
        drift = [
            n.message for n in cycle.plan.notes if "not in the specs: platform/web" in n.message
        ]
        assert len(drift) == 1
    assert all(job.started_at is None for job in e2e)
    assert all(job.completed_at for job in api)


def test_a_controller_down_during_a_burst_loses_no_job(sandbox: Sandbox, specs: Path) -> None:
    """12 jobs queued while the controller's listener is down: every delivery fails in
    GitHub's log and GitHub does not retry; once back, the leader asks for redeliveries
    (once per event) and every job is served."""
    assert sandbox.github is not None
    clients = sandbox.clients()
    book = dynamo_book(clients)
    asks = "POST /orgs/{org}/hooks/{hook_id}/deliveries/{delivery_id}/attempts"
    with GitHubClient(sandbox.github.url, TokenAuth(SANDBOX_GITHUB_TOKEN)) as github:
        controller = demand_controller(clients, specs, github, book)

        server, receiver = listen(controller, book)
        port = int(server.address.rsplit(":", 1)[1])
        world = delivering_world(sandbox, server, hook_owner="/orgs/platform")
        assert world.hook is not None
        controller.redeliverer = Redeliverer(github, world.hook, book.store, interval=1.0)
        controller.reconcile("start")

        server.close()  # the controller is down
        receiver.close()
        jobs = [
            job
            for repository in ("platform/api", "platform/web", "platform/cli")
            for job in world.queue_jobs(repository, LABELS, 4, duration=1.0)
        ]
        world.tick()
        log = sandbox.github.hooks.hook(world.hook).deliveries  # type: ignore[union-attr]
        assert len(log) >= 12 and all(d["status_code"] == 0 for d in log)

        server, receiver = listen(controller, book, port)  # back, at the same address
        try:
            deadline = time.monotonic() + 150
            while not all(job.completed_at for job in jobs):
                assert time.monotonic() < deadline, f"{len(world.queued)} job(s) still queued"
                controller.reconcile("test")
                world.tick()
                time.sleep(0.3)
        finally:
            server.close()
            receiver.close()
        redelivered = [d for d in log if d["redelivery"]]
        failed_events = {d["guid"] for d in log if not d["redelivery"] and d["status_code"] == 0}
        # GitHub redelivered only what the leader asked for, once per failed event
        assert github.calls[asks] == len(redelivered) == len(failed_events) >= 12
    assert len({job.runner for job in jobs}) == 12
    assert world.interrupted == []
