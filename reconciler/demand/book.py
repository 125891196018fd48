"""Pending demand per pool, from `workflow_job` events, durable across restarts and replicas.

Job state only moves forward: queued/waiting < in_progress < completed. Only `queued` jobs
are pending; `in_progress` ones are assigned; `completed` ones (any conclusion, including
cancelled while queued) are gone. An event older than the job's state is ignored, so a late
`queued` after `in_progress`/`completed` cannot resurrect the job (the finished job is kept as
a tombstone until `forget_older_than`).

Which pool a pending job counts for:

- a pool serves a job when every job label is one of the pool's labels (GitHub semantics,
  case-insensitive; `self-hosted` is just a label) and the job is in the pool's scope:
  organization scope -> the job's organization (repository owner) is it; repository scope ->
  the job's repository `owner/name` is it; enterprise scope -> any job (payloads do not always
  carry the enterprise slug, so the slug is not checked);
- and the pool's runner group admits the job (`runnerGroupAccess`: selected repositories of an
  organization's group, selected organizations of an enterprise's group): GitHub hands a
  group's runners only to jobs of repositories the group admits ("Managing access to
  self-hosted runners using groups"), so a job the group refuses is never this pool's demand;
- a job several pools can serve counts once, for the most specific pool: the one with the
  fewest labels, ties broken by pool name;
- a repository contributes at most `max_per_repository` pending jobs to a pool (oldest first).

Durability: a `DemandStore` (`store.py`) keeps delivery ids (dedupe) and job states;
`DynamoDemandStore` shares them between replicas: the standby's accepted webhooks reach the
leader's `load()`.
"""

from __future__ import annotations

import dataclasses
import datetime
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from ..clock import UtcClock, utc_now
from ..spec.models import RunnerPool
from .events import JobEvent
from .store import DemandStore, JobRecord


@dataclass(frozen=True)
class PoolDemandSpec:
    """What the demand book needs to know of a pool."""

    name: str
    scope_kind: str  # enterprise | organization | repository
    scope_name: str
    labels: frozenset[str]
    max_per_repository: int | None = None
    #: the runner group's access: lower-case repositories (owner/name) or organizations it
    #: admits; None: every repository of the scope (group visibility `all`)
    admits_repositories: frozenset[str] | None = None
    admits_organizations: frozenset[str] | None = None

    @classmethod
    def of(cls, pool: RunnerPool) -> PoolDemandSpec:
        """What the demand book needs of a pool spec."""
        spec, access = pool.spec, pool.spec.runner_group_access
        return cls(
            name=pool.metadata.name,
            scope_kind=spec.scope.kind,
            scope_name=spec.scope.target,
            labels=frozenset(spec.labels),
            max_per_repository=spec.scaling.max_per_repository,
            admits_repositories=_lower(access.repositories if access else None),
            admits_organizations=_lower(access.organizations if access else None),
        )

    def serves(self, job: JobRecord | JobEvent) -> bool:
        """True when this pool may run the job (labels, scope and runner group access)."""
        labels = {label.lower() for label in self.labels}
        if not {label.lower() for label in job.labels} <= labels:
            return False
        if not self.admits(job):
            return False
        if self.scope_kind == "organization":
            return job.organization.lower() == self.scope_name.lower()
        if self.scope_kind == "repository":
            return job.repository.lower() == self.scope_name.lower()
        return self.scope_kind == "enterprise"

    def matches(self, job: JobRecord | JobEvent) -> bool:
        """True when labels and scope fit, whatever the runner group admits."""
        return dataclasses.replace(
            self, admits_repositories=None, admits_organizations=None
        ).serves(job)

    def admits(self, job: JobRecord | JobEvent) -> bool:
        """True when the pool's runner group lets the job's repository use it."""
        if self.admits_repositories is not None:
            return job.repository.lower() in self.admits_repositories
        if self.admits_organizations is not None:
            return job.organization.lower() in self.admits_organizations
        return True


def _lower(names: list[str] | None) -> frozenset[str] | None:
    return None if names is None else frozenset(name.lower() for name in names)


class DemandBook:
    """Pending jobs per pool; `record` takes webhook events, `load` refreshes from the store."""

    def __init__(
        self,
        store: DemandStore,
        clock: UtcClock = utc_now,
    ) -> None:
        self.store = store
        self.clock = clock
        self._jobs: dict[int, JobRecord] = {}
        self._lock = threading.Lock()

    def record(self, event: JobEvent, pool: str | None = None) -> bool:
        """Apply one event; False when its delivery was recorded before (a duplicate).

        `pool` is the pool the job counts for now (`pool_for`): the store files a queued job
        under it, and `load` reads the queued jobs by pool. Without one, the job counts in
        this book only until its next `load`.
        """
        now = self.clock()
        job = JobRecord(
            job_id=event.job_id,
            state=event.action,
            repository=event.repository,
            organization=event.organization,
            labels=event.labels,
            created_at=event.created_at,
            seen_at=now,
            pool=pool,
        )
        # the state and the delivery id in one step: a failure stores neither, so GitHub's
        # redelivery is not mistaken for a duplicate
        stored, new = self.store.record(job, event.delivery)
        if stored is not None:
            with self._lock:  # writers race: an older answer never replaces a newer one
                known = self._jobs.get(stored.job_id)
                if known is None or known.rank <= stored.rank:
                    self._jobs[stored.job_id] = stored
        return new

    def load(self, pools: Sequence[PoolDemandSpec]) -> None:
        """Rebuild from the store's queued jobs of `pools`: each cycle on the leader."""
        jobs = self.store.load(self.clock(), [pool.name for pool in pools])
        with self._lock:
            self._jobs = {job.job_id: job for job in jobs}

    def pending(self, pools: Sequence[PoolDemandSpec]) -> dict[str, int]:
        """Pending jobs per pool name, each job counted once, capped per repository."""
        return {name: len(jobs) for name, jobs in self._assign(pools).items()}

    def queued(self, pools: Sequence[PoolDemandSpec]) -> dict[tuple[str, str, str], int]:
        """Every queued job (no cap) per (pool, organization, repository), for metrics."""
        ordered = _by_specificity(pools)
        counts: Counter[tuple[str, str, str]] = Counter()
        for job in self._queued():
            if (pool := _first_serving(job, ordered)) is not None:
                counts[(pool.name, job.organization, job.repository)] += 1
        return dict(counts)

    def pending_jobs(self, pool: str, pools: Sequence[PoolDemandSpec]) -> list[JobRecord]:
        """The pending jobs counted for `pool` (oldest first); `pools` decides specificity."""
        return self._assign(pools).get(pool, [])

    def job(self, job_id: int) -> JobRecord | None:
        """The job's latest known state."""
        with self._lock:
            return self._jobs.get(job_id)

    def queue_wait_seconds(self, event: JobEvent) -> float | None:
        """Seconds an `in_progress` job waited for a runner (started - created); else None."""
        if event.action != "in_progress":
            return None
        return max(0.0, (event.at - event.created_at).total_seconds())

    def forget_older_than(self, age: datetime.timedelta) -> None:
        """Drop jobs and delivery ids recorded longer than `age` ago (GitHub cancels jobs
        queued for 24 h, so a day or two keeps memory bounded without losing demand)."""
        cutoff = self.clock() - age
        self.store.forget(cutoff)
        with self._lock:
            self._jobs = {i: job for i, job in self._jobs.items() if job.seen_at >= cutoff}

    def refused_by_groups(self, pools: Sequence[PoolDemandSpec]) -> dict[tuple[str, str], int]:
        """Queued jobs no pool serves although a pool's labels and scope fit them: that pool's
        runner group does not admit their repository, so GitHub never hands them its runners.
        Counted per (first such pool, repository)."""
        ordered = _by_specificity(pools)
        refused: Counter[tuple[str, str]] = Counter()
        for job in self._queued():
            if _first_serving(job, ordered) is not None:
                continue
            matching = next((pool for pool in ordered if pool.matches(job)), None)
            if matching is not None:
                refused[(matching.name, job.repository)] += 1
        return dict(refused)

    def queued_jobs(self) -> list[JobRecord]:
        """Every job queued in the book (any pool), oldest first."""
        return self._queued()

    def _queued(self) -> list[JobRecord]:
        """Queued jobs, oldest first."""
        with self._lock:
            queued = [job for job in self._jobs.values() if job.state == "queued"]
        return sorted(queued, key=lambda job: (job.created_at, job.job_id))

    def _assign(self, pools: Sequence[PoolDemandSpec]) -> dict[str, list[JobRecord]]:
        ordered = _by_specificity(pools)
        assigned: dict[str, list[JobRecord]] = {pool.name: [] for pool in pools}
        per_repository: Counter[tuple[str, str]] = Counter()
        for job in self._queued():
            pool = _first_serving(job, ordered)
            if pool is None:
                continue
            key = (pool.name, job.repository.lower())
            per_repository[key] += 1
            if pool.max_per_repository is None or per_repository[key] <= pool.max_per_repository:
                assigned[pool.name].append(job)
        return assigned


def _by_specificity(pools: Sequence[PoolDemandSpec]) -> list[PoolDemandSpec]:
    """Most specific first: fewest labels, then pool name."""
    return sorted(pools, key=lambda pool: (len(pool.labels), pool.name))


def pool_for(job: JobRecord | JobEvent, pools: Sequence[PoolDemandSpec]) -> PoolDemandSpec | None:
    """The most specific pool serving the job, or None."""
    return _first_serving(job, _by_specificity(pools))


def filing_pool(
    job: JobRecord | JobEvent, pools: Sequence[PoolDemandSpec]
) -> PoolDemandSpec | None:
    """The pool a job is stored under: the one it counts for (`pool_for`), else the most
    specific pool whose labels and scope fit it but whose runner group refuses it (kept so
    the cycle can say that no group admits it, `DemandBook.refused_by_groups`); else None."""
    ordered = _by_specificity(pools)
    serving = _first_serving(job, ordered)
    if serving is not None:
        return serving
    return next((pool for pool in ordered if pool.matches(job)), None)


def _first_serving(
    job: JobRecord | JobEvent, ordered: Sequence[PoolDemandSpec]
) -> PoolDemandSpec | None:
    return next((pool for pool in ordered if pool.serves(job)), None)
