"""The compared scaling policies: how each system decides runner tasks and instances.

- `reconciler` (ours): webhooks feed the real `DemandBook` (most specific pool, per-repository
  cap); each controller cycle renders `DesiredState` with `render_desired` and calls the real
  `reconciler.plan.planner.plan` on an `ObservedState` built from the simulated world, then
  applies its runner-task actions; instances are added in the same cycle by bin packing
  (the reconciler-driven autoscaler of issue 6, modelled, not called) and empty ones removed.
- `reactive`: the same, with min 0, no idle pool and no schedules.
- `ecs-managed`: our planner for runners, ECS managed scaling for instances (one-minute
  metric, alarm delay, warm-up between steps, 15 minutes before scaling in).
- `arc`: desired = min(minRunners + assigned jobs, max) after ARC's reaction time, minRunners
  = the spec's base idle count (no schedules), no per-repository cap; instances by bin packing.
- `tagr`: each queued job reaches the scale-up Lambda through a 30 s SQS delay and gets its
  own EC2 instance (if still queued); a sweep every 5 minutes removes idle runners above the
  cron idle pool (the spec's schedules) and tops the idle pool up.
- `static`: each pool holds the peak concurrency of its jobs in the trace (capped at max)
  around the clock, on instances launched up front; exited runners are replaced at once.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import math
from collections import Counter
from collections.abc import Callable, Sequence

from ..demand import DemandBook, JobEvent, MemoryDemandStore, PoolDemandSpec
from ..demand.arrivals import MemoryArrivalStore
from ..plan.actions import Action
from ..plan.capacity import pack
from ..plan.desired import idle_target_now, render_desired, warm_target
from ..plan.planner import plan
from ..plan.slo import ArrivalHistory, week_and_slot
from ..plan.state import (
    DesiredState,
    ObservedCapacityProvider,
    ObservedCluster,
    ObservedState,
    ObservedTask,
    ObservedTaskDefinition,
    RunnerState,
)
from ..spec.loader import SpecSet
from ..spec.models import RunnerPool
from .parameters import InstanceType, SimulationParameters
from .trace import TraceJob
from .world import Instance, Job, Policy, Runner, SimPool, World, new_instances_needed

REGION = "ap-northeast-1"
_RUNNER_STATES = {"idle": RunnerState.IDLE, "busy": RunnerState.BUSY}


class UnknownPolicy(ValueError):
    """A policy name that is not one of POLICY_NAMES."""


# ---------------------------------------------------------------- instance scaling


class BinPackScaler:
    """Instances follow tasks within one cycle: launch what first-fit decreasing needs for
    the tasks waiting for room, terminate instances empty for longer than the grace period."""

    def __init__(self, parameters: SimulationParameters) -> None:
        self.parameters = parameters
        #: runner-sized room to keep per pool (a queue-wait objective's spare room, plan.slo)
        self.spare_room: dict[str, int] = {}

    def attach(self, world: World) -> None:
        """A periodic sweep, so empty instances go even when nothing else happens."""
        world.every(self.parameters.resync_s / 2, lambda: self.scale(world))

    def scale(self, world: World) -> None:
        """Scale every capacity provider out for its waiting tasks and the spare room, and in
        for empty instances the spare room does not need (as `plan.capacity` does)."""
        parameters = self.parameters
        for provider in sorted({pool.capacity_provider for pool in world.pools.values()}):
            instances = [i for i in world.provider_instances(provider) if not i.draining]
            waiting = world.unplaced.get(provider) or ()
            kind = parameters.instance_type(provider)
            spare = [
                (pool.cpu, pool.memory)
                for pool in world.pools.values()
                if pool.capacity_provider == provider
                for _ in range(self.spare_room.get(pool.name, 0))
            ]
            # the tasks waiting for room fit only booting instances (else ECS placed them);
            # the spare room may be on any: busy ones first, empty ones last (freed first)
            ordered = sorted(instances, key=lambda i: (not i.ready, not i.tasks, i.id))
            rooms = [(i.free_cpu, i.free_memory) for i in ordered]
            tasks = [(r.pool.cpu, r.pool.memory) for r in waiting]
            booting = [(i.free_cpu, i.free_memory) for i in instances if not i.ready]
            missing = new_instances_needed((r.pool for r in waiting), booting, kind)
            used: frozenset[int] = frozenset()
            if spare:
                packing = pack(tasks + spare, rooms, (kind.cpu, kind.memory))
                missing, used = max(missing, packing.new_instances), packing.used
            if missing:
                boot = parameters.asg_launch_s + parameters.instance_boot_s
                world.launch_instances(provider, missing, kind, boot)
            grace = parameters.empty_instance_grace_s
            for index, instance in enumerate(ordered):
                empty_for = world.now - instance.empty_since
                if (
                    instance.ready
                    and not instance.tasks
                    and not waiting
                    and empty_for >= grace
                    and index not in used
                ):
                    world.terminate_instance(instance)


class ManagedScaling:
    """ECS managed scaling: CapacityProviderReservation = needed / running instances, once a
    minute; past targetCapacity a target-tracking alarm raises the group to the needed size
    after the alarm delay, then waits instanceWarmupPeriod before another step; 15 minutes
    below target before empty instances are removed (only empty ones: kind to ECS)."""

    def __init__(self, spec_set: SpecSet, parameters: SimulationParameters) -> None:
        self.parameters = parameters
        self.settings = {
            provider.metadata.name: provider.spec.managed_scaling
            for provider in spec_set.capacity_providers
        }
        self.warm_until: dict[str, float] = {}
        self.low_since: dict[str, float] = {}

    def attach(self, world: World) -> None:
        """Evaluate the metric once a period."""
        world.every(self.parameters.managed_metric_period_s, lambda: self._evaluate(world))

    def scale(self, world: World) -> None:
        """Nothing happens between metric periods."""

    def _evaluate(self, world: World) -> None:
        parameters = self.parameters
        for provider in sorted({pool.capacity_provider for pool in world.pools.values()}):
            settings = self.settings.get(provider)
            target = settings.target_capacity if settings else 100
            warmup = (
                settings.instance_warmup_period
                if settings and settings.instance_warmup_period is not None
                else parameters.managed_default_warmup_s
            )
            instances = [i for i in world.provider_instances(provider) if not i.draining]
            kind = parameters.instance_type(provider)
            waiting = world.unplaced.get(provider) or ()
            needed = sum(1 for i in instances if i.tasks) + new_instances_needed(
                (r.pool for r in waiting), (), kind
            )
            running = len(instances)
            reservation = 100 * needed / running if running else (200 if needed else 100)
            wanted = math.ceil(needed * 100 / target)
            if reservation > target:
                self.low_since.pop(provider, None)
                if world.now >= self.warm_until.get(provider, 0.0) and wanted > running:
                    act = world.now + parameters.managed_alarm_delay_s
                    boot = parameters.asg_launch_s + parameters.instance_boot_s
                    world.at(act, world.launch_instances, provider, wanted - running, kind, boot)
                    self.warm_until[provider] = act + warmup
            elif reservation < target:
                since = self.low_since.setdefault(provider, world.now)
                if world.now - since >= parameters.managed_scale_in_after_s:
                    empty = [i for i in instances if i.ready and not i.tasks]
                    for instance in empty[: max(0, running - wanted)]:
                        world.terminate_instance(instance)
                    self.low_since[provider] = world.now
            else:
                self.low_since.pop(provider, None)


InstanceScaler = BinPackScaler | ManagedScaling


# ---------------------------------------------------------------- runner scaling: the planner


class PlannerPolicy(Policy):
    """Runner tasks decided by the real planner each controller cycle (ours and variants)."""

    prepulls_images = True  # its instances are the stack's, whose user data pre-pulls

    def __init__(
        self,
        name: str,
        spec_set: SpecSet,
        instances: InstanceScaler,
        parameters: SimulationParameters,
        history: Sequence[TraceJob] = (),
    ) -> None:
        self.name = name
        self.spec_set = spec_set
        self.instances = instances
        self.parameters = parameters
        self.history = history  # jobs of earlier weeks a queue-wait objective learned from
        self.slo_pools = [p for p in spec_set.pools if p.spec.scaling.slo is not None]
        # the arrival store's books, read without copies (a cycle runs every few seconds)
        self.arrivals = MemoryArrivalStore()
        self._arrival_histories: dict[str, ArrivalHistory] = {}
        self.cycles = 0
        self._scheduled = False
        self._free_at = 0.0
        self._desired: dict[tuple[object, ...], DesiredState] = {}
        self._tasks: dict[int, ObservedTask] = {}

    def attach(self, world: World) -> None:
        """Seed the demand book and the static part of the observed world; start the loop."""
        self.world = world
        self.book = DemandBook(MemoryDemandStore(), clock=world.datetime)
        self.demand_specs = [pool.demand for pool in world.pools.values()]
        self.start = planner_desired(self.spec_set, world.datetime())
        self.observed = observed_world(self.start)
        self._learn_history()
        self.instances.attach(world)
        world.every(self.parameters.resync_s, self._resync)

    def job_queued(self, job: Job) -> None:
        self._deliver(job.trace.event)

    def job_started(self, job: Job) -> None:
        self._deliver(self._event(job, "in_progress"))

    def job_completed(self, job: Job) -> None:
        self._deliver(self._event(job, "completed"))

    def _event(self, job: Job, action: str) -> JobEvent:
        event = job.trace.event
        return dataclasses.replace(
            event, action=action, delivery=f"{event.job_id}:{action}", at=self.world.datetime()
        )

    def _deliver(self, event: JobEvent) -> None:
        """The webhook reaches /webhook after the delivery delay; it triggers a cycle."""

        def receive() -> None:
            if self.book.record(event) and event.action == "queued":
                self._count_arrival(event)
            self._trigger()

        self.world.at(self.world.now + self.parameters.webhook_delivery_s, receive)

    def _resync(self) -> None:
        oldest = min(
            (line[0].trace.arrival for line in self.world.waiting.values() if line),
            default=self.world.now,
        )
        age = self.world.now - min(oldest, self.world.now) + self.parameters.resync_s
        self.book.forget_older_than(datetime.timedelta(seconds=age))
        self._trigger()

    def _trigger(self) -> None:
        if self._scheduled:
            return
        self._scheduled = True
        moment = max(self.world.now + self.parameters.reconcile_debounce_s, self._free_at)
        self.world.at(moment, self._cycle)

    def _cycle(self) -> None:
        """Observe, plan with the real planner; the actions apply at the end of the cycle."""
        world = self.world
        self._scheduled = False
        self.cycles += 1
        now = world.datetime()
        pending = self.book.pending(self.demand_specs)
        runners = [r for r in world.runners.values() if r.state != "stopping"]
        tasks = [self._task(r) for r in runners]
        draining = {_instance_arn(i) for i in world.instances.values() if i.draining}
        if draining:  # ECS spot draining: the planner replaces the idle runners on them
            tasks = [
                dataclasses.replace(task, container_instance_arn=_instance_arn(r.instance))
                if r.instance is not None and r.instance.draining
                else task
                for task, r in zip(tasks, runners, strict=True)
            ]
        observed = dataclasses.replace(self.observed, tasks=tasks, draining_instances=draining)
        states = {r.arn: _RUNNER_STATES.get(r.state, RunnerState.UNKNOWN) for r in runners}
        desired = self.desired(now, pending)
        if isinstance(self.instances, BinPackScaler):
            self.instances.spare_room = {p.name: p.spare_room for p in desired.pools.values()}
        result = plan(desired, observed, states, now=now)
        self._free_at = world.now + self.parameters.reconcile_cycle_s
        by_arn = {r.arn: r for r in runners}
        world.at(self._free_at, self._apply, result.actions, by_arn)

    def desired(self, now: datetime.datetime, pending: dict[str, int]) -> DesiredState:
        """`render_desired` at `now`; memoised on what its output depends on (pending demand
        and each pool's idle target now), since rendering hashes every task definition."""
        histories = self._histories(now)
        key = (
            tuple(sorted(pending.items())),
            tuple(
                warm_target(p.spec.scaling, now, histories.get(p.metadata.name))[::2]
                if p.spec.scaling.slo is not None
                else idle_target_now(p.spec.scaling, now)[0]
                for p in self.spec_set.pools
            ),
        )
        if key not in self._desired:
            self._desired[key] = planner_desired(self.spec_set, now, pending, histories)
        return self._desired[key]

    # ---------------------------------------------------------- arrivals (queue-wait SLO)

    def _learn_history(self) -> None:
        """Count the earlier weeks' jobs as the arrival store would have, watched throughout."""
        for trace in self.history:
            self._count_arrival(trace.event)
        weeks = {week_and_slot(trace.event.created_at)[0] for trace in self.history}
        for week in weeks:
            for name in self._slo_names:
                self.arrivals.observed_from.setdefault(name, {})[week] = 0

    def _count_arrival(self, event: JobEvent) -> None:
        pool = self._pool_of(event)
        if pool is not None:
            self.arrivals.record(pool, event.created_at, event.run_id)

    def _pool_of(self, event: JobEvent) -> str | None:
        """The pool a job counts for (the demand book's rule), if it has an objective."""
        spec = next((p for p in self._ordered_specs if p.serves(event)), None)
        if spec is None or spec.name not in self._slo_names:
            return None
        return spec.name

    @functools.cached_property
    def _ordered_specs(self) -> list[PoolDemandSpec]:
        return sorted(
            (PoolDemandSpec.of(pool) for pool in self.spec_set.pools),
            key=lambda pool: (len(pool.labels), pool.name),
        )

    @functools.cached_property
    def _slo_names(self) -> frozenset[str]:
        return frozenset(pool.metadata.name for pool in self.slo_pools)

    def _histories(self, now: datetime.datetime) -> dict[str, ArrivalHistory]:
        """What the arrival store would load now (the controller watches every week it runs)."""
        week, slot = week_and_slot(now)
        books = self.arrivals
        for name in self._slo_names:
            watched = books.observed_from.setdefault(name, {})
            watched.setdefault(week, slot)
            if name not in self._arrival_histories:  # one per pool: it keeps what it learned
                self._arrival_histories[name] = ArrivalHistory(
                    books.counts.setdefault(name, {}), watched, books.squares.setdefault(name, {})
                )
        return self._arrival_histories

    def _apply(self, actions: tuple[Action, ...], by_arn: dict[str, Runner]) -> None:
        """Execute the plan's runner-task actions (the world re-checks idleness on stop)."""
        world = self.world
        for action in actions:
            if action.resource_type != "runner_tasks" or action.pool is None:
                continue  # nothing else differs: observed_world() matches the specs
            if action.action == "run":
                for _ in range(action.count):
                    world.request_runner(world.pools[action.pool])
            elif action.action == "stop":
                for arn in action.task_arns:
                    world.stop_runner(by_arn[arn])  # refused when it became busy meanwhile
        self.instances.scale(world)

    def _task(self, runner: Runner) -> ObservedTask:
        task = self._tasks.get(runner.id)
        if task is None:
            pool = self.start.pools[runner.pool.name]  # family, spec hash, tags
            task = ObservedTask(
                arn=runner.arn,
                cluster=pool.cluster,
                pool=pool.name,
                task_definition_arn=self.observed.task_definitions[pool.family][0].arn,
                spec_hash=pool.spec_hash,
                last_status="RUNNING",
                started_at=runner.requested,
                tags=pool.task_tags,
                capacity_provider=pool.capacity_provider,
            )
            self._tasks[runner.id] = task
        return task

    def runner_stopped(self, runner: Runner) -> None:
        self._tasks.pop(runner.id, None)

    def instance_interrupted(self, instance: Instance) -> None:
        self._trigger()  # the container instance state change reaches the controller

    def instance_reclaimed(self, instance: Instance) -> None:
        self._trigger()


def _instance_arn(instance: Instance | None) -> str:
    return f"arn:aws:ecs:sim:000000000000:container-instance/{instance.id if instance else 0}"


def planner_desired(
    spec_set: SpecSet,
    now: datetime.datetime,
    pending: dict[str, int] | None = None,
    arrivals: dict[str, ArrivalHistory] | None = None,
) -> DesiredState:
    """`render_desired`, with every capacity provider `managed`: in the simulator instances
    belong to the world (`BinPackScaler` packs with the reconciler's own `pack`, keeping the
    spare room a queue-wait objective asks for), so the planner decides runner tasks only."""
    desired = render_desired(spec_set, now, REGION, pending, arrivals)
    providers = {
        name: dataclasses.replace(provider, scaling="managed")
        for name, provider in desired.capacity_providers.items()
    }
    return dataclasses.replace(desired, capacity_providers=providers)


def observed_world(desired: DesiredState) -> ObservedState:
    """An AWS account in which everything but the runner tasks already matches `desired`:
    clusters, capacity providers, Auto Scaling groups, network, one current revision per pool.
    The planner then only has runner tasks to decide, as in a converged steady state."""
    groups = {
        provider.auto_scaling_group: f"arn:aws:autoscaling:sim:asg/{provider.auto_scaling_group}"
        for provider in desired.capacity_providers.values()
    }
    providers = {
        name: ObservedCapacityProvider(
            name=name,
            arn=f"arn:aws:ecs:sim:capacity-provider/{name}",
            auto_scaling_group_arn=groups[provider.auto_scaling_group],
            settings=provider.settings,
            tags=provider.tags,
        )
        for name, provider in desired.capacity_providers.items()
    }
    clusters = {
        cluster: ObservedCluster(
            cluster,
            "ACTIVE",
            tuple(sorted(n for n, p in desired.capacity_providers.items() if p.cluster == cluster)),
        )
        for cluster in desired.clusters
    }
    revisions = {
        pool.family: [
            ObservedTaskDefinition(
                arn=f"arn:aws:ecs:sim:task-definition/{pool.family}:1",
                family=pool.family,
                revision=1,
                content=pool.task_definition,
                content_hash=pool.spec_hash,
                tags=pool.task_definition_tags,
            )
        ]
        for pool in desired.pools.values()
    }
    network = {ref for pool in desired.pools.values() for ref in pool.subnets}
    groups_sg = {ref for pool in desired.pools.values() for ref in pool.security_groups}
    return ObservedState(
        clusters=clusters,
        capacity_providers=providers,
        task_definitions=revisions,
        auto_scaling_groups=groups,
        subnets={ref: ref for ref in network},
        security_groups={ref: ref for ref in groups_sg},
    )


def without_idle_pool(spec_set: SpecSet) -> SpecSet:
    """The spec set with every pool at min 0, idle 0, no schedules and no queue-wait objective
    (the reactive policy)."""
    resources = []
    for loaded in spec_set.resources:
        resource = loaded.resource
        if isinstance(resource, RunnerPool):
            scaling = resource.spec.scaling.model_copy(
                update={"min": 0, "idle": 0, "schedules": [], "slo": None}
            )
            spec = resource.spec.model_copy(update={"scaling": scaling})
            resource = resource.model_copy(update={"spec": spec})
        resources.append(dataclasses.replace(loaded, resource=resource))
    return dataclasses.replace(spec_set, resources=resources)


# ---------------------------------------------------------------- runner scaling: others


class ArcPolicy(Policy):
    """actions-runner-controller's scale set: desired = min(minRunners + assigned jobs, max),
    applied `arc_reaction_s` after each change of the assigned count."""

    name = "arc"

    def __init__(self, instances: BinPackScaler, parameters: SimulationParameters) -> None:
        self.instances = instances
        self.parameters = parameters
        self.assigned: Counter[str] = Counter()  # queued + running jobs per scale set

    def attach(self, world: World) -> None:
        """Bin-packing instances (as Karpenter would add nodes)."""
        self.world = world
        self.instances.attach(world)
        for pool in world.pools.values():
            self._scale(pool, 0)

    def job_queued(self, job: Job) -> None:
        self._changed(job, +1)

    def job_completed(self, job: Job) -> None:
        self._changed(job, -1)

    def _changed(self, job: Job, delta: int) -> None:
        assert job.pool is not None
        self.assigned[job.pool.name] += delta
        moment = self.world.now + self.parameters.arc_reaction_s
        self.world.at(moment, self._scale, job.pool, self.assigned[job.pool.name])

    def instance_reclaimed(self, instance: Instance) -> None:
        """The runner pods died with the node: the runner set is topped up (no reaction to
        the notice itself, and no draining of idle runners before it)."""
        for pool in self.world.pools.values():
            moment = self.world.now + self.parameters.arc_reaction_s
            self.world.at(moment, self._scale, pool, self.assigned[pool.name])

    def _scale(self, pool: SimPool, assigned: int) -> None:
        """Patch the runner set to the desired count as the listener saw it."""
        world = self.world
        desired = min(pool.scaling.idle + assigned, pool.scaling.max)
        runners = world.pool_runners(pool.name)
        for _ in range(desired - len(runners)):
            world.request_runner(pool)
        for runner in world.idle_runners(pool.name)[: max(0, len(runners) - desired)]:
            world.stop_runner(runner)
        self.instances.scale(world)


class TagrPolicy(Policy):
    """terraform-aws-github-runner: a delayed queue, one instance per job, a periodic sweep."""

    name = "tagr"

    def __init__(self, parameters: SimulationParameters) -> None:
        self.parameters = parameters

    def attach(self, world: World) -> None:
        """The scale-down / idle-pool sweep."""
        self.world = world
        world.every(self.parameters.tagr_sweep_s, self._sweep)

    def job_queued(self, job: Job) -> None:
        delay = self.parameters.webhook_delivery_s + self.parameters.tagr_queue_delay_s
        self.world.at(self.world.now + delay, self._scale_up, job)

    def _scale_up(self, job: Job) -> None:
        """The Lambda: a runner on its own instance, if the job still waits and max allows."""
        assert job.pool is not None
        if (
            job.runner is None
            and len(self.world.pool_runners(job.pool.name)) < job.pool.scaling.max
        ):
            self._launch(job.pool)

    def _launch(self, pool: SimPool) -> None:
        kind = InstanceType(f"{pool.name} (sized to one job)", pool.cpu, pool.memory)
        boot = self.parameters.tagr_boot_s
        instance = self.world.launch_instances(f"tagr:{pool.name}", 1, kind, boot, 0.0)[0]
        self.world.request_runner(pool, instance)

    def _sweep(self) -> None:
        """Terminate idle runners above the cron idle pool (once old enough); top it up."""
        world, now = self.world, self.world.datetime()
        for pool in world.pools.values():
            target, _ = idle_target_now(pool.scaling, now)
            idle = world.idle_runners(pool.name)
            for runner in idle[: max(0, len(idle) - target)]:
                assert runner.registered is not None
                if world.now - runner.registered >= self.parameters.tagr_minimum_running_s:
                    world.stop_runner(runner)
            starting = [r for r in world.pool_runners(pool.name) if r.registered is None]
            for _ in range(target - len(world.idle_runners(pool.name)) - len(starting)):
                self._launch(pool)

    def runner_stopped(self, runner: Runner) -> None:
        if runner.instance is not None:
            self.world.terminate_instance(runner.instance)  # ephemeral: the instance goes too


class StaticPolicy(Policy):
    """A fixed fleet per pool sized for the trace's peak concurrency, replaced as it exits."""

    name = "static"

    def __init__(self, parameters: SimulationParameters) -> None:
        self.parameters = parameters
        self.sizes: dict[str, int] = {}

    def attach(self, world: World) -> None:
        """Launch the instances (already running) and the runners."""
        self.world = world
        self.sizes = peak_concurrency(world)
        for pool in world.pools.values():
            size = self.sizes.get(pool.name, 0)
            kind = self.parameters.instance_type(pool.capacity_provider)
            count = new_instances_needed([pool] * size, (), kind)
            world.launch_instances(pool.capacity_provider, count, kind, 0.0)
            for _ in range(size):
                world.request_runner(pool)

    def runner_stopped(self, runner: Runner) -> None:
        self.world.request_runner(runner.pool)

    def instance_reclaimed(self, instance: Instance) -> None:
        """The fleet's Auto Scaling group replaces the reclaimed instance."""
        parameters = self.parameters
        kind = parameters.instance_type(instance.provider)
        boot = parameters.asg_launch_s + parameters.instance_boot_s
        self.world.launch_instances(instance.provider, 1, kind, boot)


def peak_concurrency(world: World) -> dict[str, int]:
    """Most jobs running at once per pool if every job started on arrival, capped at max."""
    changes: dict[str, list[tuple[float, int]]] = {}
    for job in world.jobs:
        if job.pool is not None:
            line = changes.setdefault(job.pool.name, [])
            line += [(job.trace.arrival, 1), (job.trace.arrival + job.trace.run_time, -1)]
    peaks = {}
    for name, line in changes.items():
        running = peak = 0
        for _, delta in sorted(line):
            running += delta
            peak = max(peak, running)
        peaks[name] = min(peak, world.pools[name].scaling.max)
    return peaks


# ---------------------------------------------------------------- registry

POLICY_NAMES = ("static", "reactive", "ecs-managed", "arc", "tagr", "reconciler")


def make_policy(
    name: str,
    spec_set: SpecSet,
    parameters: SimulationParameters,
    history: Sequence[TraceJob] = (),
) -> Policy:
    """A fresh policy by name; raises UnknownPolicy. `history` (jobs of earlier weeks) is what
    the planner-driven policies' queue-wait objectives learned before the trace starts."""
    builders: dict[str, Callable[[], Policy]] = {
        "static": lambda: StaticPolicy(parameters),
        "reactive": lambda: PlannerPolicy(
            "reactive", without_idle_pool(spec_set), BinPackScaler(parameters), parameters
        ),
        "ecs-managed": lambda: PlannerPolicy(
            "ecs-managed", spec_set, ManagedScaling(spec_set, parameters), parameters, history
        ),
        "arc": lambda: ArcPolicy(BinPackScaler(parameters), parameters),
        "tagr": lambda: TagrPolicy(parameters),
        "reconciler": lambda: PlannerPolicy(
            "reconciler", spec_set, BinPackScaler(parameters), parameters, history
        ),
    }
    if name not in builders:
        raise UnknownPolicy(f"unknown policy {name!r}; choose from {', '.join(POLICY_NAMES)}")
    return builders[name]()
