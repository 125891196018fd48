"""A matrix burst on one organization pool with room: N queued jobs at once, how soon are
their runner tasks requested and RUNNING, and what did it cost in calls (issue 19)?

    .venv/bin/python bench/burst.py [--jobs 400] [--timeout 180]

The sandbox (moto's HTTP server, the simulated ECS agent, the simulated GitHub) holds the
platform pool alone with small tasks (256 CPU, 512 MiB: 14 a moto instance) and instances
enough for the burst from the start. The controller runs in this process as `run` runs it
(its loop and triggers, JIT runners through SSM, GitHub runner states, the demand book in
DynamoDB fed by the webhook receiver on 127.0.0.1). `GitHubWorld` queues N jobs of one
repository and POSTs their N signed `queued` deliveries one after another to `/webhook`,
then plays the runners: a task that runs reads its JIT configuration and comes online, and
takes a job (jobs last longer than the bench, so no runner exits).

Prints, from the first delivery: when the deliveries were all sent; the time to 25/50/75/100%
of the burst's N new runner tasks requested (listed by ECS) and RUNNING; the time to
25/50/75/100% of the jobs started on a runner; and the controller's RunTask calls, GitHub
calls and SSM calls during the burst. Everything listens on 127.0.0.1 only, and every wait
is bounded by `--timeout`. Exit 0 when every job started in time.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from reconciler.aws.executor import DEFAULT_BIND_WORKERS
from reconciler.controller.loop import Controller, ControllerSettings
from reconciler.controller.server import ControllerServer
from reconciler.demand import DemandBook, DynamoDemandStore, WebhookReceiver
from reconciler.demand.writer import DEFAULT_WRITERS
from reconciler.github import GitHubClient, TokenAuth
from reconciler.github.jit import JitProvisioner
from reconciler.github.limits import SecondaryLimits, WriteBudget
from reconciler.github.registry import GitHubRunnerStates
from reconciler.plan.guard import GuardPolicy
from reconciler.runners import runner_name, task_id_of
from reconciler.sandbox.runners import describe_runner_tasks, runner_task_arns
from reconciler.sandbox.scenario import (
    SANDBOX_GITHUB_TOKEN,
    WITHOUT_SIDECAR,
    Sandbox,
    platform_pool_alone,
)
from reconciler.sandbox.world import GitHubWorld

CLUSTER = "ci-runners"
GROUP = "ci-runners-linux-x64"  # behind the pool's capacity provider, linux-x64
POOL = "platform-linux-dind"
LABELS = ("self-hosted", "linux", "x64", "dind")
SECRET = b"burst-bench-secret"
IDLE = 2
TASKS_PER_INSTANCE = 14  # moto offers 7,482 MiB per instance; 512 MiB per runner
QUARTERS = (0.25, 0.5, 0.75, 1.0)


def specs_in(directory: Path, jobs: int) -> Path:
    """The example capacity providers and the platform pool alone: small tasks without a
    Docker sidecar (512 MiB is enough then), room for the burst in `max` and the
    per-repository cap."""
    ceiling = jobs + 2 * IDLE
    try:
        return platform_pool_alone(
            directory,
            (
                ("cpu: 2048", "cpu: 256"),
                ("memory: 4096", "memory: 512"),
                ("max: 40", f"max: {ceiling}"),
                ("maxPerRepository: 10", f"maxPerRepository: {ceiling}"),
                WITHOUT_SIDECAR,
            ),
        )
    except ValueError as error:
        raise SystemExit(f"burst: {error}") from None


class Sampler(threading.Thread):
    """Every `period` seconds: our runner tasks listed (requested) and RUNNING, read-only."""

    def __init__(self, sandbox: Sandbox, period: float = 0.5) -> None:
        super().__init__(name="burst-sampler", daemon=True)
        sampling = sandbox.clients(read_only=True)
        self.ecs, self.ecs_calls = sampling.ecs, sampling.calls
        self.period = period
        # (when listed, tasks listed, when described, tasks RUNNING): each time is when the
        # answer came back, so the listing's time does not wait for the describing
        self.samples: list[tuple[float, int, float, int]] = []
        self.running: set[str] = set()
        self.stop_event = threading.Event()

    def count(self) -> tuple[float, int, float, int]:
        """Tasks listed, and RUNNING, each with the time its answer came: a task seen RUNNING
        is not described again (the burst's jobs outlast the bench), so sampling loads moto
        little."""
        arns = runner_task_arns(self.ecs, CLUSTER)
        listed_at = time.monotonic()
        fresh = [arn for arn in arns if arn not in self.running]
        described = describe_runner_tasks(self.ecs, CLUSTER, fresh)
        self.running |= {t["taskArn"] for t in described if t.get("lastStatus") == "RUNNING"}
        self.running &= set(arns)
        return listed_at, len(arns), time.monotonic(), len(self.running)

    def run(self) -> None:
        while not self.stop_event.wait(self.period):
            self.samples.append(self.count())


def first_reaching(samples: Sequence[tuple[float, int]], target: float) -> float | None:
    """The first time a sampled value reached `target`, or None."""
    return next((at for at, value in samples if value >= target), None)


def quarters(times: Callable[[float], float | None], total: int) -> list[str]:
    cells = []
    for share in QUARTERS:
        at = times(math.ceil(total * share))
        cells.append("-" if at is None else f"{at:.1f}")
    return cells


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=400, help="queued deliveries (default 400)")
    parser.add_argument("--timeout", type=float, default=180.0, help="give up after (s)")
    parser.add_argument("--log", default="WARNING", help="the controller's log level")
    parser.add_argument(
        "--demand-writers",
        type=int,
        default=DEFAULT_WRITERS,
        help=f"threads storing deliveries in DynamoDB (default {DEFAULT_WRITERS}, as run)",
    )
    parser.add_argument(
        "--room",
        type=int,
        default=0,
        help="a shortfall: instances for about this many runners besides the idle ones "
        "(default 0: room for the whole burst)",
    )
    parser.add_argument(
        "--bind-workers",
        type=int,
        default=DEFAULT_BIND_WORKERS,
        help=f"as run --bind-workers (default {DEFAULT_BIND_WORKERS})",
    )
    parser.add_argument(
        "--github-write-budget",
        default="off",
        help="as run --github-write-budget (default off here: the simulated GitHub has no "
        "secondary limits; run's default is GitHub's documented 80/500)",
    )
    parser.add_argument(
        "--shared-dynamodb",
        action="store_true",
        help="DynamoDB in the same moto process as ECS (before issue 19's split: the "
        "demand writes queue behind the controller's and the runners' ECS calls)",
    )
    parser.add_argument(
        "--bind-in-cycle",
        action="store_true",
        help="each apply waits for its bindings (before this change; run binds in the "
        "background across cycles)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=args.log, format="%(relativeCreated)7.0f %(name)s %(message)s")
    for noisy in ("moto", "httpx", "reconciler.sandbox.agent"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.log.upper() == "INFO":  # and how long each cycle's inputs took
        logging.getLogger("reconciler.reconcile").setLevel(logging.DEBUG)
    warnings.simplefilter("ignore")  # moto's CloudFormation parser warns about the stack
    if not 1 <= args.jobs <= 2000:
        parser.error("--jobs must be between 1 and 2000")
    if args.demand_writers < 1:
        parser.error("--demand-writers must be at least 1")
    if not 0 <= args.room < args.jobs or args.bind_workers < 1:
        parser.error("--room must be from 0 to --jobs - 1 and --bind-workers at least 1")
    try:
        budget = WriteBudget.parse(args.github_write_budget)
    except ValueError as error:
        parser.error(str(error))
    instances = math.ceil((args.jobs + 2 * IDLE) / TASKS_PER_INSTANCE) + 1
    if args.room:
        instances = math.ceil((args.room + IDLE) / TASKS_PER_INSTANCE)
        print(f"burst: shortfall: room for {instances * TASKS_PER_INSTANCE - IDLE} runners")
    with tempfile.TemporaryDirectory() as tmp:
        specs = specs_in(Path(tmp), args.jobs)
        # moto in its own process, as AWS is: its work does not take this process's GIL;
        # DynamoDB in another, as in AWS (unless --shared-dynamodb)
        with Sandbox(
            [specs], github=True, mode="process", own_dynamodb=not args.shared_dynamodb
        ) as sandbox:
            room_for(sandbox, instances)
            settings = BurstSettings(
                args.demand_writers, args.bind_workers, budget, not args.bind_in_cycle
            )
            return run_burst(sandbox, specs, args.jobs, args.timeout, settings)


def room_for(sandbox: Sandbox, instances: int) -> None:
    """The pool's group at `instances` from the start (its stack caps it lower), registered."""
    sandbox.clients().autoscaling.update_auto_scaling_group(
        AutoScalingGroupName=GROUP, MaxSize=instances, DesiredCapacity=instances
    )
    sandbox.tick()


@dataclass(frozen=True)
class BurstSettings:
    """The controller's knobs the bench exposes (as `run` has them)."""

    writers: int
    bind_workers: int
    budget: WriteBudget | None
    background: bool  # bind across cycles, as run does


def run_burst(
    sandbox: Sandbox, specs: Path, jobs: int, timeout: float, knobs: BurstSettings
) -> int:
    assert sandbox.github is not None
    clients = sandbox.clients()  # the controller's: its calls are the ones counted
    demand_clients = sandbox.clients()  # the webhook receiver's writers
    store = DynamoDemandStore(demand_clients.client("dynamodb"))
    store.ensure_table()
    book = DemandBook(store)
    limits = SecondaryLimits(budget=knobs.budget)
    github_url = sandbox.github.url
    with GitHubClient(github_url, TokenAuth(SANDBOX_GITHUB_TOKEN), limits=limits) as github:
        settings = ControllerSettings(
            spec_paths=[specs],
            guard=GuardPolicy(max_stop_share=1.0),
            bind_workers=knobs.bind_workers,
            background_binding=knobs.background,
        )
        controller = Controller(
            settings,
            clients,
            GitHubRunnerStates(github, boot_timeout=600),
            provisioner=JitProvisioner(github, clients.client("ssm")),
            demand=book,
            github=github,
        )
        receiver = WebhookReceiver.queued(
            SECRET, book, controller.demand_pools, controller.on_job_event, writers=knobs.writers
        )
        server = ControllerServer("127.0.0.1", 0, controller.status, lambda: True, None, receiver)
        server.start()
        loop = threading.Thread(target=controller.run, name="controller", daemon=True)
        world_clients = sandbox.clients()  # the simulated runners' (their ECS and SSM calls)
        world = GitHubWorld(
            sandbox.github, world_clients, [CLUSTER], f"http://{server.address}/webhook", SECRET
        )
        sampler = Sampler(sandbox)
        try:
            loop.start()
            deadline = time.monotonic() + timeout
            warm = time.monotonic() + 60
            while len(world._runners) < IDLE:  # the warm pool is up (read as older code has it)
                if time.monotonic() > warm:
                    raise SystemExit("burst: the idle runners never came online")
                world.tick()
                time.sleep(0.2)
            baseline = sampler.count()[1]
            aws_before, github_before = clients.calls.snapshot(), github.calls.total()
            others_before = [c.calls.total() for c in (demand_clients, world_clients)]
            demand_before = demand_clients.calls.snapshot()
            sampler_before = sampler.ecs_calls.total()
            sampler.start()
            began, began_wall = time.monotonic(), world.clock()
            queued = world.queue_jobs("platform/monorepo", LABELS, jobs, duration=3600)
            world.tick()  # POSTs the N deliveries, one after another
            delivered = time.monotonic() - began
            while not all(job.started_at for job in queued):
                if time.monotonic() > deadline:
                    break
                world.tick()
                time.sleep(0.1)
            sampler.stop_event.set()
            sampler.join()
            aws_after, github_after = clients.calls.snapshot(), github.calls.total()
            others = [
                c.calls.total() - before
                for c, before in zip((demand_clients, world_clients), others_before, strict=True)
            ]
            demand_after = demand_clients.calls.snapshot()
            others.append(sampler.ecs_calls.total() - sampler_before)
        finally:
            controller.stop()
            loop.join(timeout=30)
            server.close()
            receiver.close()

    listed = [(at - began, n - baseline) for at, n, _, _ in sampler.samples]
    running = [(at - began, n - baseline) for _, _, at, n in sampler.samples]
    started = sorted(job.started_at - began_wall for job in queued if job.started_at)

    def job_time(count: float) -> float | None:
        return started[int(count) - 1] if 0 < count <= len(started) else None

    calls = {k: aws_after.get(k, 0) - aws_before.get(k, 0) for k in aws_after}
    ssm = {k: v for k, v in calls.items() if k.startswith("ssm:") and v}
    print(f"burst: {jobs} queued jobs, {jobs} deliveries sent in {delivered:.1f}s")
    print("seconds from the first delivery | 25% | 50% | 75% | 100%")
    print(
        "tasks requested (listed)        | "
        + " | ".join(quarters(lambda n: first_reaching(listed, n), jobs))
    )
    print(
        "tasks RUNNING                   | "
        + " | ".join(quarters(lambda n: first_reaching(running, n), jobs))
    )
    print("jobs started on a runner        | " + " | ".join(quarters(job_time, jobs)))
    print(
        f"calls: RunTask {calls.get('ecs:RunTask', 0)}, GitHub {github_after - github_before}, "
        f"SSM {sum(ssm.values())} ({', '.join(f'{k[4:]} {v}' for k, v in sorted(ssm.items()))})"
        f", controller cycles {controller.cycles}"
    )
    demand = {k: v - demand_before.get(k, 0) for k, v in demand_after.items()}
    print(
        f"moto requests during the burst: controller {sum(calls.values())} "
        f"({', '.join(f'{k} {v}' for k, v in sorted(calls.items()) if v)}), demand store "
        f"{others[0]} ({', '.join(f'{k[9:]} {v}' for k, v in sorted(demand.items()) if v)}), "
        f"simulated runners {others[1]}, this bench's sampler {others[2]} "
        "(the simulated ECS agent's not counted)"
    )
    print(
        f"controller: {knobs.bind_workers} bind workers "
        f"({'in the background' if knobs.background else 'each apply waits'}), "
        "GitHub write budget "
        f"{knobs.budget or 'off'}; {leftovers(sandbox, world)}"
    )
    missing = jobs - len(started)
    if missing:
        print(
            f"burst: {missing} job(s) not started within {timeout:.0f}s; runners online "
            f"{len(world._runners)}, busy {world.busy_runners}, tasks waiting for their "
            f"parameter {len(world._waiting)}, exited {len(world._done)}"
        )
        pools = controller.status.to_json().get("pools", {})
        print(f"burst: the controller's last view: {json.dumps(pools, default=str)[:600]}")
    return 0 if not missing else 1


def leftovers(sandbox: Sandbox, world: GitHubWorld) -> str:
    """Registrations and JIT parameters of no running task (what a shortfall must not leave)."""
    assert sandbox.github is not None
    ecs = sandbox.clients(read_only=True).ecs
    arns = runner_task_arns(ecs, CLUSTER)
    running = {task_id_of(arn) for arn in arns}
    names = [r["name"] for r in sandbox.github.runners("/orgs/platform")]
    orphans = set(names) - {runner_name(POOL, arn) for arn in arns}
    ssm = sandbox.clients(read_only=True).client("ssm")
    pages = ssm.get_paginator("get_parameters_by_path").paginate(
        Path="/ecs-reconciler/jit", Recursive=True
    )
    parameters = [p["Name"] for page in pages for p in page["Parameters"]]
    stray = [p for p in parameters if p.rsplit("/", 1)[-1] not in running]
    created = sum(1 for m, p in sandbox.github.request_log if m == "POST" and "jitconfig" in p)
    return (
        f"registrations {len(names)} ({len(orphans)} of no running task), JIT parameters "
        f"left {len(parameters)} ({len(stray)} of no running task), JIT configurations "
        f"created {created}"
    )


if __name__ == "__main__":
    sys.exit(main())
