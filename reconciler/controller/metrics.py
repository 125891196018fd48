"""Prometheus metrics of the controller, served at /metrics.

Runner counts per pool come from each cycle's plan; reconcile duration and errors from the
loop; AWS (and, once the GitHub integration lands, GitHub) API calls from the clients'
counters; job events (queued, started, completed) feed the queue-wait histogram, the
hour-of-week demand counter and the per-organization / repository usage used for cost
allocation. Label cardinality: pools x (organizations + repositories) x 7 x 24 at most for
the hour-of-week counter; no label carries a job or run ID.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from ..aws.executor import ApplyResult
from ..plan.actions import Plan

QUEUE_WAIT_BUCKETS = (1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1800)
JOB_DURATION_BUCKETS = (30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400)
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
JOB_LABELS = ("pool", "organization", "repository")


class ControllerMetrics:
    """Every metric the controller exports, in a registry of its own."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.runners = Gauge(
            "ecs_reconciler_runners",
            "Runner tasks by pool and state.",
            ["pool", "state"],
            registry=r,
        )
        self.runners_desired = Gauge(
            "ecs_reconciler_runners_desired", "Desired runner tasks by pool.", ["pool"], registry=r
        )
        self.queued_jobs = Gauge(
            "ecs_reconciler_queued_jobs", "Jobs waiting for a runner.", JOB_LABELS, registry=r
        )
        self.queue_wait = Histogram(
            "ecs_reconciler_job_queue_wait_seconds",
            "Time from a job being queued to it starting on a runner.",
            JOB_LABELS,
            buckets=QUEUE_WAIT_BUCKETS,
            registry=r,
        )
        self.jobs_started = Counter(
            "ecs_reconciler_jobs_started",
            "Jobs started, by hour of week (UTC).",
            [*JOB_LABELS, "weekday", "hour"],
            registry=r,
        )
        self.job_duration = Histogram(
            "ecs_reconciler_job_duration_seconds",
            "Job execution time on a runner.",
            JOB_LABELS,
            buckets=JOB_DURATION_BUCKETS,
            registry=r,
        )
        self.runner_seconds = Counter(
            "ecs_reconciler_runner_seconds",
            "Busy runner time, for cost allocation.",
            JOB_LABELS,
            registry=r,
        )
        self.reconcile_duration = Histogram(
            "ecs_reconciler_reconcile_duration_seconds", "Duration of one cycle.", registry=r
        )
        self.reconcile_errors = Counter(
            "ecs_reconciler_reconcile_errors",
            "Failed actions and blocking errors.",
            ["pool"],
            registry=r,
        )
        self.aws_calls = Counter(
            "ecs_reconciler_aws_api_calls", "AWS API calls.", ["operation"], registry=r
        )
        self.github_calls = Counter(
            "ecs_reconciler_github_api_calls", "GitHub API calls.", ["endpoint"], registry=r
        )
        self._pools: set[str] = set()
        self._seen_aws: dict[str, int] = {}
        self._seen_github: dict[str, int] = {}

    def record_cycle(self, plan: Plan, duration_seconds: float, result: ApplyResult | None) -> None:
        """Runner gauges from the plan, cycle duration, errors per pool."""
        self.reconcile_duration.observe(duration_seconds)
        pools = {summary.name for summary in plan.pools}
        for gone in self._pools - pools:
            self.runners_desired.remove(gone)
            for state in ("busy", "idle", "unknown"):
                self.runners.remove(gone, state)
        self._pools = pools
        for summary in plan.pools:
            self.runners_desired.labels(summary.name).set(summary.desired)
            self.runners.labels(summary.name, "busy").set(summary.busy)
            self.runners.labels(summary.name, "idle").set(summary.idle)
            self.runners.labels(summary.name, "unknown").set(summary.unknown)
        for note in plan.notes:
            if note.severity == "error" and note.pool:
                self.reconcile_errors.labels(note.pool).inc()
        for action, _ in result.failed if result else []:
            self.reconcile_errors.labels(action.pool or "").inc()

    def record_aws_calls(self, calls: Mapping[str, int]) -> None:
        """Add what a cumulative call counter gained since the last call."""
        _add_delta(self.aws_calls, calls, self._seen_aws)

    def record_github_calls(self, calls: Mapping[str, int]) -> None:
        """Same for the GitHub client's counter."""
        _add_delta(self.github_calls, calls, self._seen_github)

    def record_queued_jobs(
        self, pool: str, organization: str, repository: str, queued: int
    ) -> None:
        """Jobs of one repository waiting for a runner of one pool."""
        self.queued_jobs.labels(pool, organization, repository).set(queued)

    def record_job_started(
        self,
        pool: str,
        organization: str,
        repository: str,
        queued_at: datetime.datetime,
        started_at: datetime.datetime,
    ) -> None:
        """A job left the queue: its wait, and the hour of week it started in."""
        labels = (pool, organization, repository)
        self.queue_wait.labels(*labels).observe(max(0.0, (started_at - queued_at).total_seconds()))
        utc = started_at.astimezone(datetime.UTC)
        self.jobs_started.labels(*labels, WEEKDAYS[utc.weekday()], f"{utc.hour:02d}").inc()

    def record_job_completed(
        self,
        pool: str,
        organization: str,
        repository: str,
        started_at: datetime.datetime,
        completed_at: datetime.datetime,
    ) -> None:
        """A job finished: its duration, and the busy runner time it used."""
        seconds = max(0.0, (completed_at - started_at).total_seconds())
        self.job_duration.labels(pool, organization, repository).observe(seconds)
        self.runner_seconds.labels(pool, organization, repository).inc(seconds)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type, for /metrics."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def _add_delta(counter: Counter, totals: Mapping[str, int], seen: dict[str, int]) -> None:
    for key, total in totals.items():
        gained = total - seen.get(key, 0)
        if gained > 0:
            counter.labels(key).inc(gained)
        seen[key] = total
