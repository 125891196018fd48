"""The fast webhook path: acknowledge from a bounded queue, store from writer threads.

The store here is an in-memory `DemandStore` that can be held (every call blocks until
released) or made to fail: the slow or unreachable DynamoDB of production, without sleeps.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import threading
import uuid
from collections.abc import Iterator

import pytest
from botocore.exceptions import ClientError

from reconciler.demand import (
    DemandBook,
    DemandWriter,
    DynamoDemandStore,
    JobEvent,
    JobRecord,
    MemoryDemandStore,
    PoolDemandSpec,
    WebhookReceiver,
)
from reconciler.demand.store import QUEUE_INDEX, Recorded
from reconciler.sandbox import payloads
from reconciler.sandbox.server import MotoServer

from .conftest import wait_for

SECRET = b"s3cret"
POOLS = (PoolDemandSpec("linux", "organization", "acme", frozenset({"self-hosted", "linux"})),)
T0 = datetime.datetime(2026, 11, 29, 10, 0, tzinfo=datetime.UTC)


class HeldStore(MemoryDemandStore):
    """A memory store whose calls wait while `held` is clear, and fail `failures` times."""

    def __init__(self) -> None:
        super().__init__()
        self.released = threading.Event()
        self.released.set()
        self.failures = 0
        self.calls = 0
        self.waiting = 0  # calls that entered (held or not)

    def _gate(self) -> None:
        self.waiting += 1
        self.released.wait(timeout=30)
        self.calls += 1
        if self.failures > 0:
            self.failures -= 1
            raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException"}}, "X")

    def record(self, job: JobRecord, delivery: str) -> Recorded:
        self._gate()
        return super().record(job, delivery)


def delivery(
    job_id: int,
    action: str = "queued",
    labels: tuple[str, ...] = ("self-hosted", "linux"),
    owner: str = "acme",
) -> tuple[dict[str, str], bytes]:
    payload = payloads.workflow_job_payload(
        action,
        job_id=job_id,
        repository_name=f"{owner}/app",
        labels=list(labels),
        created_at=T0.timestamp(),
        started_at=None,
        completed_at=None,
        runner_name=None,
    )
    body = json.dumps(payload).encode()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "workflow_job",
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest(),
    }
    return headers, body


@pytest.fixture
def store() -> HeldStore:
    return HeldStore()


@pytest.fixture
def recorded() -> list[JobEvent]:
    return []


@pytest.fixture
def receiver(store: HeldStore, recorded: list[JobEvent]) -> Iterator[WebhookReceiver]:
    book = DemandBook(store, lambda: T0)
    receiver = WebhookReceiver.queued(
        SECRET, book, lambda: POOLS, recorded.append, capacity=5, writers=2, retry_base=0.01
    )
    yield receiver
    store.released.set()
    receiver.close(timeout=5)


def test_acknowledged_while_the_store_is_held_then_stored(
    receiver: WebhookReceiver, store: HeldStore, recorded: list[JobEvent]
) -> None:
    store.released.clear()  # DynamoDB answers nothing for now
    for job_id in range(5):
        assert receiver.handle(*delivery(job_id)).status == 200
    assert recorded == [] and store.jobs == {}
    store.released.set()
    assert receiver.writer is not None and receiver.writer.drain(timeout=10)
    assert sorted(event.job_id for event in recorded) == [0, 1, 2, 3, 4]
    assert {job.pool for job in store.jobs.values()} == {"linux"}
    assert receiver.writer.counts["recorded"] == 5


def test_a_full_queue_is_503_and_nothing_acknowledged_is_lost(
    receiver: WebhookReceiver, store: HeldStore, recorded: list[JobEvent]
) -> None:
    store.released.clear()
    answers = [receiver.handle(*delivery(job_id)).status for job_id in range(2)]
    wait_for(lambda: store.waiting == 2)  # each of the 2 writers holds one event
    answers += [receiver.handle(*delivery(job_id)).status for job_id in range(2, 12)]
    # 5 more wait in the queue, the rest are refused
    assert answers == [200] * 7 + [503] * 5
    store.released.set()
    assert receiver.writer is not None and receiver.writer.drain(timeout=10)
    acknowledged = [job_id for job_id, status in enumerate(answers) if status == 200]
    assert sorted(event.job_id for event in recorded) == acknowledged
    assert receiver.counts["queue_full"] == 5


def test_store_failures_are_retried_until_stored(
    receiver: WebhookReceiver, store: HeldStore, recorded: list[JobEvent]
) -> None:
    store.failures = 3
    assert receiver.handle(*delivery(1)).status == 200
    assert receiver.writer is not None and receiver.writer.drain(timeout=10)
    assert [event.job_id for event in recorded] == [1]
    assert receiver.writer.counts["retried"] == 3


def test_a_redelivered_event_is_stored_once(
    receiver: WebhookReceiver, recorded: list[JobEvent]
) -> None:
    headers, body = delivery(1)
    assert receiver.handle(headers, body).status == 200
    assert receiver.handle(headers, body).status == 200
    assert receiver.writer is not None and receiver.writer.drain(timeout=10)
    assert [event.job_id for event in recorded] == [1]
    assert receiver.writer.counts == {"recorded": 1, "duplicate": 1}


def test_jobs_no_pool_serves_are_dropped_before_storage(
    receiver: WebhookReceiver, store: HeldStore
) -> None:
    hosted = receiver.handle(*delivery(1, labels=("ubuntu-latest",)))
    other_org = receiver.handle(*delivery(2, owner="other"))
    assert (hosted.status, other_org.status) == (200, 200)
    assert "no pool serves it" in hosted.message
    assert receiver.writer is not None and receiver.writer.drain(timeout=10)
    assert store.calls == 0 and receiver.counts["no_pool"] == 2


def test_events_wait_until_the_pools_are_known(store: HeldStore) -> None:
    """Deliveries taken before the controller's first cycle are stored after it."""
    known: list[tuple[PoolDemandSpec, ...] | None] = [None]
    recorded: list[JobEvent] = []
    receiver = WebhookReceiver.queued(
        SECRET, DemandBook(store, lambda: T0), lambda: known[0], recorded.append
    )
    try:
        assert receiver.handle(*delivery(1)).status == 200
        assert receiver.writer is not None and not receiver.writer.drain(timeout=0.3)
        known[0] = POOLS
        assert receiver.writer.drain(timeout=10)
        assert [event.job_id for event in recorded] == [1]
    finally:
        receiver.close()


def test_the_synchronous_receiver_refuses_until_the_pools_are_known() -> None:
    book = DemandBook(MemoryDemandStore(), lambda: T0)
    receiver = WebhookReceiver(SECRET, book, pools=lambda: None)
    result = receiver.handle(*delivery(1))
    assert (result.status, receiver.counts["not_ready"]) == (503, 1)


def test_writer_options_are_checked(store: HeldStore) -> None:
    with pytest.raises(ValueError, match="capacity >= 1"):
        DemandWriter(DemandBook(store), lambda: POOLS, capacity=0)


# -- the DynamoDB store: queued jobs by pool, read with Query ---------------------------------


def operations(client: object) -> list[str]:
    """Every DynamoDB operation the client sends from now on."""
    seen: list[str] = []
    client.meta.events.register("before-call", lambda model, **_: seen.append(model.name))  # type: ignore[attr-defined]
    return seen


def test_queued_jobs_are_read_by_pool_with_query(moto: MotoServer) -> None:
    dynamodb = moto.client("dynamodb", "us-east-1")
    store = DynamoDemandStore(dynamodb, f"demand-{uuid.uuid4().hex[:8]}")
    store.ensure_table()
    book = DemandBook(store, lambda: T0)
    other = PoolDemandSpec("other", "organization", "other", frozenset({"self-hosted", "linux"}))
    for job_id in range(20):
        book.record(_event(job_id, "other"), "other")
    for job_id in (100, 101, 102):
        book.record(_event(job_id, "acme"), "linux")
    book.record(_event(101, "acme", "in_progress"), "linux")  # leaves the queue
    book.record(_event(102, "acme", "completed"), "linux")
    sent = operations(dynamodb)
    reader = DemandBook(DynamoDemandStore(dynamodb, store.table), lambda: T0)
    reader.load(POOLS)
    assert sent == ["Query"]  # one Query for one pool; never a Scan
    assert reader.pending(POOLS) == {"linux": 1}
    reader.load((*POOLS, other))
    assert reader.pending((*POOLS, other)) == {"linux": 1, "other": 20}


def test_a_table_from_before_the_index_gets_it(moto: MotoServer) -> None:
    dynamodb = moto.client("dynamodb", "us-east-1")
    table = f"demand-{uuid.uuid4().hex[:8]}"
    dynamodb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    DynamoDemandStore(dynamodb, table).ensure_table()
    indexes = dynamodb.describe_table(TableName=table)["Table"]["GlobalSecondaryIndexes"]
    assert [index["IndexName"] for index in indexes] == [QUEUE_INDEX]


def _event(job_id: int, owner: str, action: str = "queued") -> JobEvent:
    return JobEvent(
        delivery=f"{job_id}-{action}",
        action=action,
        job_id=job_id,
        run_id=job_id,
        repository=f"{owner}/app",
        organization=owner,
        labels=("self-hosted", "linux"),
        conclusion=None,
        runner_name=None,
        at=T0,
        created_at=T0,
    )
