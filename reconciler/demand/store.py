"""Where job states and delivery ids live: in memory, or in a DynamoDB table shared by replicas.

Job state only moves forward: queued/waiting < in_progress < completed; a store never lets an
older state overwrite a newer one. A queued job is stored under the pool the book counted it
for when it arrived (`JobRecord.pool`), so a replica reads the queued jobs of its pools, not
the whole table: in DynamoDB, a sparse index on `queuedPool` that only queued jobs carry, read
with one Query per pool.
"""

from __future__ import annotations

import datetime
import threading
import time
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from botocore.config import Config
from botocore.exceptions import ClientError

from ..aws.dynamodb import ensure_table

#: how far each action moves a job; waiting and queued share a rank (either may follow the other)
RANK = {"waiting": 0, "queued": 0, "in_progress": 1, "completed": 2}
ITEM_TTL = datetime.timedelta(hours=48)
QUEUE_INDEX = "queued-by-pool"
#: the store's DynamoDB client: a slow or unreachable table fails in seconds, not minutes (the
#: demand writer retries on its own; a cycle uses the last demand known)
CLIENT_CONFIG = Config(
    connect_timeout=1,
    read_timeout=2,
    retries={"mode": "standard", "max_attempts": 2},
    max_pool_connections=32,  # the demand writer's threads (16) and the controller's reads
)


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
    pool: str | None = None  # the pool it counted for when stored (None: not known then)

    @property
    def rank(self) -> int:
        return RANK[self.state]

    @property
    def queued_pool(self) -> str | None:
        """The pool whose queue holds this job: its pool while queued, else None."""
        return self.pool if self.state == "queued" else None


class Recorded(NamedTuple):
    """What `DemandStore.record` did: the job as stored now, and whether its delivery was
    new (False: a duplicate, nothing changed)."""

    job: JobRecord | None  # None: a duplicate whose job is no longer stored
    new: bool


class DemandStore(Protocol):
    """Where delivery ids and job states live."""

    def record(self, job: JobRecord, delivery: str) -> Recorded:
        """Store the job unless its stored state is ahead, and the delivery id that brought
        it, in one step: a delivery recorded before changes nothing (`new` False)."""
        ...

    def load(self, now: datetime.datetime, pools: Collection[str]) -> list[JobRecord]:
        """The queued jobs, not yet expired, stored under one of `pools`."""
        ...

    def forget(self, cutoff: datetime.datetime) -> None:
        """Drop finished jobs, tombstones and delivery ids recorded before `cutoff`."""
        ...

    def claim_redelivery(self, guid: str, now: datetime.datetime) -> bool:
        """Record that the event `guid` is being redelivered; False if it was before."""
        ...

    def release_redelivery(self, guid: str) -> None:
        """Forget a claim whose redelivery could not be requested."""
        ...


class MemoryDemandStore:
    """A process-local store (tests, single replica without durability)."""

    def __init__(self) -> None:
        self.deliveries: dict[str, datetime.datetime] = {}
        self.jobs: dict[int, JobRecord] = {}
        self.redeliveries: dict[str, datetime.datetime] = {}
        self._lock = threading.Lock()

    def record(self, job: JobRecord, delivery: str) -> Recorded:
        with self._lock:
            stored = self.jobs.get(job.job_id)
            if delivery in self.deliveries:
                return Recorded(stored, False)
            self.deliveries[delivery] = job.seen_at
            if stored is None or stored.rank <= job.rank:
                self.jobs[job.job_id] = stored = job
            return Recorded(stored, True)

    def load(self, now: datetime.datetime, pools: Collection[str]) -> list[JobRecord]:
        wanted = set(pools)
        with self._lock:
            return [job for job in self.jobs.values() if job.queued_pool in wanted]

    def claim_redelivery(self, guid: str, now: datetime.datetime) -> bool:
        with self._lock:
            if guid in self.redeliveries:
                return False
            self.redeliveries[guid] = now
            return True

    def release_redelivery(self, guid: str) -> None:
        with self._lock:
            self.redeliveries.pop(guid, None)

    def forget(self, cutoff: datetime.datetime) -> None:
        with self._lock:
            self.deliveries = {d: at for d, at in self.deliveries.items() if at >= cutoff}
            self.jobs = {i: job for i, job in self.jobs.items() if job.seen_at >= cutoff}


class DynamoDemandStore:
    """A DynamoDB table shared by replicas: `job#<id>` and `redelivery#<guid>` items, 48 h TTL.

    A delivery is one conditional UpdateItem of its job's item (`record`): the state moves
    only forward (by `rank`) and the item keeps the ids of the deliveries that reached it, so
    two replicas receiving the same redelivery accept it once. (Before issue 19 a delivery
    was two writes, the job and a `delivery#<id>` item: a 400-job burst cost 800 writes; a
    redelivery of an event first received before the upgrade counts as new once, harmless:
    states only advance.) A
    queued job carries `queuedPool`, the key of the sparse index `QUEUE_INDEX`; any other
    state removes it, so the index holds exactly the queued jobs, and `load` is one Query per
    pool however many jobs of other pools or organizations the table holds. (The index is
    eventually consistent: a job recorded by another replica a moment ago may count one cycle
    later.)
    """

    def __init__(self, dynamodb: Any, table: str = "ecs-reconciler-demand") -> None:
        self.dynamodb = dynamodb
        self.table = table
        self.calls: Counter[str] = Counter()  # by operation, for benches and tests

    def ensure_table(self, timeout: float = 30.0) -> None:
        """Create the table (on-demand, key `pk`, TTL on `ttl`) and its queue index if
        missing; idempotent. A table created before the index existed gets it added."""
        ensure_table(self.dynamodb, self.table, "pk", timeout)
        ttl = self.dynamodb.describe_time_to_live(TableName=self.table)
        if ttl["TimeToLiveDescription"].get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
            self.dynamodb.update_time_to_live(
                TableName=self.table,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": "ttl"},
            )
        deadline = time.monotonic() + timeout
        while True:
            table = self.dynamodb.describe_table(TableName=self.table)["Table"]
            indexes = {i["IndexName"]: i for i in table.get("GlobalSecondaryIndexes", [])}
            index = indexes.get(QUEUE_INDEX)
            if index is not None and index.get("IndexStatus", "ACTIVE") == "ACTIVE":
                return
            if index is None:
                self._create_queue_index()
            if time.monotonic() > deadline:
                raise TimeoutError(f"index {QUEUE_INDEX} of {self.table} not active in time")
            time.sleep(1.0)

    def _create_queue_index(self) -> None:
        try:
            self.dynamodb.update_table(
                TableName=self.table,
                AttributeDefinitions=[{"AttributeName": "queuedPool", "AttributeType": "S"}],
                GlobalSecondaryIndexUpdates=[
                    {
                        "Create": {
                            "IndexName": QUEUE_INDEX,
                            "KeySchema": [{"AttributeName": "queuedPool", "KeyType": "HASH"}],
                            "Projection": {"ProjectionType": "ALL"},
                        }
                    }
                ],
            )
        except ClientError as error:  # another replica is adding it
            code = error.response["Error"]["Code"]
            if code not in ("ResourceInUseException", "ValidationException"):
                raise

    def record(self, job: JobRecord, delivery: str) -> Recorded:
        """One conditional UpdateItem of `job#<id>`: the state moves forward (by `rank`) and
        the delivery id joins the item's `deliveries` set, unless the set holds it already.

        When the condition fails, DynamoDB returns the item as it was (asked with
        `ReturnValuesOnConditionCheckFailure: ALL_OLD`; UpdateItem in the DynamoDB API
        reference), so no read follows: a known delivery is a duplicate; otherwise the stored
        state is ahead (an event out of order), and a second write, rare, records the delivery
        id alone so that its redelivery is a duplicate too."""
        for _ in range(3):  # again only if the item vanished between the two writes (TTL)
            old = self._update_or_old(self._advance_request(job, delivery))
            if old is None:
                return Recorded(job, True)
            if _holds(old, delivery):
                return Recorded(_job_of(old), False)
            ahead = _job_of(old)
            old = self._update_or_old(
                {
                    "Key": _job_key(job.job_id),
                    "UpdateExpression": "ADD deliveries :delivery",
                    "ConditionExpression": "attribute_exists(#rank) "
                    "AND NOT contains(deliveries, :id)",
                    "ExpressionAttributeNames": {"#rank": "rank"},
                    "ExpressionAttributeValues": {
                        ":delivery": {"SS": [delivery]},
                        ":id": {"S": delivery},
                    },
                }
            )
            if old is None:
                return Recorded(ahead, True)
            if _holds(old, delivery):  # the same delivery, recorded by another replica
                return Recorded(_job_of(old), False)
        raise RuntimeError(f"job {job.job_id}: its item vanished under every attempt to record it")

    def _update_or_old(self, request: dict[str, Any]) -> dict[str, Any] | None:
        """One conditional UpdateItem: None when applied, else the item as it was when the
        condition failed (empty: there was none)."""
        self.calls["UpdateItem"] += 1
        try:
            self.dynamodb.update_item(
                TableName=self.table, ReturnValuesOnConditionCheckFailure="ALL_OLD", **request
            )
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            item: dict[str, Any] = error.response.get("Item", {})
            return item
        return None

    def _advance_request(self, job: JobRecord, delivery: str) -> dict[str, Any]:
        """The UpdateItem storing `job` and its delivery id unless either is stale.

        What the job is sits in one map, `job`: the update sets four attributes, not eleven
        (moto validates an update expression in time that grows fast with its clauses: 15 ms
        of its CPU a delivery with eleven, 6 with four, bench/burst.py). Beside it what
        conditions, the index and TTL need at the top: `rank`, `ttl` and, while queued,
        `queuedPool` (any other state removes it)."""
        fields: dict[str, Any] = {
            "state": {"S": job.state},
            "repository": {"S": job.repository},
            "organization": {"S": job.organization},
            "labels": {"L": [{"S": label} for label in job.labels]},
            "createdAt": {"S": job.created_at.isoformat()},
            "seenAt": {"S": job.seen_at.isoformat()},
        }
        if job.pool is not None:
            fields["assignedPool"] = {"S": job.pool}
        values: dict[str, Any] = {}
        if job.queued_pool is not None:
            queue_update = ", queuedPool = :pool"
            values[":pool"] = {"S": job.queued_pool}
        else:
            queue_update = " REMOVE queuedPool"
        return {
            "Key": _job_key(job.job_id),
            "UpdateExpression": "SET #job = :job, #rank = :rank, #ttl = :ttl"
            + queue_update
            + " ADD deliveries :delivery",
            "ConditionExpression": "(attribute_not_exists(pk) OR #rank <= :rank) "
            "AND NOT contains(deliveries, :id)",
            "ExpressionAttributeNames": {"#job": "job", "#rank": "rank", "#ttl": "ttl"},
            "ExpressionAttributeValues": {
                **values,
                ":job": {"M": fields},
                ":rank": {"N": str(job.rank)},
                ":ttl": {"N": _expiry(job.seen_at)},
                ":delivery": {"SS": [delivery]},
                ":id": {"S": delivery},
            },
        }

    def load(self, now: datetime.datetime, pools: Collection[str]) -> list[JobRecord]:
        jobs: list[JobRecord] = []
        for pool in sorted(set(pools)):
            pages = self.dynamodb.get_paginator("query").paginate(
                TableName=self.table,
                IndexName=QUEUE_INDEX,
                KeyConditionExpression="queuedPool = :pool",
                FilterExpression="#ttl > :now",
                ExpressionAttributeNames={"#ttl": "ttl"},
                ExpressionAttributeValues={
                    ":pool": {"S": pool},
                    ":now": {"N": str(int(now.timestamp()))},
                },
            )
            for page in pages:
                self.calls["Query"] += 1
                jobs.extend(_job_of(item) for item in page.get("Items", []))
        return jobs

    def claim_redelivery(self, guid: str, now: datetime.datetime) -> bool:
        """One conditional PutItem `redelivery#<guid>`: one replica, one request, ever."""
        return self._put_once(f"redelivery#{guid}", now)

    def _put_once(self, key: str, now: datetime.datetime) -> bool:
        """One conditional PutItem of `key` (expiring with the table's TTL): True if this call
        wrote it, False if it was there already."""
        self.calls["PutItem"] += 1
        try:
            self.dynamodb.put_item(
                TableName=self.table,
                Item={"pk": {"S": key}, "ttl": {"N": _expiry(now)}},
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def release_redelivery(self, guid: str) -> None:
        self.calls["DeleteItem"] += 1
        self.dynamodb.delete_item(TableName=self.table, Key={"pk": {"S": f"redelivery#{guid}"}})

    def forget(self, cutoff: datetime.datetime) -> None:
        """Nothing to do: items expire through the table's TTL (and `load` skips expired)."""


def _job_key(job_id: int) -> dict[str, Any]:
    return {"pk": {"S": f"job#{job_id}"}}


def _holds(item: dict[str, Any], delivery: str) -> bool:
    """True when the stored job item lists `delivery` among the deliveries recorded for it."""
    return delivery in item.get("deliveries", {}).get("SS", [])


def _expiry(at: datetime.datetime) -> str:
    return str(int((at + ITEM_TTL).timestamp()))


def _job_of(item: dict[str, Any]) -> JobRecord:
    """The job of a `job#<id>` item: its fields in the `job` map, or at the top in an item
    written before issue 19 (items live 48 h, so an upgraded replica still meets them)."""
    fields = item["job"]["M"] if "job" in item else item
    return JobRecord(
        job_id=int(item["pk"]["S"].removeprefix("job#")),
        state=fields["state"]["S"],
        repository=fields["repository"]["S"],
        organization=fields["organization"]["S"],
        labels=tuple(label["S"] for label in fields["labels"]["L"]),
        created_at=datetime.datetime.fromisoformat(fields["createdAt"]["S"]),
        seen_at=datetime.datetime.fromisoformat(fields["seenAt"]["S"]),
        pool=fields["assignedPool"]["S"] if "assignedPool" in fields else None,
    )
