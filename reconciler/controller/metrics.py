"""Prometheus metrics of the controller, served at /metrics.

Every metric lives in a registry of its own (one per `ControllerMetrics`), so tests and
several controllers in one process never collide. Sources:

- each cycle's plan: runner gauges per pool, spec errors, blocked pools;
- the loop: reconcile duration, failed actions;
- the API clients' cumulative call counters (`AwsClients.calls`, later the GitHub client's):
  only what they gained since the last call is added;
- job events (queued, started, completed; fed by the GitHub integration): queue wait,
  demand by hour of week, job duration, and runner time for cost allocation.

Series (label values in parentheses):

    ecs_reconciler_runners_desired{pool}                 gauge
    ecs_reconciler_runners_running{pool}                 gauge  (= sum of the states below)
    ecs_reconciler_runners{pool,state}                   gauge  (busy | idle | unknown | failed)
    ecs_reconciler_runners_outdated{pool}                gauge  (on an old task definition)
    ecs_reconciler_runner_version_stale{pool}            gauge  (1: RunnerVersionStale)
    ecs_reconciler_rollout_halted{pool}                  gauge  (1: RolloutHalted)
    ecs_reconciler_spot_fallback{pool}                   gauge  (1: new runners on the
                                                                  on-demand fallback)
    ecs_reconciler_runners_draining{pool}                gauge  (busy or starting runners on
                                                                  draining instances)
    ecs_reconciler_queued_jobs{pool,organization,repository}             gauge
    ecs_reconciler_job_queue_wait_seconds{pool,organization,repository}  histogram
    ecs_reconciler_jobs_started_total{pool,organization,weekday,hour}    counter (UTC)
    ecs_reconciler_job_duration_seconds{pool,organization,repository}    histogram
    ecs_reconciler_runner_seconds_total{pool,organization,repository}    counter
    ecs_reconciler_reconcile_duration_seconds            histogram
    ecs_reconciler_reconcile_errors_total{pool,kind}     counter (apply_failed | blocked |
                                                                  cycle_failed)
    ecs_reconciler_last_reconcile_timestamp_seconds      gauge
    ecs_reconciler_spec_errors                           gauge
    ecs_reconciler_aws_api_calls_total{service,operation}   counter
    ecs_reconciler_github_api_calls_total{endpoint}          counter
    ecs_reconciler_scale_set_jobs{pool,state}            gauge  (available | acquired |
                                                                  assigned | running)
    ecs_reconciler_scale_set_runners{pool,state}         gauge  (registered | busy | idle)
    ecs_reconciler_job_startup_seconds{pool,organization,repository}     histogram

The scale-set series are those of ARC's listener (gha_assigned_jobs, gha_running_jobs,
gha_registered/busy/idle_runners, gha_job_startup_duration_seconds), from each message's
statistics and JobStarted events; the desired count is `runners_desired` (the planner's).

Label cardinality is bounded by configuration, never by traffic: no label carries a job,
run, task or runner ID. `pool` is bounded by the specs (plus `_cluster` for errors that
belong to no pool, and `none` for jobs no pool serves); `organization` and `repository` by
the repositories that use the runners: at most `max_organizations` organizations and
`max_repositories` repositories get series of their own (later ones are counted as
`_other`). Jobs of no pool (`pool="none"`: not ours, but seen by the webhook) never take
one of those places: their repository is always `_other`, and so is their organization
unless a pool's job already brought it in. A queued-jobs series whose count drops to zero is
removed, not kept at zero. Per pool and repository that is about
35 series (two histograms and two single series). The hour-of-week counter deliberately
has no `repository` label: 168 hours x repositories would dominate everything else, and
per-repository starts are already `ecs_reconciler_job_queue_wait_seconds_count`. AWS
operations and GitHub endpoints are bounded by the code (endpoints are route templates
such as `GET /repos/{owner}/{repo}/actions/runs`, never concrete URLs).
"""

from __future__ import annotations

import contextlib
import datetime
import threading
from collections.abc import Iterable, Mapping

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from ..aws.executor import ApplyResult
from ..github.scaleset.messages import JOB_COMPLETED, JOB_STARTED, ScaleSetMessage
from ..plan.actions import Plan
from ..plan.versions import VersionCheck

PREFIX = "ecs_reconciler_"
QUEUE_WAIT_BUCKETS = (1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1800)
JOB_DURATION_BUCKETS = (30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 21600)
RECONCILE_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
RUNNER_STATES = ("busy", "idle", "unknown", "failed")
JOB_LABELS = ("pool", "organization", "repository")
SCALE_SET_JOB_STATES = ("available", "acquired", "assigned", "running")
SCALE_SET_RUNNER_STATES = ("registered", "busy", "idle")
NO_POOL = "_cluster"  # errors of actions and notes that belong to no pool
OTHER_REPOSITORY = "_other"  # repositories beyond max_repositories
OTHER_ORGANIZATION = "_other"  # organizations beyond max_organizations
NO_POOL_JOBS = "none"  # the pool label of jobs that no pool serves
DEFAULT_MAX_REPOSITORIES = 500
DEFAULT_MAX_ORGANIZATIONS = 100


class ControllerMetrics:
    """Every metric the controller exports, in a registry of its own."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        max_repositories: int = DEFAULT_MAX_REPOSITORIES,
        max_organizations: int = DEFAULT_MAX_ORGANIZATIONS,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.max_repositories = max_repositories
        self.max_organizations = max_organizations
        r = self.registry
        self.runners_desired = Gauge(
            PREFIX + "runners_desired",
            "Runner tasks the pool should have (its scaling target).",
            ["pool"],
            registry=r,
        )
        self.runners_running = Gauge(
            PREFIX + "runners_running",
            "Runner tasks running in the pool (busy + idle + unknown + failed).",
            ["pool"],
            registry=r,
        )
        self.runners = Gauge(
            PREFIX + "runners",
            "Running runner tasks by state: busy (running a job), idle, unknown, failed "
            "(never came online within the boot timeout).",
            ["pool", "state"],
            registry=r,
        )
        self.runners_outdated = Gauge(
            PREFIX + "runners_outdated",
            "Running runner tasks on an older task-definition revision (rollout pending).",
            ["pool"],
            registry=r,
        )
        self.runner_version_stale = Gauge(
            PREFIX + "runner_version_stale",
            "1 when a release newer than the pool's runner version is older than the "
            "configured max age (GitHub stops giving jobs 30 days after it), else 0.",
            ["pool"],
            registry=r,
        )
        self.rollout_halted = Gauge(
            PREFIX + "rollout_halted",
            "1 while the pool's rollout is halted after repeated runner failures of its new "
            "revision (Degraded, RolloutHalted; a spec change restarts it), else 0.",
            ["pool"],
            registry=r,
        )
        self.spot_fallback = Gauge(
            PREFIX + "spot_fallback",
            "1 while the pool's spot group cannot launch and its new runners go to its "
            "on-demand fallback provider, else 0.",
            ["pool"],
            registry=r,
        )
        self.runners_draining = Gauge(
            PREFIX + "runners_draining",
            "Busy or starting runners on draining instances (a spot interruption): never "
            "stopped, their jobs are lost if the instance goes before they finish.",
            ["pool"],
            registry=r,
        )
        self.queued_jobs = Gauge(
            PREFIX + "queued_jobs",
            "Jobs waiting for a runner of the pool.",
            JOB_LABELS,
            registry=r,
        )
        self.queue_wait = Histogram(
            PREFIX + "job_queue_wait_seconds",
            "Time from a job being queued to it starting on a runner (queued -> in_progress).",
            JOB_LABELS,
            buckets=QUEUE_WAIT_BUCKETS,
            registry=r,
        )
        self.jobs_started = Counter(
            PREFIX + "jobs_started",
            "Jobs started, by UTC weekday (mon..sun) and hour (00..23) they started in.",
            ["pool", "organization", "weekday", "hour"],
            registry=r,
        )
        self.job_duration = Histogram(
            PREFIX + "job_duration_seconds",
            "Job execution time on a runner (in_progress -> completed); _count is executions.",
            JOB_LABELS,
            buckets=JOB_DURATION_BUCKETS,
            registry=r,
        )
        self.runner_seconds = Counter(
            PREFIX + "runner_seconds",
            "Runner time spent on jobs, for cost allocation per organization and repository.",
            JOB_LABELS,
            registry=r,
        )
        self.reconcile_duration = Histogram(
            PREFIX + "reconcile_duration_seconds",
            "Duration of one reconcile cycle (observe, plan and, when leading, apply).",
            buckets=RECONCILE_BUCKETS,
            registry=r,
        )
        self.reconcile_errors = Counter(
            PREFIX + "reconcile_errors",
            "Errors per cycle: actions that failed (apply_failed), pools blocked by an error "
            f"in the plan (blocked), cycles that raised (cycle_failed); pool {NO_POOL} when "
            "no pool is concerned.",
            ["pool", "kind"],
            registry=r,
        )
        self.last_reconcile = Gauge(
            PREFIX + "last_reconcile_timestamp_seconds",
            "Unix time the last reconcile cycle finished.",
            registry=r,
        )
        self.spec_errors = Gauge(
            PREFIX + "spec_errors",
            "Spec errors in the last cycle (while any, nothing is applied).",
            registry=r,
        )
        self.aws_calls = Counter(
            PREFIX + "aws_api_calls",
            "AWS API calls by service and operation (retries not counted).",
            ["service", "operation"],
            registry=r,
        )
        self.github_calls = Counter(
            PREFIX + "github_api_calls",
            "GitHub API calls by endpoint (route template).",
            ["endpoint"],
            registry=r,
        )
        self.scale_set_jobs = Gauge(
            PREFIX + "scale_set_jobs",
            "Jobs of a pool's runner scale set by state, from its last message's statistics "
            "(assigned includes running: what the pool is sized on).",
            ["pool", "state"],
            registry=r,
        )
        self.scale_set_runners = Gauge(
            PREFIX + "scale_set_runners",
            "Runners of a pool's scale set as GitHub counts them (registered | busy | idle).",
            ["pool", "state"],
            registry=r,
        )
        self.job_startup = Histogram(
            PREFIX + "job_startup_seconds",
            "Time from a job being assigned to the pool's scale set to a runner taking it.",
            JOB_LABELS,
            buckets=QUEUE_WAIT_BUCKETS,
            registry=r,
        )
        self._lock = threading.Lock()
        self._pools: set[str] = set()
        self._queued: set[tuple[str, str, str]] = set()
        self._repositories: set[tuple[str, str]] = set()
        self._organizations: set[str] = set()
        self._seen_aws: dict[str, int] = {}
        self._seen_github: dict[str, int] = {}

    # ------------------------------------------------------------------ reconcile cycles

    def record_cycle(self, plan: Plan, duration_seconds: float, result: ApplyResult | None) -> None:
        """Fold one cycle in: runner gauges from its plan, its duration, its errors.

        Gauge series of pools that are no longer in the plan are removed, so a deleted pool
        disappears from /metrics instead of reporting its last counts forever.
        """
        pools = {summary.name for summary in plan.pools}
        with self._lock:
            for gone in sorted(self._pools - pools):
                self._remove_pool(gone)
            self._pools = pools
        for summary in plan.pools:
            self.runners_desired.labels(summary.name).set(summary.desired)
            self.runners_running.labels(summary.name).set(summary.running)
            self.runners_outdated.labels(summary.name).set(summary.outdated)
            self.rollout_halted.labels(summary.name).set(int(bool(summary.rollout_halted)))
            self.spot_fallback.labels(summary.name).set(int(bool(summary.spot_fallback)))
            self.runners_draining.labels(summary.name).set(summary.draining)
            for state, count in zip(
                RUNNER_STATES,
                (summary.busy, summary.idle, summary.unknown, summary.failed),
                strict=True,
            ):
                self.runners.labels(summary.name, state).set(count)
        for note in plan.notes:
            if note.severity == "error":
                self.reconcile_errors.labels(note.pool or NO_POOL, "blocked").inc()
        for action, _message in result.failed if result is not None else ():
            self.reconcile_errors.labels(action.pool or NO_POOL, "apply_failed").inc()
        self.spec_errors.set(len(plan.spec_errors))
        self.reconcile_duration.observe(max(0.0, duration_seconds))
        self.last_reconcile.set_to_current_time()

    def record_failed_cycle(self, duration_seconds: float) -> None:
        """A cycle that raised before it had a plan (AWS unreachable, throttled, ...)."""
        self.reconcile_errors.labels(NO_POOL, "cycle_failed").inc()
        self.reconcile_duration.observe(max(0.0, duration_seconds))

    def record_runner_versions(self, checks: Iterable[VersionCheck]) -> None:
        """The cycle's runner version checks (series leave with their pool, see above)."""
        for check in checks:
            self.runner_version_stale.labels(check.pool).set(int(check.stale))

    def _remove_pool(self, pool: str) -> None:
        for gauge in (
            self.runners_desired,
            self.runners_running,
            self.runners_outdated,
            self.runner_version_stale,
            self.rollout_halted,
            self.spot_fallback,
            self.runners_draining,
        ):
            _remove(gauge, pool)
        for state in RUNNER_STATES:
            _remove(self.runners, pool, state)
        for state in SCALE_SET_JOB_STATES:
            _remove(self.scale_set_jobs, pool, state)
        for state in SCALE_SET_RUNNER_STATES:
            _remove(self.scale_set_runners, pool, state)
        for key in [key for key in self._queued if key[0] == pool]:
            _remove(self.queued_jobs, *key)
            self._queued.discard(key)

    # ------------------------------------------------------------------ API calls

    def record_aws_calls(self, calls: Mapping[str, int]) -> None:
        """Add what a cumulative `"service:Operation" -> n` counter gained since last time."""
        with self._lock:
            for key, gained in _gains(calls, self._seen_aws):
                service, _, operation = key.rpartition(":")
                self.aws_calls.labels(service, operation).inc(gained)

    def record_github_calls(self, calls: Mapping[str, int]) -> None:
        """Same for the GitHub client's cumulative `endpoint -> n` counter."""
        with self._lock:
            for endpoint, gained in _gains(calls, self._seen_github):
                self.github_calls.labels(endpoint).inc(gained)

    # ------------------------------------------------------------------ jobs

    def record_queued(self, counts: Mapping[tuple[str, str, str], int]) -> None:
        """Jobs waiting now, by (pool, organization, repository); series not in `counts`
        (their jobs started or were cancelled) or at zero are removed."""
        current: dict[tuple[str, str, str], int] = {}
        for (pool, organization, repository), queued in counts.items():
            key = self._labels(pool, organization, repository)
            current[key] = current.get(key, 0) + max(0, queued)
        current = {key: queued for key, queued in current.items() if queued}
        with self._lock:
            gone = self._queued - set(current)
            self._queued = set(current)
        for key in gone:
            _remove(self.queued_jobs, *key)
        for key, queued in current.items():
            self.queued_jobs.labels(*key).set(queued)

    def record_job_started(
        self,
        pool: str,
        organization: str,
        repository: str,
        queued_at: datetime.datetime,
        started_at: datetime.datetime,
    ) -> None:
        """A job left the queue: how long it waited, and the hour of week it started in."""
        started = _utc(started_at)
        wait = (started - _utc(queued_at)).total_seconds()
        labels = self._labels(pool, organization, repository)
        self.queue_wait.labels(*labels).observe(max(0.0, wait))
        self.jobs_started.labels(
            pool, labels[1], WEEKDAYS[started.weekday()], f"{started.hour:02d}"
        ).inc()

    def record_job_completed(
        self,
        pool: str,
        organization: str,
        repository: str,
        started_at: datetime.datetime,
        completed_at: datetime.datetime,
    ) -> None:
        """A job finished: its duration (an execution) and the runner time it used."""
        seconds = max(0.0, (_utc(completed_at) - _utc(started_at)).total_seconds())
        labels = self._labels(pool, organization, repository)
        self.job_duration.labels(*labels).observe(seconds)
        self.runner_seconds.labels(*labels).inc(seconds)

    def record_scale_set_message(self, pool: str, message: ScaleSetMessage) -> None:
        """A scale set's message: its statistics, and its jobs that started or completed."""
        stats = message.statistics
        jobs = (
            stats.total_available_jobs,
            stats.total_acquired_jobs,
            stats.total_assigned_jobs,
            stats.total_running_jobs,
        )
        for state, count in zip(SCALE_SET_JOB_STATES, jobs, strict=True):
            self.scale_set_jobs.labels(pool, state).set(count)
        runners = (
            stats.total_registered_runners,
            stats.total_busy_runners,
            stats.total_idle_runners,
        )
        for state, count in zip(SCALE_SET_RUNNER_STATES, runners, strict=True):
            self.scale_set_runners.labels(pool, state).set(count)
        for job in message.of_kind(JOB_STARTED):
            if job.runner_assign_time is None:
                continue
            if job.queue_time is not None:
                self.record_job_started(
                    pool, job.owner_name, job.repository, job.queue_time, job.runner_assign_time
                )
            if job.scale_set_assign_time is not None:
                startup = (job.runner_assign_time - job.scale_set_assign_time).total_seconds()
                labels = self._labels(pool, job.owner_name, job.repository)
                self.job_startup.labels(*labels).observe(max(0.0, startup))
        for job in message.of_kind(JOB_COMPLETED):
            if job.runner_assign_time is not None and job.finish_time is not None:
                self.record_job_completed(
                    pool, job.owner_name, job.repository, job.runner_assign_time, job.finish_time
                )

    def _labels(self, pool: str, organization: str, repository: str) -> tuple[str, str, str]:
        """(pool, organization, repository) labels within the caps (see the module doc)."""
        with self._lock:
            if pool == NO_POOL_JOBS:
                known = organization in self._organizations
                return pool, organization if known else OTHER_ORGANIZATION, OTHER_REPOSITORY
            if organization not in self._organizations:
                if len(self._organizations) >= self.max_organizations:
                    return pool, OTHER_ORGANIZATION, OTHER_REPOSITORY
                self._organizations.add(organization)
            key = (organization, repository)
            if key not in self._repositories:
                if len(self._repositories) >= self.max_repositories:
                    return pool, organization, OTHER_REPOSITORY
                self._repositories.add(key)
            return pool, organization, repository

    # ------------------------------------------------------------------ exposition

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type: `ControllerServer(metrics=...)`."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def _gains(totals: Mapping[str, int], seen: dict[str, int]) -> list[tuple[str, int]]:
    """What each cumulative total gained since `seen`, updating `seen`.

    A total below the last one means its source restarted (new clients): everything it
    counted since is new, as Prometheus treats counter resets.
    """
    gains: list[tuple[str, int]] = []
    for key, total in sorted(totals.items()):
        last = seen.get(key, 0)
        gained = total - last if total >= last else total
        seen[key] = total
        if gained > 0:
            gains.append((key, gained))
    return gains


def _remove(metric: Gauge, *labels: str) -> None:
    with contextlib.suppress(KeyError):  # prometheus-client < 0.21 raises for unknown series
        metric.remove(*labels)


def _utc(moment: datetime.datetime) -> datetime.datetime:
    """An aware UTC datetime; naive ones are taken as UTC (as GitHub's timestamps are)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=datetime.UTC)
    return moment.astimezone(datetime.UTC)
