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
- a job several pools can serve counts once, for the most specific pool: the one with the
  fewest labels, ties broken by pool name;
- a repository contributes at most `max_per_repository` pending jobs to a pool (oldest first).

Durability: a `DemandStore` keeps delivery ids (dedupe) and job states. `DynamoDemandStore`
shares them between replicas: the standby's accepted webhooks reach the leader's `load()`.
"""

from __future__ import annotations

import datetime
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from botocore.exceptions import ClientError

from ..aws.dynamodb import ensure_table
from ..clock import UtcClock, utc_now
from ..spec.models import RunnerPool
from .webhook import JobEvent

#: how far each action moves a job; waiting and queued share a rank (either may follow the other)
RANK = {"waiting": 0, "queued": 0, "in_progress": 1, "completed": 2}
ITEM_TTL = datetime.timedelta(hours=48)


@dataclass(frozen=True)
class PoolDemandSpec:
    """What the demand book needs to know of a pool."""

    name: str
    scope_kind: str  # enterprise | organization | repository
    scope_name: str
    labels: frozenset[str]
    max_per_repository: int | None = None

    @classmethod
    def of(cls, pool: RunnerPool) -> PoolDemandSpec:
        """What the demand book needs of a pool spec."""
        spec = pool.spec
        return cls(
            name=pool.metadata.name,
            scope_kind=spec.scope.kind,
            scope_name=spec.scope.target,
            labels=frozenset(spec.labels),
            max_per_repository=spec.scaling.max_per_repository,
        )

    def serves(self, job: JobRecord | JobEvent) -> bool:
        """True when this pool may run the job (labels and scope)."""
        labels = {label.lower() for label in self.labels}
        if not {label.lower() for label in job.labels} <= labels:
            return False
        if self.scope_kind == "organization":
            return job.organization.lower() == self.scope_name.lower()
        if self.scope_kind == "repository":
            return job.repository.lower() == self.scope_name.lower()
        return self.scope_kind == "enterprise"


@dataclass(frozen=True)
class JobRecord:
    """A job's latest known state."""

    job_id: int
    state: str  # waiting | queued | in_progress | completed
    repository: str
    organization: str
    labels: tuple[str, ...]
    created_at: datetime.datetime
    seen_at: datetime.datetime  # when the state was recorded (for forgetting)

    @property
    def rank(self) -> int:
        return RANK[self.state]


class DemandStore(Protocol):
    """Where delivery ids and job states live."""

    def add_delivery(self, delivery: str, now: datetime.datetime) -> bool:
        """Record a delivery id; False when it was recorded before."""
        ...

    def advance(self, job: JobRecord) -> JobRecord:
        """Store the job unless its stored state is ahead; return the stored record."""
        ...

    def load(self, now: datetime.datetime) -> list[JobRecord]:
        """Every job record not yet expired."""
        ...

    def forget(self, cutoff: datetime.datetime) -> None:
        """Drop finished jobs, tombstones and delivery ids recorded before `cutoff`."""
        ...


class MemoryDemandStore:
    """A process-local store (tests, single replica without durability)."""

    def __init__(self) -> None:
        self.deliveries: dict[str, datetime.datetime] = {}
        self.jobs: dict[int, JobRecord] = {}
        self._lock = threading.Lock()

    def add_delivery(self, delivery: str, now: datetime.datetime) -> bool:
        with self._lock:
            if delivery in self.deliveries:
                return False
            self.deliveries[delivery] = now
            return True

    def advance(self, job: JobRecord) -> JobRecord:
        with self._lock:
            stored = self.jobs.get(job.job_id)
            if stored is None or stored.rank <= job.rank:
                self.jobs[job.job_id] = stored = job
            return stored

    def load(self, now: datetime.datetime) -> list[JobRecord]:
        with self._lock:
            return list(self.jobs.values())

    def forget(self, cutoff: datetime.datetime) -> None:
        with self._lock:
            self.deliveries = {d: at for d, at in self.deliveries.items() if at >= cutoff}
            self.jobs = {i: job for i, job in self.jobs.items() if job.seen_at >= cutoff}


class DynamoDemandStore:
    """A DynamoDB table shared by replicas: `delivery#<id>` and `job#<id>` items, 48 h TTL.

    A delivery is one conditional PutItem (`attribute_not_exists`), so two replicas receiving
    the same redelivery accept it once. Job items are updated only forward (by `rank`).
    """

    def __init__(self, dynamodb: Any, table: str = "ecs-reconciler-demand") -> None:
        self.dynamodb = dynamodb
        self.table = table

    def ensure_table(self, timeout: float = 30.0) -> None:
        """Create the table (on-demand, key `pk`, TTL on `ttl`) if missing; idempotent."""
        ensure_table(self.dynamodb, self.table, "pk", timeout)
        ttl = self.dynamodb.describe_time_to_live(TableName=self.table)
        if ttl["TimeToLiveDescription"].get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
            self.dynamodb.update_time_to_live(
                TableName=self.table,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": "ttl"},
            )

    def add_delivery(self, delivery: str, now: datetime.datetime) -> bool:
        try:
            self.dynamodb.put_item(
                TableName=self.table,
                Item={"pk": {"S": f"delivery#{delivery}"}, "ttl": {"N": _expiry(now)}},
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def advance(self, job: JobRecord) -> JobRecord:
        key = {"pk": {"S": f"job#{job.job_id}"}}
        try:
            self.dynamodb.update_item(
                TableName=self.table,
                Key=key,
                UpdateExpression=(
                    "SET #state = :state, #rank = :rank, repository = :repository, "
                    "organization = :organization, labels = :labels, createdAt = :created, "
                    "seenAt = :seen, #ttl = :ttl"
                ),
                ConditionExpression="attribute_not_exists(pk) OR #rank <= :rank",
                ExpressionAttributeNames={"#state": "state", "#rank": "rank", "#ttl": "ttl"},
                ExpressionAttributeValues={
                    ":state": {"S": job.state},
                    ":rank": {"N": str(job.rank)},
                    ":repository": {"S": job.repository},
                    ":organization": {"S": job.organization},
                    ":labels": {"L": [{"S": label} for label in job.labels]},
                    ":created": {"S": job.created_at.isoformat()},
                    ":seen": {"S": job.seen_at.isoformat()},
                    ":ttl": {"N": _expiry(job.seen_at)},
                },
            )
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            item = self.dynamodb.get_item(TableName=self.table, Key=key, ConsistentRead=True)
            return _job_of(item["Item"])
        return job

    def load(self, now: datetime.datetime) -> list[JobRecord]:
        pages = self.dynamodb.get_paginator("scan").paginate(
            TableName=self.table,
            ConsistentRead=True,
            FilterExpression="begins_with(pk, :job) AND #ttl > :now",
            ExpressionAttributeNames={"#ttl": "ttl"},
            ExpressionAttributeValues={
                ":job": {"S": "job#"},
                ":now": {"N": str(int(now.timestamp()))},
            },
        )
        return [_job_of(item) for page in pages for item in page.get("Items", [])]

    def forget(self, cutoff: datetime.datetime) -> None:
        """Nothing to do: items expire through the table's TTL (and `load` skips expired)."""


def _expiry(at: datetime.datetime) -> str:
    return str(int((at + ITEM_TTL).timestamp()))


def _job_of(item: dict[str, Any]) -> JobRecord:
    return JobRecord(
        job_id=int(item["pk"]["S"].removeprefix("job#")),
        state=item["state"]["S"],
        repository=item["repository"]["S"],
        organization=item["organization"]["S"],
        labels=tuple(label["S"] for label in item["labels"]["L"]),
        created_at=datetime.datetime.fromisoformat(item["createdAt"]["S"]),
        seen_at=datetime.datetime.fromisoformat(item["seenAt"]["S"]),
    )


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

    def record(self, event: JobEvent) -> bool:
        """Apply one event; False when its delivery was recorded before (a duplicate)."""
        now = self.clock()
        job = JobRecord(
            job_id=event.job_id,
            state=event.action,
            repository=event.repository,
            organization=event.organization,
            labels=event.labels,
            created_at=event.created_at,
            seen_at=now,
        )
        # state first, delivery id second: if the store fails in between, GitHub's redelivery
        # is not mistaken for a duplicate (re-applying an event is harmless: states only advance)
        stored = self.store.advance(job)
        with self._lock:
            self._jobs[stored.job_id] = stored
        return self.store.add_delivery(event.delivery, now)

    def load(self) -> None:
        """Rebuild from the store: on start, and each cycle on the leader."""
        jobs = self.store.load(self.clock())
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


def _first_serving(
    job: JobRecord | JobEvent, ordered: Sequence[PoolDemandSpec]
) -> PoolDemandSpec | None:
    return next((pool for pool in ordered if pool.serves(job)), None)
