"""Where job states and delivery ids live: in memory, or in a DynamoDB table shared by replicas.

Job state only moves forward: queued/waiting < in_progress < completed; a store never lets an
older state overwrite a newer one. It knows nothing of pools (the book decides which pool a job
counts for).
"""

from __future__ import annotations

import datetime
import threading
from dataclasses import dataclass
from typing import Any, Protocol

from botocore.exceptions import ClientError

from ..aws.dynamodb import ensure_table

#: how far each action moves a job; waiting and queued share a rank (either may follow the other)
RANK = {"waiting": 0, "queued": 0, "in_progress": 1, "completed": 2}
ITEM_TTL = datetime.timedelta(hours=48)


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
