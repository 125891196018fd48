"""The controller loop: triggers wake it, one cycle plans and applies, pools back off alone.

Level-triggered: a trigger (resync timer, spec change, later a webhook) carries only a
reason, never "what changed"; every cycle observes everything and plans from scratch, so
a missed or duplicated trigger costs nothing. A spec set that does not validate is never
applied. A pool whose actions fail waits with exponential backoff and jitter while the
others proceed. `stop()` (SIGTERM) lets the action in flight finish and skips the rest.
"""

from __future__ import annotations

import datetime
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import watchfiles
from botocore.exceptions import BotoCoreError, ClientError

from .. import fencing
from ..aws.clients import AwsClients
from ..aws.executor import DEFAULT_BIND_WORKERS, ApplyResult, Bindings, Executor
from ..aws.observe import Observer
from ..clock import UtcClock, utc_now
from ..demand import (
    DemandBook,
    JobEvent,
    PoolDemandSpec,
    QueuedJobAudit,
    Redeliverer,
    pool_for,
)
from ..demand.arrivals import ArrivalStore
from ..demand.scaleset import ScaleSetListeners
from ..fencing import Fence, LeaseLost
from ..github.client import GitHubClient, GitHubError
from ..github.groups import RunnerGroupAccessWatch
from ..github.janitor import RunnerJanitor
from ..github.releases import RunnerVersionWatch
from ..github.scaleset.messages import ScaleSetMessage
from ..github.scaleset.pools import scale_set_pools
from ..plan.expectations import Expectations
from ..plan.guard import GuardPolicy, refused_actions
from ..plan.state import family_of
from ..reconcile import Cycle, plan_cycle, slo_pool_names
from ..runners import RunnerProvisioner, RunnerStateSource, UnboundWatch
from ..spec.loader import SPEC_SUFFIXES
from .gitsource import GitSource
from .metrics import NO_POOL_JOBS, ControllerMetrics
from .status import StatusBoard, spec_revision

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ControllerSettings:
    """How the loop behaves; defaults suit a production controller."""

    spec_paths: Sequence[str | Path] = ("specs",)
    resync_interval: float = 60.0
    debounce_ms: int = 300
    # triggers arriving less than coalesce_ms apart are one cycle (a webhook burst), for
    # at most coalesce_max_ms after the first
    coalesce_ms: int = 250
    coalesce_max_ms: int = 2000
    bind_workers: int = DEFAULT_BIND_WORKERS  # runner tasks bound to registrations at once
    # bind runners in the background, across cycles (run does): the next cycle need not wait
    # for GitHub and SSM; False: each apply waits for its bindings
    background_binding: bool = False
    guard: GuardPolicy = field(default_factory=GuardPolicy)
    backoff_base: float = 5.0
    backoff_max: float = 300.0
    git_poll_interval: float = 30.0
    revision_refresh: float = 300.0  # list each family's revisions at most this often
    # runners left waiting for instances the cycle added are started this soon after
    capacity_requeue: float = 15.0


class Triggers:
    """A thread-safe doorbell: anyone may ring it with a reason; the loop waits for it.

    Rings close together are one wake-up: after the first, `wait` gathers the others until
    none came for `coalesce` seconds, and at most `coalesce_max` seconds after the first (a
    burst of webhook deliveries becomes one cycle, however long GitHub takes to send it,
    within that bound; a lone delivery waits `coalesce` at most). A "stop" ends the wait at
    once."""

    STOP = "stop"

    def __init__(
        self,
        coalesce: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        coalesce_max: float | None = None,
    ):
        """`coalesce_max` defaults to `coalesce` (a fixed window after the first ring)."""
        coalesce_max = coalesce if coalesce_max is None else coalesce_max
        if coalesce < 0:
            raise ValueError(f"coalesce must be >= 0 seconds, not {coalesce}")
        if coalesce_max < coalesce:
            raise ValueError(
                f"coalesce_max ({coalesce_max}s) must be at least coalesce ({coalesce}s)"
            )
        self.coalesce = coalesce
        self.coalesce_max = coalesce_max
        self._clock = clock
        self._condition = threading.Condition()
        self._reasons: list[str] = []

    def fire(self, reason: str) -> None:
        """Ask for a reconcile soon."""
        with self._condition:
            self._reasons.append(reason)
            self._condition.notify_all()

    def wait(self, timeout: float) -> list[str]:
        """The reasons given since the last call; empty when `timeout` passed without one."""
        with self._condition:
            if not self._reasons:
                self._condition.wait(timeout=max(0.0, timeout))
            if self._reasons and self.coalesce > 0:
                first = self._clock()
                quiet_from, seen = first, len(self._reasons)
                while self.STOP not in self._reasons:
                    if len(self._reasons) > seen:  # another ring: the quiet gap starts again
                        quiet_from, seen = self._clock(), len(self._reasons)
                    until = min(quiet_from + self.coalesce, first + self.coalesce_max)
                    left = until - self._clock()
                    if left <= 0:
                        break
                    self._condition.wait(timeout=left)
            reasons, self._reasons = self._reasons, []
            return reasons


class PoolBackoff:
    """Exponential backoff with jitter per pool: one failing pool never delays the others."""

    def __init__(self, base: float, maximum: float, clock: Callable[[], float]) -> None:
        self.base, self.maximum, self.clock = base, maximum, clock
        self._failures: dict[str, int] = {}
        self._until: dict[str, float] = {}

    def failed(self, pool: str) -> float:
        """Record a failure; returns the delay before the pool is tried again."""
        count = self._failures.get(pool, 0) + 1
        self._failures[pool] = count
        delay = min(self.maximum, self.base * 2 ** (count - 1)) * random.uniform(0.8, 1.2)
        self._until[pool] = self.clock() + delay
        return delay

    def succeeded(self, pool: str) -> None:
        """Forget the pool's failures."""
        self._failures.pop(pool, None)
        self._until.pop(pool, None)

    def waiting(self) -> dict[str, float]:
        """Pools still backing off, with the seconds left."""
        now = self.clock()
        return {pool: until - now for pool, until in self._until.items() if until > now}


class SpecWatcher(threading.Thread):
    """Rings the doorbell when a spec file is written, renamed or removed (debounced)."""

    def __init__(self, paths: Sequence[str | Path], triggers: Triggers, debounce_ms: int) -> None:
        super().__init__(name="spec-watcher", daemon=True)
        self.paths = [Path(p) for p in paths]
        self.triggers = triggers
        self.debounce_ms = debounce_ms
        self.stop_event = threading.Event()

    def run(self) -> None:
        existing = [p for p in self.paths if p.exists()]
        if not existing:
            log.warning("no spec path to watch: %s", ", ".join(map(str, self.paths)))
            return
        for changes in watchfiles.watch(
            *existing,
            watch_filter=lambda _change, path: path.endswith(SPEC_SUFFIXES),
            debounce=self.debounce_ms,
            step=50,
            stop_event=self.stop_event,
            raise_interrupt=False,
        ):
            names = sorted({Path(path).name for _, path in changes})
            self.triggers.fire(f"specs changed: {', '.join(names)}")


class Controller:
    """Runs reconcile cycles until stopped; only applies while `is_leader()` says so."""

    def __init__(
        self,
        settings: ControllerSettings,
        clients: AwsClients,
        runner_states: RunnerStateSource,
        status: StatusBoard | None = None,
        is_leader: Callable[[], bool] = lambda: True,
        clock: Callable[[], float] = time.monotonic,
        git: GitSource | None = None,
        metrics: ControllerMetrics | None = None,
        provisioner: RunnerProvisioner | None = None,
        demand: DemandBook | None = None,
        github: GitHubClient | None = None,
        janitor: RunnerJanitor | None = None,
        versions: RunnerVersionWatch | None = None,
        wall_clock: UtcClock = utc_now,
        redeliverer: Redeliverer | None = None,
        audit: QueuedJobAudit | None = None,
        scale_set_listeners: ScaleSetListeners | None = None,
        fence: Fence | None = None,
        arrivals: ArrivalStore | None = None,
    ) -> None:
        """`fence`: the lease (with leader election), checked by every mutating call."""
        self.settings = settings
        self.clients = clients
        self.runner_states = runner_states
        self.provisioner = provisioner
        self.observer = Observer(clients, revision_refresh=settings.revision_refresh)
        self.status = status or StatusBoard(wall_clock)
        self.is_leader = is_leader
        self.clock = clock
        self.triggers = Triggers(
            coalesce=settings.coalesce_ms / 1000, coalesce_max=settings.coalesce_max_ms / 1000
        )
        self.backoff = PoolBackoff(settings.backoff_base, settings.backoff_max, clock)
        self._stop = threading.Event()
        self.cycles = 0
        self.git = git
        self.metrics = metrics or ControllerMetrics()
        self.demand = demand
        self.github = github
        # runner group access in GitHub against the specs: each group read once per 10 minutes
        self.group_access = RunnerGroupAccessWatch(github, clock=clock) if github else None
        self.janitor = janitor
        self.versions = versions
        self.wall_clock = wall_clock  # the time each cycle plans at (schedules, ages)
        self.arrivals = arrivals  # jobs per slot of the week, for queue-wait objectives
        self._waiting_for_capacity = False
        self.redeliverer = redeliverer
        self.audit = audit
        self._demand_pools: tuple[PoolDemandSpec, ...] | None = None  # known after a cycle
        self.scale_set_listeners = scale_set_listeners
        if scale_set_listeners is not None and scale_set_listeners.on_message is None:
            scale_set_listeners.on_message = self.on_scale_set_message
        self.fence = fence
        self.expectations = Expectations()
        self.unbound = UnboundWatch(clock=clock)  # tasks that lost their binding
        self.bindings = Bindings(settings.bind_workers) if settings.background_binding else None

    def demand_pools(self) -> tuple[PoolDemandSpec, ...] | None:
        """The pools of the last cycle's specs, for the demand book; None before the first."""
        return self._demand_pools

    def stop(self) -> None:
        """Finish the action in flight, then return from `run`."""
        self._stop.set()
        self.triggers.fire(Triggers.STOP)
        if self.scale_set_listeners is not None:
            self.scale_set_listeners.stop()

    @property
    def stopping(self) -> bool:
        """True once `stop()` was called."""
        return self._stop.is_set()

    def run(self) -> None:
        """Reconcile on every trigger and at least every resync interval, until stopped."""
        watcher = SpecWatcher(self.settings.spec_paths, self.triggers, self.settings.debounce_ms)
        watcher.start()
        if self.git is not None:
            threading.Thread(
                target=self.git.poll,
                args=(self._stop, self.settings.git_poll_interval, self.triggers.fire),
                name="git-poll",
                daemon=True,
            ).start()
        reasons = ["start"]
        try:
            while not self.stopping:
                started = time.monotonic()
                try:
                    self.reconcile(", ".join(dict.fromkeys(reasons)))
                except Exception:  # one bad cycle must not end the controller: retry later
                    log.exception("reconcile failed; retrying at the next trigger or resync")
                    self.metrics.record_failed_cycle(time.monotonic() - started)
                timer = "waiting for instances" if self._waiting_for_capacity else "resync"
                reasons = self.triggers.wait(self._next_wake()) or [timer]
        finally:
            watcher.stop_event.set()
            if self.bindings is not None:
                self.bindings.close()

    def _next_wake(self) -> float:
        pending = self.backoff.waiting()
        soonest_retry = min(pending.values(), default=self.settings.resync_interval)
        if self._waiting_for_capacity:  # requeue: the instances being added come up soon
            soonest_retry = min(soonest_retry, self.settings.capacity_requeue)
        return min(self.settings.resync_interval, soonest_retry)

    def reconcile(self, reason: str) -> tuple[Cycle, ApplyResult | None]:
        """One cycle: observe and plan; apply when leading and the specs are valid."""
        log.info("reconcile (%s)", reason)
        started = time.monotonic()
        self._collect_bindings()
        now = self.wall_clock()
        cycle = plan_cycle(
            self.settings.spec_paths,
            self.observer,
            self.runner_states,
            now,
            demand=self.demand,
            versions=self.versions,
            expectations=self.expectations,
            scale_set_demand=(
                self.scale_set_listeners.demand if self.scale_set_listeners is not None else None
            ),
            arrivals=self.arrivals,
            group_access=self.group_access,
        )
        if self.scale_set_listeners is not None and cycle.spec_set.ok and not self.stopping:
            # every replica keeps its listeners in step with the specs; each listens only
            # while it leads (a spec that fails to load leaves the listeners as they were)
            self.scale_set_listeners.sync(scale_set_pools(cycle.spec_set.pools))
        self.cycles += 1
        self._watch_arrivals(cycle, now)
        self._demand_pools = cycle.demand_pools
        if self.demand is not None:
            self.metrics.record_queued(self.demand.queued(cycle.demand_pools))
        revision = spec_revision(cycle.spec_set)
        attempted, source_errors = revision, []
        if self.git is not None:
            revision = self.git.state.applied or "none"
            attempted = self.git.state.attempted or revision
            source_errors = list(self.git.state.errors)
        leader = self.is_leader()
        result: ApplyResult | None = None
        if cycle.plan.spec_errors:
            log.warning("specs have %d error(s); nothing applied", len(cycle.plan.spec_errors))
        elif leader and cycle.plan.has_changes and not self.stopping:
            result = self._apply(cycle)
        self._waiting_for_capacity = result is not None and _waits_for_capacity(cycle)
        if leader and _saw_everything(cycle) and not self.stopping:
            binding = self.bindings.pending() if self.bindings is not None else set()
            unbound = self.unbound.check(
                [task for task in cycle.observed.tasks if task.arn not in binding],
                now.timestamp(),
                cycle.desired.pools,
            )
            if unbound:
                self._fenced(
                    "re-binding", lambda: self._executor(cycle).rebind(unbound, cycle.desired.pools)
                )
        if leader and self.janitor is not None and _saw_everything(cycle) and not self.stopping:
            janitor = self.janitor
            self._fenced(
                "garbage collection",
                lambda: janitor.collect(cycle.observed.tasks, cycle.desired.pools),
            )
        if leader and (redeliverer := self.redeliverer) is not None and redeliverer.due():
            self._fenced("redelivery", lambda: self._redeliver(redeliverer))
        if leader and (audit := self.audit) is not None and audit.due() and not self.stopping:
            self._fenced("queued-job audit", lambda: self._audit(audit))
        self.status.record_cycle(
            cycle.plan,
            revision,
            reason,
            result,
            leader,
            self.backoff.waiting(),
            attempted=attempted,
            source_errors=source_errors,
            version_checks=cycle.version_checks,
        )
        self.metrics.record_cycle(cycle.plan, time.monotonic() - started, result)
        self.metrics.record_runner_versions(cycle.version_checks)
        self.metrics.record_aws_calls(self.clients.calls)
        if self.github is not None:
            self.metrics.record_github_calls(self.github.calls)
        return cycle, result

    def _collect_bindings(self) -> None:
        """Settle the background bindings that finished: a pool whose runners could not be
        bound backs off, as when its run action fails."""
        if self.bindings is None:
            return
        collected = self.bindings.collect(self.expectations)
        for pool, failures in sorted(collected.failed.items()):
            delay = self.backoff.failed(pool)
            shown = "; ".join(failures[:3]) + ("; ..." if len(failures) > 3 else "")
            log.warning(
                "pool %s: %d runner(s) not bound and stopped (%s); retrying in %.0fs",
                pool,
                len(failures),
                shown,
                delay,
            )
        if collected.lease_lost:
            log.warning("%d binding(s) refused: the lease was lost", collected.lease_lost)

    def _fenced(self, what: str, work: Callable[[], object]) -> None:
        """Leader-only work outside the apply, with its mutating calls fenced as well."""
        try:
            with fencing.fenced(self.fence):
                work()
        except LeaseLost as error:
            log.warning("%s stopped: %s", what, error)

    def _redeliver(self, redeliverer: Redeliverer) -> None:
        """Ask GitHub to redeliver failed webhook deliveries; a failure waits for the next."""
        try:
            done = redeliverer.run()
        except (GitHubError, ClientError, BotoCoreError) as error:
            log.warning("webhook deliveries not checked: %s", error)
            return
        if done.requested:
            log.info(
                "%d failed webhook deliveries redelivered (%d read)", done.requested, done.listed
            )

    def _audit(self, audit: QueuedJobAudit) -> None:
        """Ask GitHub about long-queued jobs; those it shows assigned or done stop counting."""
        try:
            done = audit.run()
        except (GitHubError, ClientError, BotoCoreError) as error:
            log.warning("queued jobs not checked with GitHub: %s", error)
            return
        if done.corrected:
            self.triggers.fire(f"{done.corrected} queued job(s) are no longer queued on GitHub")

    def _watch_arrivals(self, cycle: Cycle, now: datetime.datetime) -> None:
        """Mark this week as watched for the pools with a queue-wait objective (a quiet slot
        then counts as quiet, not unknown)."""
        pools = slo_pool_names(cycle.spec_set)
        if self.arrivals is None or not pools or not self.is_leader():
            return
        try:
            self.arrivals.watch(pools, now)
        except (ClientError, BotoCoreError) as error:
            log.warning("arrival store not updated: %s", error)

    def became_leader(self) -> None:
        """Leadership acquired: forget cached revision lists (the previous leader may have
        changed them), read the whole redelivery window again, and reconcile now."""
        self.observer.forget_families()
        if self.redeliverer is not None:
            self.redeliverer.forget_progress()
        self.triggers.fire("became leader")

    def on_job_event(self, event: JobEvent) -> None:
        """A webhook's job event was accepted: count it, and reconcile soon."""
        pool = pool_for(event, self._demand_pools or ())
        name = pool.name if pool else NO_POOL_JOBS
        if self.arrivals is not None and pool is not None and event.action == "queued":
            try:
                self.arrivals.record(pool.name, event.created_at, event.run_id)
            except (ClientError, BotoCoreError) as error:
                log.warning("arrival of job %s not counted: %s", event.job_id, error)
        if event.action == "in_progress" and event.started_at:
            self.metrics.record_job_started(
                name, event.organization, event.repository, event.created_at, event.started_at
            )
        elif event.action == "completed" and event.started_at:
            self.metrics.record_job_completed(
                name, event.organization, event.repository, event.started_at, event.at
            )
        self.triggers.fire(f"webhook: job {event.job_id} {event.action}")

    def on_scale_set_message(self, pool: str, message: ScaleSetMessage) -> None:
        """A scale set's message was recorded: its metrics, and reconcile soon."""
        self.metrics.record_scale_set_message(pool, message)
        kinds = ", ".join(sorted({job.kind for job in message.jobs})) or "statistics"
        self.triggers.fire(f"scale set {pool}: {kinds}")

    def _executor(self, cycle: Cycle) -> Executor:
        return Executor(
            self.clients,
            cycle.observed,
            self.runner_states,
            progress=log.info,
            provisioner=self.provisioner,
            fence=self.fence,
            expectations=self.expectations,
            bind_workers=self.settings.bind_workers,
            bindings=self.bindings,
        )

    def _apply(self, cycle: Cycle) -> ApplyResult:
        refused = refused_actions(cycle.plan, self.settings.guard)
        waiting = self.backoff.waiting()
        for action in cycle.plan.actions:
            if action.pool in waiting and action not in refused:
                refused[action] = (
                    f"pool {action.pool} backing off ({waiting[action.pool]:.0f}s left)"
                )
        executor = self._executor(cycle)
        # stop after the action in flight on SIGTERM, or when the lease is lost mid-apply
        result = executor.apply(
            cycle.plan, refused, should_stop=lambda: self.stopping or not self.is_leader()
        )
        touched = [
            a for a, _ in result.done + result.failed if a.resource_type == "task_definition"
        ]
        self.observer.forget(
            document["taskDefinitionArn"]
            for action in touched
            for document in (action.before, action.after)
            if isinstance(document, dict) and "taskDefinitionArn" in document
        )
        self.observer.forget_families(family_of(a.pool) for a in touched if a.pool)
        if result.lease_lost:  # not the pools' fault: the next leader takes them up
            return result
        failed = {action.pool for action, _ in result.failed if action.pool}
        for pool in sorted(failed):
            delay = self.backoff.failed(pool)
            log.warning("pool %s failed; retrying in %.0fs", pool, delay)
        for pool in {a.pool for a, _ in result.done if a.pool} - failed:
            self.backoff.succeeded(pool)
        return result


def _waits_for_capacity(cycle: Cycle) -> bool:
    """Whether some of the cycle's runners wait for instances it is adding."""
    return any(
        isinstance(action.after, dict) and action.after.get("capacityPending")
        for action in cycle.plan.actions
        if action.resource_type == "runner_tasks"
    )


def _saw_everything(cycle: Cycle) -> bool:
    """Valid specs and a complete observation: only then may leftovers be told from live."""
    return not cycle.plan.spec_errors and not cycle.observed.problems
