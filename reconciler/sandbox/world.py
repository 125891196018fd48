"""The sandbox's simulated GitHub world: jobs are queued, runner tasks come alive, work, exit.

`GitHubWorld` plays GitHub and the runner image around a real controller:

- **runners boot**: a runner task of ours that ECS (moto) runs finds its JIT parameter from
  its task id (`RUNNER_JIT_PARAMETER_PREFIX/<task id>`; the controller binds a task to its
  runner only after ECS placed it), waits for it at most `jit_wait` seconds, reads it,
  deletes it, and comes online in `FakeGitHub` as the runner it was registered as, just as
  `deploy/runner-image/entrypoint.sh` does (a task that waited in vain exits);
- **jobs**: `queue_jobs` queues jobs for a repository; each tick GitHub assigns queued jobs,
  oldest first, to idle online runners whose labels cover the job's and whose scope
  (enterprise, organization, repository) includes the repository; the runner is busy for the
  job's duration, then finishes: GitHub removes the ephemeral runner and its task exits;
- **webhooks**: every state change is sent once, as a signed `workflow_job` delivery, through
  a hook of the simulated GitHub (the App's by default) to the controller's `/webhook`. As on
  GitHub, a delivery that fails (no connection, an error status, over 10 s) is logged as
  failed and not retried: only a redelivery asked through the deliveries API sends it again.

It also keeps the evidence tests check: jobs whose runner's task was stopped mid-job
(`interrupted`), and every JIT configuration a runner read (`jit_configs`), to prove none
leaked into ECS or the logs. `BurstTraffic` queues bursts of jobs for the demo.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import itertools
import json
import logging
import random
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..aws.clients import AwsClients
from ..aws.observe import tag_dict
from ..clock import WallClock, wall_time
from ..github.jit import PARAMETER_ENVIRONMENT, PARAMETER_PREFIX_ENVIRONMENT
from ..github.registry import scope_of_tag
from ..plan.state import SCOPE_TAG
from ..spec.loader import SpecSet
from . import payloads
from .github_server import FakeGitHub
from .runners import describe_runner_tasks, runner_task_arns

log = logging.getLogger(__name__)


@dataclass
class SimulatedJob:
    """One workflow job and what happened to it (times are epoch seconds)."""

    job_id: int
    repository: str  # owner/name
    labels: tuple[str, ...]
    duration: float
    created_at: float
    started_at: float | None = None
    completed_at: float | None = None
    runner: str | None = None
    runner_id: int | None = None
    runner_group: tuple[int, str] | None = None
    request_id: int | None = None  # the runner request, when a scale set got the job

    @property
    def organization(self) -> str:
        """The repository's owner."""
        return self.repository.split("/", 1)[0]

    @property
    def queue_wait(self) -> float | None:
        """Seconds from queued to started, once started."""
        return None if self.started_at is None else self.started_at - self.created_at


@dataclass
class _Runner:
    task_arn: str
    cluster: str
    scope_kind: str
    scope_name: str
    scope_path: str
    name: str
    labels: frozenset[str]
    runner_id: int
    group: tuple[int, str]
    job: SimulatedJob | None = None
    scale_set_id: int | None = None  # a scale set's runner: the Actions service assigns its job
    # (repository, organization) -> whether the runner's group admits the job (GitHub's rule)
    admits: Callable[[str, str], bool] = lambda repository, organization: True

    def serves(self, job: SimulatedJob) -> bool:
        if self.scale_set_id is not None or job.request_id is not None:
            return False  # scale sets and their runners: GitHub's Actions service assigns
        if not {label.lower() for label in job.labels} <= self.labels:
            return False
        if not self.admits(job.repository, job.organization):
            return False  # its runner group does not admit the repository
        if self.scope_kind == "organization":
            return job.organization.lower() == self.scope_name.lower()
        if self.scope_kind == "repository":
            return job.repository.lower() == self.scope_name.lower()
        return True


@dataclass
class GitHubWorld:
    """GitHub's job queue and the runners inside sandbox tasks; advance it with `tick()`."""

    github: FakeGitHub
    clients: AwsClients
    clusters: Sequence[str]
    webhook_url: str | None
    secret: bytes
    clock: WallClock = wall_time
    content_type: str = "json"  # the hook's content type: json | form (payload=<urlencoded>)
    hook_owner: str | None = None  # the hook's owner: None (the GitHub App), /orgs/x, /repos/o/r
    runner_version: str = "2.328.0"  # what runners report when they connect
    jit_wait: float = 120.0  # how long a runner waits for its JIT parameter (the image's default)
    jobs: dict[int, SimulatedJob] = field(default_factory=dict)
    interrupted: list[SimulatedJob] = field(default_factory=list)
    jit_configs: list[str] = field(default_factory=list)
    _runners: dict[str, _Runner] = field(default_factory=dict)
    _done: set[str] = field(default_factory=set)
    _waiting: dict[str, float] = field(default_factory=dict)  # task ARN -> first wait
    _next_look: dict[str, float] = field(default_factory=dict)  # task ARN -> next look
    _described: dict[str, dict[str, Any]] = field(default_factory=dict)  # RUNNING, by ARN
    _ssm: Any = None  # one client for every runner's SSM calls (creating one takes ~50 ms)
    _outbox: deque[dict[str, Any]] = field(default_factory=deque)
    hook: str | None = None  # the API path of the hook deliveries go through
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1001))

    def __post_init__(self) -> None:
        if self.webhook_url is not None:
            self.hook = self.github.add_hook(
                self.webhook_url,
                self.secret,
                owner=self.hook_owner,
                content_type=self.content_type,
            )

    # ------------------------------------------------------------------ inputs

    def queue_jobs(
        self, repository: str, labels: Sequence[str], count: int = 1, duration: float = 5.0
    ) -> list[SimulatedJob]:
        """Queue `count` jobs of one repository (one `queued` delivery each)."""
        now = self.clock()
        queued = []
        for _ in range(count):
            job = SimulatedJob(next(self._ids), repository, tuple(labels), duration, now)
            self.jobs[job.job_id] = job
            self._route_to_scale_set(job)
            self._send("queued", job)
            queued.append(job)
        return queued

    def cancel(self, jobs: Sequence[SimulatedJob]) -> None:
        """Cancel jobs still queued (a `completed` delivery, conclusion cancelled)."""
        for job in jobs:
            if job.started_at is None and job.completed_at is None:
                job.completed_at = self.clock()
                self._send("completed", job)

    # ------------------------------------------------------------------ time passes

    def tick(self) -> None:
        """Runners boot, jobs finish, queued jobs are assigned, webhooks are delivered."""
        self._observe_tasks()
        self._finish_jobs()
        for job in self.queued:
            if job.request_id is None:
                self._route_to_scale_set(job)  # a scale set created since the job queued
        self._start_scale_set_jobs()
        self._assign_jobs()
        self._deliver()

    def _route_to_scale_set(self, job: SimulatedJob) -> None:
        """GitHub gives a job to a scale set whose labels cover the job's and whose scope
        includes the repository (repository, then organization, then enterprise)."""
        actions = self.github.actions
        scopes = [f"/repos/{job.repository}", f"/orgs/{job.organization}"]
        scopes += sorted(
            {s["scope"] for s in actions.scale_sets() if s["scope"].startswith("/enterprises/")}
        )
        for scope in scopes:
            request_id = actions.queue_job(scope, list(job.labels), job.repository, job.job_id)
            if request_id is not None:
                job.request_id = request_id
                return

    def _start_scale_set_jobs(self) -> None:
        """Jobs the Actions service gave to one of our scale-set runners start."""
        by_name = {r.name: r for r in self._runners.values() if r.scale_set_id is not None}
        waiting = {j.request_id: j for j in self.queued if j.request_id is not None}
        for entry in self.github.actions.jobs("running"):
            job = waiting.get(entry["request_id"])
            runner = by_name.get(entry["runner_name"])
            if job is None or runner is None or runner.job is not None:
                continue
            runner.job = job
            job.started_at, job.runner = self.clock(), runner.name
            job.runner_id, job.runner_group = runner.runner_id, runner.group
            self.github.set_runner_status(runner.scope_path, runner.name, "online", busy=True)
            self._send("in_progress", job)

    @property
    def queued(self) -> list[SimulatedJob]:
        """Jobs waiting for a runner, oldest first."""
        return sorted(
            (job for job in self.jobs.values() if job.started_at is None and not job.completed_at),
            key=lambda job: (job.created_at, job.job_id),
        )

    @property
    def online_runners(self) -> int:
        """Runners online (idle or busy) in the world's tasks."""
        return len(self._runners)

    @property
    def busy_runners(self) -> int:
        """Runners running a job now."""
        return sum(1 for runner in self._runners.values() if runner.job is not None)

    def _observe_tasks(self) -> None:
        """Our tasks RUNNING: listed every tick, described only until seen RUNNING (a task
        keeps its tags and environment; describing hundreds every tick would load moto)."""
        running: dict[str, dict[str, Any]] = {}
        for cluster in self.clusters:
            arns = runner_task_arns(self.clients.ecs, cluster)
            fresh = [arn for arn in arns if arn not in self._described]
            for task in describe_runner_tasks(self.clients.ecs, cluster, fresh):
                if task.get("lastStatus") == "RUNNING":
                    self._described[task["taskArn"]] = task
            running.update((arn, self._described[arn]) for arn in arns if arn in self._described)
        self._described = {arn: task for arn, task in self._described.items() if arn in running}
        for arn, runner in list(self._runners.items()):
            if arn not in running:  # the task stopped under its runner
                del self._runners[arn]
                self._done.add(arn)
                if runner.job is not None and runner.job.completed_at is None:
                    log.error("job %s lost: task %s stopped mid-job", runner.job.job_id, arn)
                    self.interrupted.append(runner.job)
                with contextlib.suppress(KeyError):  # deregistered first when we stopped it
                    self.github.set_runner_status(runner.scope_path, runner.name, "offline", False)
                if runner.scale_set_id is not None:
                    self.github.actions.runner_gone(runner.name)
        registered: dict[str, dict[str, Any]] = {}  # by scope, read once this tick
        for arn, task in running.items():
            if arn not in self._runners and arn not in self._done:
                self._boot(task, registered)

    def _boot(self, task: dict[str, Any], registered_by_scope: dict[str, dict[str, Any]]) -> None:
        """The runner image's entrypoint: find the JIT config by task id (waiting for it,
        bounded), delete it, come online."""
        environment = _environment(task)
        parameter = environment.get(PARAMETER_ENVIRONMENT)
        if parameter is None and PARAMETER_PREFIX_ENVIRONMENT in environment:
            task_id = task["taskArn"].rsplit("/", 1)[-1]  # from the task metadata endpoint
            parameter = f"{environment[PARAMETER_PREFIX_ENVIRONMENT]}/{task_id}"
        scope = scope_of_tag(tag_dict(task.get("tags")).get(SCOPE_TAG, ""))
        if parameter is None or scope is None:
            self._done.add(task["taskArn"])  # not a JIT runner: nothing to simulate
            return
        if self.clock() < self._next_look.get(task["taskArn"], 0.0):
            return  # the entrypoint looks once a second
        self._next_look[task["taskArn"]] = self.clock() + 1.0
        if self._ssm is None:
            self._ssm = self.clients.client("ssm")
        ssm = self._ssm
        try:
            value = ssm.get_parameter(Name=parameter, WithDecryption=True)["Parameter"]["Value"]
        except ssm.exceptions.ParameterNotFound:
            waited = self.clock() - self._waiting.setdefault(task["taskArn"], self.clock())
            if waited < self.jit_wait:
                return  # not bound yet: look again at the next tick
            log.warning(
                "task %s: JIT parameter %s missing after %.0fs; runner exits",
                task["taskArn"],
                parameter,
                waited,
            )
            self._stop(task["clusterArn"], task["taskArn"], "runner exited: no JIT configuration")
            self._done.add(task["taskArn"])
            self._waiting.pop(task["taskArn"], None)
            return
        self._waiting.pop(task["taskArn"], None)
        self._next_look.pop(task["taskArn"], None)
        ssm.delete_parameter(Name=parameter)
        self.jit_configs.append(value)
        config = json.loads(base64.b64decode(value))
        name = config["name"]
        registered = registered_by_scope.get(scope.path, {})
        if name not in registered:  # read once a tick (a copy of every runner), or when
            # registered since: bound while this tick ran
            registered = {r["name"]: r for r in self.github.runners(scope.path)}
            registered_by_scope[scope.path] = registered
        if name not in registered:  # deregistered before it booted: the runner cannot start
            log.warning("task %s: runner %s is not registered; runner exits", task["taskArn"], name)
            self._stop(task["clusterArn"], task["taskArn"], "runner exited: registration gone")
            self._done.add(task["taskArn"])
            return
        self.github.set_runner_status(scope.path, name, "online", False, self.runner_version)
        runner = registered[name]
        labels = frozenset(label["name"].lower() for label in runner["labels"])
        group_id = int(runner["runner_group_id"])
        self._runners[task["taskArn"]] = _Runner(
            task["taskArn"],
            task["clusterArn"],
            scope.kind,
            scope.name,
            scope.path,
            name,
            labels,
            int(runner["id"]),
            (group_id, self.github.runner_group_name(scope.path, group_id)),
            scale_set_id=config.get("scale_set_id"),
            admits=functools.partial(self.github.runner_group_admits, scope.path, group_id),
        )
        if config.get("scale_set_id") is not None:
            self.github.actions.runner_connected(name)  # may take an acquired job at once

    def _finish_jobs(self) -> None:
        now = self.clock()
        for runner in list(self._runners.values()):
            job = runner.job
            if job is None or job.started_at is None or now < job.started_at + job.duration:
                continue
            job.completed_at = now
            self._send("completed", job)
            if job.request_id is not None:
                self.github.actions.complete_job(job.request_id)  # JobCompleted; runner gone
            self.github.remove_runner(runner.scope_path, runner.name)  # ephemeral: gone
            self._stop(runner.cluster, runner.task_arn, "Essential container in task exited")
            del self._runners[runner.task_arn]
            self._done.add(runner.task_arn)

    def _assign_jobs(self) -> None:
        online = {
            runner["name"]
            for path in {r.scope_path for r in self._runners.values()}
            for runner in self.github.runners(path)
            if runner["status"] == "online"
        }
        for job in self.queued:
            runner = next(
                (
                    r
                    for r in sorted(self._runners.values(), key=lambda r: r.name)
                    if r.job is None and r.name in online and r.serves(job)
                ),
                None,
            )
            if runner is None:
                continue
            runner.job = job
            job.started_at, job.runner = self.clock(), runner.name
            job.runner_id, job.runner_group = runner.runner_id, runner.group
            self.github.set_runner_status(runner.scope_path, runner.name, "online", busy=True)
            self._send("in_progress", job)

    def _stop(self, cluster: str, task_arn: str, reason: str) -> None:
        self.clients.ecs.stop_task(cluster=cluster, task=task_arn, reason=reason)

    # ------------------------------------------------------------------ webhooks

    def _send(self, action: str, job: SimulatedJob) -> None:
        conclusion = None
        if action == "completed":
            conclusion = "success" if job.started_at else "cancelled"
        payload = payloads.workflow_job_payload(
            action,
            job_id=job.job_id,
            repository_name=job.repository,
            labels=list(job.labels),
            created_at=job.created_at,
            started_at=job.started_at,
            completed_at=job.completed_at,
            runner_name=job.runner,
            runner_id=job.runner_id,
            runner_group=job.runner_group,
            conclusion=conclusion,
        )
        self.github.set_job(job.repository, payload["workflow_job"])
        self._outbox.append(payload)

    def _deliver(self) -> None:
        """Send each pending delivery once, in order; a failure stays in GitHub's log."""
        if self.hook is None:
            self._outbox.clear()  # no hook configured: GitHub sends nothing
        while self._outbox and self.hook is not None:
            payload = self._outbox.popleft()
            delivery = self.github.send_webhook(self.hook, "workflow_job", payload)
            if not 200 <= delivery["status_code"] < 300:
                log.warning(
                    "delivery %s (job %s %s) failed: %s",
                    delivery["id"],
                    payload["workflow_job"]["id"],
                    payload["action"],
                    delivery["status"],
                )


class BurstTraffic:
    """Demo load: every `period` seconds, a burst of jobs for each pool, across repositories."""

    def __init__(
        self,
        world: GitHubWorld,
        spec_set: SpecSet,
        period: float = 60.0,
        seed: int = 7,
    ) -> None:
        self.world = world
        self.period = period
        self.random = random.Random(seed)
        self.targets = [
            (repository, tuple(pool.spec.labels))
            for pool in spec_set.pools
            for repository in _repositories(pool.spec.scope.kind, pool.spec.scope.target)
        ]
        self._next = world.clock() + 5.0

    def tick(self) -> int:
        """Queue the next burst when it is due; returns the jobs queued."""
        if self.world.clock() < self._next:
            return 0
        self._next += self.period
        queued = 0
        for repository, labels in self.targets:
            count = self.random.randint(0, 2)
            for _ in range(count):
                self.world.queue_jobs(repository, labels, duration=self.random.uniform(5, 20))
            queued += count
        return queued


def _repositories(kind: str, target: str) -> list[str]:
    if kind == "repository":
        return [target]
    owner = target if kind == "organization" else "acme"
    return [f"{owner}/api", f"{owner}/web", f"{owner}/monorepo"]


def _environment(task: dict[str, Any]) -> dict[str, str]:
    overrides = task.get("overrides", {}).get("containerOverrides", [])
    return {
        variable["name"]: variable["value"]
        for override in overrides
        for variable in override.get("environment", [])
    }
