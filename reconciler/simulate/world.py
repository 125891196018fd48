"""The simulated world: a clock and event queue, EC2 instances, ECS runner tasks, GitHub jobs.

A discrete-event model (heapq, simulated epoch seconds, nothing sleeps). What it models:

- EC2 / ECS: an instance is launched, boots and registers its agent, then offers its CPU and
  memory; a runner task waits in PROVISIONING until an instance of its capacity provider has
  room (binpack placement), pulls its image (cold on an instance that never ran the pool,
  warm after), starts, and its runner registers with GitHub. A stopped task frees its room
  after a short delay. Instances are terminated only when empty.
- Spot (with `spot_share` and `spot_interruptions_per_hour`): a spot instance may get an
  interruption notice; ECS spot draining sets it DRAINING at once (nothing new is placed on
  it, `Policy.instance_interrupted` tells the policy), and EC2 reclaims it `spot_notice_s`
  later: its runners die, and a job running on one fails (GitHub's `completed`, conclusion
  failure; re-running it is left to people, not modelled: it counts as interrupted).
- GitHub: a job is queued at its trace arrival; an idle registered runner whose pool serves it
  (labels and scope, `PoolDemandSpec.serves`) takes the oldest waiting job it can serve (FIFO,
  an assumption: GitHub does not document the order); the job runs for its trace run time; the
  ephemeral runner exits and its task stops. A job no runner took within
  `queued_job_timeout_s` (24 h, GitHub's limit for self-hosted runners) is cancelled: it
  completes without running (`Job.cancelled`) and is reported as never started.

Policies (`policies`) decide when to start or stop runners and instances through the
methods marked "policy API"; the world enforces the invariants (a busy runner is never
stopped, an instance with tasks is never terminated, a runner runs one job).
"""

from __future__ import annotations

import datetime
import heapq
import itertools
import random
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..demand import JobRecord, PoolDemandSpec
from ..plan.capacity import pack
from ..spec.models import RunnerPool, Scaling
from .parameters import InstanceType, SimulationParameters
from .trace import TraceJob


@dataclass(frozen=True)
class SimPool:
    """A runner pool as the world needs it: who it serves, task size, where it runs."""

    name: str
    demand: PoolDemandSpec
    cpu: int
    memory: int
    capacity_provider: str
    scaling: Scaling
    spec: RunnerPool

    @classmethod
    def of(cls, pool: RunnerPool) -> SimPool:
        """From a RunnerPool spec."""
        return cls(
            name=pool.metadata.name,
            demand=PoolDemandSpec.of(pool),
            cpu=pool.spec.resources.cpu,
            memory=pool.spec.resources.memory,
            capacity_provider=pool.spec.capacity_provider,
            scaling=pool.spec.scaling,
            spec=pool,
        )


@dataclass(eq=False)
class Instance:
    """An EC2 instance (container instance once `ready`)."""

    id: int
    provider: str
    type: InstanceType
    launched: float
    runner_startup_s: float | None = None  # set: a dedicated instance whose boot includes it
    ready: bool = False
    terminated: float | None = None
    free_cpu: int = 0
    free_memory: int = 0
    tasks: set[Runner] = field(default_factory=set)
    images: set[str] = field(default_factory=set)  # pools whose image is cached here
    empty_since: float = 0.0
    draining: bool = False  # a spot interruption notice came: nothing new is placed here

    def fits(self, pool: SimPool) -> bool:
        """Room for one more task of the pool."""
        return self.free_cpu >= pool.cpu and self.free_memory >= pool.memory


@dataclass(eq=False)
class Runner:
    """A runner task: provisioning -> starting -> idle -> busy -> stopping -> stopped."""

    id: int
    pool: SimPool
    requested: float
    state: str = "provisioning"
    instance: Instance | None = None
    job: Job | None = None
    registered: float | None = None
    idle_since: float = 0.0

    @property
    def arn(self) -> str:
        """The ECS task ARN the planner sees."""
        return f"arn:aws:ecs:sim:000000000000:task/{self.pool.spec.spec.cluster}/{self.id:012d}"


@dataclass(eq=False)
class Job:
    """A trace job in the simulation."""

    trace: TraceJob
    pool: SimPool | None  # the most specific pool serving it (None: no pool can)
    key: tuple[Any, ...]  # which waiting line it stands in (labels, organization, repository)
    started: float | None = None
    completed: float | None = None
    runner: Runner | None = None
    interrupted: bool = False  # its runner's spot instance was reclaimed: the job failed
    cancelled: bool = False  # queued for 24 h without a runner: GitHub cancelled it

    @property
    def record(self) -> JobRecord:
        """The job as `PoolDemandSpec.serves` reads it."""
        event = self.trace.event
        return JobRecord(
            event.job_id,
            "queued",
            event.repository,
            event.organization,
            event.labels,
            event.created_at,
            event.created_at,
        )


class Policy:
    """A scaling policy: reacts to world events through the world's policy API."""

    name = "policy"
    #: instances it launches pull the runner images while they boot (the stack's user data
    #: does, deploy/cloudformation), so room on a new instance is warm: no cold pull
    prepulls_images = False

    def attach(self, world: World) -> None:
        """Called once before the first event: schedule timers, create the initial fleet."""

    def job_queued(self, job: Job) -> None:
        """A job was queued (the `queued` webhook is sent now)."""

    def job_started(self, job: Job) -> None:
        """A job was assigned to a runner and started (`in_progress`)."""

    def job_completed(self, job: Job) -> None:
        """A job finished (`completed`); its runner exits."""

    def runner_stopped(self, runner: Runner) -> None:
        """A runner task stopped and freed its room."""

    def instance_ready(self, instance: Instance) -> None:
        """An instance registered with ECS."""

    def instance_interrupted(self, instance: Instance) -> None:
        """A spot instance got its interruption notice and is DRAINING (reclaimed soon)."""

    def instance_reclaimed(self, instance: Instance) -> None:
        """EC2 reclaimed an interrupted spot instance; its runners died with it."""


@dataclass
class Totals:
    """Accumulated runner and instance seconds, and the time series samples."""

    busy_s: float = 0.0
    idle_s: float = 0.0
    idle_s_by_pool: dict[str, float] = field(default_factory=dict)
    starting_s: float = 0.0
    instance_s: float = 0.0
    vcpu_s: float = 0.0
    usd: float = 0.0  # instance cost (SimulationParameters.usd_per_hour)
    runners_started: int = 0
    instances_launched: int = 0
    spot_interruptions: int = 0  # spot instances reclaimed
    jobs_interrupted: int = 0  # jobs that failed because their instance was reclaimed
    idle_reclaimed: int = 0  # idle runners still on an instance when it was reclaimed
    # (time, queued jobs, runners, busy runners, instances)
    samples: list[tuple[float, int, int, int, int]] = field(default_factory=list)


class World:
    """The simulated ECS cluster(s) and GitHub, replaying one trace under one policy."""

    def __init__(
        self,
        jobs: Iterable[TraceJob],
        pools: Iterable[SimPool],
        policy: Policy,
        parameters: SimulationParameters,
        progress: Callable[[float], None] | None = None,
    ) -> None:
        self.parameters = parameters
        self.policy = policy
        self.pools = {pool.name: pool for pool in pools}
        # most specific first: the demand book's rule, and the order idle runners are offered
        self.ordered_pools = sorted(
            self.pools.values(), key=lambda p: (len(p.demand.labels), p.name)
        )
        self.jobs = [self._job(trace) for trace in jobs]
        self.now = self.jobs[0].trace.arrival if self.jobs else 0.0
        self.start = self.now
        self.totals = Totals()
        self.runners: dict[int, Runner] = {}  # alive (not stopped)
        self.instances: dict[int, Instance] = {}  # not terminated
        self.unplaced: dict[str, deque[Runner]] = {}  # per capacity provider, FIFO
        self.waiting: dict[tuple[Any, ...], deque[Job]] = {}  # per key, FIFO
        self.waiting_count = 0
        self.completed = 0
        self._idle: dict[str, dict[Runner, None]] = {name: {} for name in self.pools}
        self._serves: dict[str, set[tuple[Any, ...]]] = {name: set() for name in self.pools}
        self._queue: list[tuple[float, int, Callable[..., object], tuple[Any, ...]]] = []
        self._sequence = itertools.count()
        self._ids = itertools.count(1)
        self._progress = progress
        self._spot_dice = random.Random(parameters.spot_seed)

    # ------------------------------------------------------------------ clock

    def at(self, moment: float, action: Callable[..., object], *args: Any) -> None:
        """Run `action(*args)` at simulated time `moment` (not before now)."""
        heapq.heappush(self._queue, (max(moment, self.now), next(self._sequence), action, args))

    def every(self, period: float, action: Callable[[], None], first: float | None = None) -> None:
        """Run `action()` every `period` seconds while jobs remain."""

        def tick() -> None:
            action()
            if not self.done:
                self.at(self.now + period, tick)

        self.at(self.now if first is None else first, tick)

    def datetime(self) -> datetime.datetime:
        """The simulated time as an aware UTC datetime."""
        return datetime.datetime.fromtimestamp(self.now, datetime.UTC)

    @property
    def done(self) -> bool:
        """Every job has completed."""
        return self.completed == len(self.jobs)

    def run(self) -> Totals:
        """Replay the whole trace; returns the accumulated figures."""
        for job in self.jobs:
            if job.pool is None:
                self.completed += 1  # no pool can ever run it: reported, not simulated
            else:
                self.at(job.trace.arrival, self._arrive, job)
        self.policy.attach(self)
        self.every(self.parameters.sample_s, self._sample)
        next_report = self.now
        while self._queue and not self.done:
            moment, _, action, args = heapq.heappop(self._queue)
            self.now = moment
            action(*args)
            if self._progress is not None and moment >= next_report:
                self._progress(moment)
                next_report = moment + 3600
        self._close_books()
        return self.totals

    def _close_books(self) -> None:
        for runner in self.runners.values():
            self._account_runner(runner)
        for instance in self.instances.values():
            self._account_instance(instance)

    def _sample(self) -> None:
        busy = sum(1 for r in self.runners.values() if r.state == "busy")
        self.totals.samples.append(
            (self.now, self.waiting_count, len(self.runners), busy, len(self.instances))
        )

    # ------------------------------------------------------------------ GitHub

    def _job(self, trace: TraceJob) -> Job:
        event = trace.event
        key = (
            frozenset(label.lower() for label in event.labels),
            event.organization.lower(),
            event.repository.lower(),
        )
        job = Job(trace, None, key)
        job.pool = next((p for p in self.ordered_pools if p.demand.serves(job.record)), None)
        return job

    def _arrive(self, job: Job) -> None:
        line = self.waiting.get(job.key)
        if line is None:
            line = self.waiting[job.key] = deque()
            record = job.record
            for pool in self.pools.values():
                if pool.demand.serves(record):
                    self._serves[pool.name].add(job.key)
        line.append(job)
        self.waiting_count += 1
        self.at(self.now + self.parameters.queued_job_timeout_s, self._cancel_if_queued, job)
        self.policy.job_queued(job)
        for pool in self.ordered_pools:
            if job.key in self._serves[pool.name] and self._idle[pool.name]:
                runner = next(iter(self._idle[pool.name]))  # the longest idle
                self._dispatch(runner, job)
                return

    def _cancel_if_queued(self, job: Job) -> None:
        """GitHub cancels a job still queued at its timeout (`completed`, never started)."""
        if job.runner is not None or job.completed is not None:
            return
        self.waiting[job.key].remove(job)
        self.waiting_count -= 1
        job.cancelled, job.completed = True, self.now
        self.completed += 1
        self.policy.job_completed(job)

    def _oldest_waiting(self, pool: SimPool) -> Job | None:
        heads = (self.waiting[key] for key in self._serves[pool.name])
        return min(
            (line[0] for line in heads if line),
            key=lambda job: (job.trace.arrival, job.trace.job_id),
            default=None,
        )

    def _dispatch(self, runner: Runner, job: Job) -> None:
        """GitHub hands the job to the runner; it starts after the dispatch delay."""
        self.waiting[job.key].remove(job)
        self.waiting_count -= 1
        self._leave_idle(runner)
        runner.state, runner.job, job.runner = "busy", job, runner
        self.at(self.now + self.parameters.job_dispatch_s, self._start_job, job)

    def _start_job(self, job: Job) -> None:
        if job.interrupted:
            return
        job.started = self.now
        self.policy.job_started(job)
        self.at(self.now + job.trace.run_time, self._complete_job, job)

    def _complete_job(self, job: Job) -> None:
        if job.interrupted:
            return  # failed when its instance was reclaimed
        job.completed = self.now
        self.completed += 1
        self.totals.busy_s += job.trace.run_time
        self.policy.job_completed(job)
        runner = job.runner
        assert runner is not None
        self._begin_stop(runner)

    def _runner_online(self, runner: Runner) -> None:
        if runner.state != "starting":
            return
        runner.registered = self.now
        self.totals.starting_s += self.now - runner.requested
        job = self._oldest_waiting(runner.pool)
        if job is not None:
            self._dispatch(runner, job)
        else:
            runner.state, runner.idle_since = "idle", self.now
            self._idle[runner.pool.name][runner] = None

    def _leave_idle(self, runner: Runner) -> None:
        if runner.state == "idle":
            self._add_idle(runner)
            del self._idle[runner.pool.name][runner]

    def _add_idle(self, runner: Runner) -> None:
        seconds, totals = self.now - runner.idle_since, self.totals
        totals.idle_s += seconds
        totals.idle_s_by_pool[runner.pool.name] = (
            totals.idle_s_by_pool.get(runner.pool.name, 0.0) + seconds
        )

    # ------------------------------------------------------------------ ECS (policy API)

    def idle_runners(self, pool: str) -> list[Runner]:
        """The pool's idle registered runners, longest idle first."""
        return list(self._idle[pool])

    def pool_runners(self, pool: str) -> list[Runner]:
        """The pool's runner tasks that ECS still wants running (not stopping)."""
        return [r for r in self.runners.values() if r.pool.name == pool and r.state != "stopping"]

    def request_runner(self, pool: SimPool, instance: Instance | None = None) -> Runner:
        """RunTask for one runner of the pool (on `instance` when it is dedicated to it)."""
        runner = Runner(next(self._ids), pool, self.now)
        self.runners[runner.id] = runner
        self.totals.runners_started += 1
        if instance is not None:
            instance.tasks.add(runner)
            runner.instance = instance
            if instance.ready:
                self._place(runner, instance)
            return runner
        candidates = [
            i
            for i in self.instances.values()
            if i.ready and not i.draining and i.provider == pool.capacity_provider and i.fits(pool)
        ]
        if candidates:  # binpack: the fullest instance that still fits
            self._place(runner, min(candidates, key=lambda i: (i.free_cpu, i.free_memory, i.id)))
        else:
            self.unplaced.setdefault(pool.capacity_provider, deque()).append(runner)
        return runner

    def stop_runner(self, runner: Runner) -> bool:
        """Deregister and stop an idle runner; False (nothing done) when it is not idle."""
        if runner.state != "idle" or runner.id not in self.runners:
            return False
        self._begin_stop(runner)
        return True

    def launch_instances(
        self,
        provider: str,
        count: int,
        instance_type: InstanceType,
        boot_s: float,
        runner_startup_s: float | None = None,
    ) -> list[Instance]:
        """Launch `count` instances that register with ECS after `boot_s`."""
        launched = []
        for _ in range(count):
            instance = Instance(
                next(self._ids), provider, instance_type, self.now, runner_startup_s
            )
            instance.free_cpu, instance.free_memory = instance_type.cpu, instance_type.memory
            if self.policy.prepulls_images:
                instance.images.update(
                    pool.name for pool in self.pools.values() if pool.capacity_provider == provider
                )
            self.instances[instance.id] = instance
            self.totals.instances_launched += 1
            self.at(self.now + boot_s, self._instance_ready, instance)
            self._maybe_interrupt(instance)
            launched.append(instance)
        return launched

    def terminate_instance(self, instance: Instance) -> bool:
        """Drain and terminate an empty instance; False (nothing done) when it has tasks."""
        if instance.tasks or instance.terminated is not None:
            return False
        instance.terminated = self.now
        self._account_instance(instance)
        del self.instances[instance.id]
        return True

    def provider_instances(self, provider: str) -> list[Instance]:
        """The capacity provider's instances, booting or ready."""
        return [i for i in self.instances.values() if i.provider == provider]

    # ------------------------------------------------------------------ ECS internals

    def _maybe_interrupt(self, instance: Instance) -> None:
        """A spot instance (`spot_share` of them) gets its notice after an exponential time."""
        parameters, dice = self.parameters, self._spot_dice
        rate = parameters.spot_interruptions_per_hour
        if rate <= 0 or dice.random() >= parameters.spot_share:
            return
        self.at(self.now + dice.expovariate(rate / 3600), self._interrupt, instance)

    def _interrupt(self, instance: Instance) -> None:
        if instance.terminated is not None:
            return
        instance.draining = True
        self.totals.spot_interruptions += 1
        self.policy.instance_interrupted(instance)
        self.at(self.now + self.parameters.spot_notice_s, self._reclaim, instance)

    def _reclaim(self, instance: Instance) -> None:
        """EC2 takes the instance back: its runners die with it."""
        if instance.terminated is not None:
            return
        for runner in list(instance.tasks):
            job = runner.job if runner.state == "busy" else None
            if job is not None:
                job.interrupted, job.completed = True, self.now
                job.started = job.started if job.started is not None else self.now
                self.completed += 1
                self.totals.jobs_interrupted += 1
                self.policy.job_completed(job)
            self.totals.idle_reclaimed += runner.state == "idle"
            self._leave_idle(runner)
            if runner.state in ("provisioning", "starting"):
                self.totals.starting_s += self.now - runner.requested
            runner.state = "stopping"
            self._stopped(runner)  # the policy may terminate the (now empty) instance itself
        if instance.terminated is None:
            self.terminate_instance(instance)
        self.policy.instance_reclaimed(instance)

    def _instance_ready(self, instance: Instance) -> None:
        if instance.terminated is not None:
            return
        instance.ready, instance.empty_since = True, self.now
        for runner in list(instance.tasks):  # a dedicated instance's runner
            self._place(runner, instance)
        waiting = self.unplaced.get(instance.provider)
        if waiting and not instance.draining:
            kept: deque[Runner] = deque()
            for runner in waiting:
                if instance.fits(runner.pool):
                    self._place(runner, instance)
                else:
                    kept.append(runner)
            self.unplaced[instance.provider] = kept
        self.policy.instance_ready(instance)

    def _place(self, runner: Runner, instance: Instance) -> None:
        pool, parameters = runner.pool, self.parameters
        instance.free_cpu -= pool.cpu
        instance.free_memory -= pool.memory
        instance.tasks.add(runner)
        runner.instance, runner.state = instance, "starting"
        if instance.runner_startup_s is not None:
            startup = instance.runner_startup_s
        else:
            pull = (
                parameters.image_pull_warm_s
                if pool.name in instance.images
                else parameters.image_pull_cold_s
            )
            startup = pull + parameters.task_start_s + parameters.runner_registration_s
        instance.images.add(pool.name)
        self.at(self.now + startup, self._runner_online, runner)

    def _begin_stop(self, runner: Runner) -> None:
        self._leave_idle(runner)
        runner.state = "stopping"
        self.at(self.now + self.parameters.task_stop_s, self._stopped, runner)

    def _stopped(self, runner: Runner) -> None:
        if runner.state == "stopped":
            return  # its instance was reclaimed while it stopped
        runner.state = "stopped"
        del self.runners[runner.id]
        instance = runner.instance
        if instance is not None:
            instance.tasks.discard(runner)
            instance.free_cpu += runner.pool.cpu
            instance.free_memory += runner.pool.memory
            if not instance.tasks:
                instance.empty_since = self.now
        self.policy.runner_stopped(runner)

    def _account_runner(self, runner: Runner) -> None:
        """Close a still-running runner's books at the end of the run."""
        if runner.state == "idle":
            self._add_idle(runner)
        elif runner.state in ("provisioning", "starting"):
            self.totals.starting_s += self.now - runner.requested

    def _account_instance(self, instance: Instance) -> None:
        seconds = self.now - instance.launched
        self.totals.instance_s += seconds
        self.totals.vcpu_s += seconds * instance.type.vcpus
        self.totals.usd += seconds / 3600 * self.parameters.usd_per_hour(instance.type)


def new_instances_needed(
    pools: Iterable[SimPool], room: Iterable[tuple[int, int]], fresh: InstanceType
) -> int:
    """Instances to launch so tasks of `pools` (one entry per task) fit: the reconciler's own
    bin packing (`reconciler.plan.capacity.pack`) into the `room` (free CPU, memory) already
    there, then into fresh instances."""
    tasks = [(pool.cpu, pool.memory) for pool in pools]
    return pack(tasks, list(room), (fresh.cpu, fresh.memory)).new_instances
