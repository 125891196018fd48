"""The demand book: which pool a job counts for, the per-repository cap, job states in any
order, dedupe, forgetting, and the DynamoDB store shared by two replicas (moto's server)."""

from __future__ import annotations

import datetime
import itertools
import threading
import uuid
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from reconciler.aws.clients import AwsClients
from reconciler.aws.observe import Observer
from reconciler.demand import (
    DemandBook,
    DynamoDemandStore,
    JobEvent,
    JobRecord,
    MemoryDemandStore,
    PoolDemandSpec,
)
from reconciler.demand.store import Recorded
from reconciler.reconcile import plan_cycle
from reconciler.runners import UnknownRunnerStates
from reconciler.sandbox.server import MotoServer

from .conftest import wait_for
from .test_demand_writer import operations

REGION = "us-east-1"
POOL = "platform-linux-dind"
T0 = datetime.datetime(2026, 11, 29, 10, 0, tzinfo=datetime.UTC)
_deliveries = itertools.count()


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime.datetime:
        return self.now


def event(
    action: str = "queued",
    job_id: int = 1,
    labels: tuple[str, ...] = ("self-hosted", "linux"),
    repository: str = "acme/app",
    delivery: str | None = None,
    at: datetime.datetime = T0,
) -> JobEvent:
    owner = repository.split("/")[0]
    return JobEvent(
        delivery=delivery or f"d-{next(_deliveries)}",
        action=action,
        job_id=job_id,
        run_id=100,
        repository=repository,
        organization=owner,
        labels=labels,
        conclusion="cancelled" if action == "completed" else None,
        runner_name=None if action == "queued" else "runner-1",
        at=at,
        created_at=T0,
    )


def pool(
    name: str,
    labels: tuple[str, ...] = ("self-hosted", "linux"),
    scope: tuple[str, str] = ("organization", "acme"),
    cap: int | None = None,
) -> PoolDemandSpec:
    return PoolDemandSpec(name, scope[0], scope[1], frozenset(labels), cap)


@pytest.fixture
def book() -> DemandBook:
    return DemandBook(MemoryDemandStore(), Clock())


def test_a_job_counts_once_for_the_most_specific_pool(book: DemandBook) -> None:
    pools = [
        pool("big", ("self-hosted", "linux", "x64", "gpu")),
        pool("b-small", ("self-hosted", "linux", "x64")),
        pool("a-small", ("self-hosted", "linux", "x64")),
        pool("windows", ("self-hosted", "windows")),
    ]
    book.record(event(job_id=1, labels=("self-hosted", "linux")))
    book.record(event(job_id=2, labels=("self-hosted", "gpu")))
    book.record(event(job_id=3, labels=("ubuntu-latest",)))  # GitHub-hosted: no pool
    assert book.pending(pools) == {"big": 1, "b-small": 0, "a-small": 1, "windows": 0}
    assert [job.job_id for job in book.pending_jobs("a-small", pools)] == [1]


def test_labels_match_case_insensitively(book: DemandBook) -> None:
    book.record(event(labels=("Self-Hosted", "LINUX")))
    assert book.pending([pool("p", ("self-hosted", "Linux"))]) == {"p": 1}


@pytest.mark.parametrize(
    ("scope", "repository", "served"),
    [
        (("organization", "acme"), "acme/app", True),
        (("organization", "ACME"), "acme/app", True),
        (("organization", "other"), "acme/app", False),
        (("repository", "Acme/App"), "acme/app", True),
        (("repository", "acme/lib"), "acme/app", False),
        (("enterprise", "acme-corp"), "anyone/app", True),
    ],
)
def test_a_pool_serves_only_its_scope(
    book: DemandBook, scope: tuple[str, str], repository: str, served: bool
) -> None:
    book.record(event(repository=repository))
    assert book.pending([pool("p", scope=scope)]) == {"p": int(served)}


def test_the_narrower_scope_does_not_steal_jobs_outside_it(book: DemandBook) -> None:
    pools = [
        pool("repo-only", ("self-hosted",), scope=("repository", "acme/lib")),
        pool("org", ("self-hosted", "linux")),
    ]
    book.record(event(job_id=1, labels=("self-hosted",), repository="acme/app"))
    book.record(event(job_id=2, labels=("self-hosted",), repository="acme/lib"))
    assert book.pending(pools) == {"repo-only": 1, "org": 1}


def test_max_per_repository_caps_each_repository(book: DemandBook) -> None:
    for job_id in range(30):
        book.record(event(job_id=job_id, repository=f"acme/repo-{job_id % 3}"))
    assert book.pending([pool("capped", cap=5)]) == {"capped": 15}
    assert book.pending([pool("uncapped")]) == {"uncapped": 30}
    jobs = book.pending_jobs("capped", [pool("capped", cap=5)])
    assert sorted(job.job_id for job in jobs if job.repository == "acme/repo-0") == [
        0,
        3,
        6,
        9,
        12,
    ]


def test_job_states_and_cancelled_while_queued(book: DemandBook) -> None:
    pools = [pool("p")]
    book.record(event("queued", job_id=1))
    book.record(event("queued", job_id=2))
    book.record(event("waiting", job_id=3))  # waits for an environment approval
    assert book.pending(pools) == {"p": 2}
    book.record(event("in_progress", job_id=1))
    assert book.pending(pools) == {"p": 1}
    book.record(event("completed", job_id=2))  # cancelled while queued
    assert book.pending(pools) == {"p": 0}
    book.record(event("queued", job_id=3))  # approved
    assert book.pending(pools) == {"p": 1}


@pytest.mark.parametrize("first", ["in_progress", "completed"])
def test_a_late_queued_does_not_resurrect_a_job(book: DemandBook, first: str) -> None:
    assert book.record(event(first, job_id=9))
    assert book.record(event("queued", job_id=9))
    assert book.pending([pool("p")]) == {"p": 0}
    job = book.job(9)
    assert job is not None and job.state == first
    book.record(event("in_progress", job_id=9))
    assert book.job(9).state == first  # type: ignore[union-attr]


class AnswersLate(MemoryDemandStore):
    """A store whose answer to the queued event reaches its writer only after another writer
    recorded (and was answered) the job's in_progress: two writer threads racing."""

    def __init__(self) -> None:
        super().__init__()
        self.in_progress_answered = threading.Event()

    def record(self, job: JobRecord, delivery: str) -> Recorded:
        answer = super().record(job, delivery)
        if job.state == "queued":
            assert self.in_progress_answered.wait(10)
        return answer


def test_an_older_answer_never_replaces_a_newer_one_in_the_book() -> None:
    store = AnswersLate()
    book = DemandBook(store, Clock())
    with ThreadPoolExecutor(max_workers=1) as writer:
        queued = writer.submit(book.record, event("queued", job_id=4))
        wait_for(lambda: store.jobs.get(4) is not None, timeout=10, every=0.01)
        assert book.record(event("in_progress", job_id=4))
        store.in_progress_answered.set()
        assert queued.result()
    assert book.job(4).state == "in_progress"  # type: ignore[union-attr]
    assert book.pending([pool("p")]) == {"p": 0}


def test_a_duplicate_delivery_is_reported_and_changes_nothing(book: DemandBook) -> None:
    queued = event("queued", job_id=1, delivery="same")
    assert book.record(queued)
    assert not book.record(queued)
    assert book.pending([pool("p")]) == {"p": 1}
    book.record(event("in_progress", job_id=1))
    assert not book.record(queued), "a replayed queued delivery is still a duplicate ..."
    assert book.pending([pool("p")]) == {"p": 0}, "... and does not resurrect the job"


def test_queue_wait_seconds(book: DemandBook) -> None:
    started = event("in_progress", at=T0 + datetime.timedelta(seconds=42))
    assert book.queue_wait_seconds(started) == 42
    assert book.queue_wait_seconds(event("queued")) is None


def test_forget_older_than_drops_old_jobs_and_deliveries() -> None:
    clock = Clock()
    store = MemoryDemandStore()
    book = DemandBook(store, clock)
    book.record(event("completed", job_id=1, delivery="old"))
    clock.now += datetime.timedelta(hours=30)
    book.record(event("queued", job_id=2, delivery="new"))
    book.forget_older_than(datetime.timedelta(hours=24))
    assert book.job(1) is None and book.job(2) is not None
    assert set(store.deliveries) == {"new"} and set(store.jobs) == {2}
    assert book.pending([pool("p")]) == {"p": 1}


# -- DynamoDemandStore against moto's HTTP server ----------------------------------------------


@pytest.fixture
def table(moto: MotoServer) -> DynamoDemandStore:
    store = DynamoDemandStore(moto.client("dynamodb", REGION), f"demand-{uuid.uuid4().hex[:8]}")
    store.ensure_table()
    store.ensure_table()  # idempotent
    return store


def replica(table: DynamoDemandStore, clock: Clock) -> DemandBook:
    return DemandBook(DynamoDemandStore(table.dynamodb, table.table), clock)


def test_the_table_has_ttl_enabled(table: DynamoDemandStore) -> None:
    ttl = table.dynamodb.describe_time_to_live(TableName=table.table)["TimeToLiveDescription"]
    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "ttl")


def test_two_replicas_share_events_and_dedupe(table: DynamoDemandStore) -> None:
    clock = Clock()
    leader, standby = replica(table, clock), replica(table, clock)
    assert standby.record(event("queued", job_id=1, delivery="d1"), "p")
    assert leader.pending([pool("p")]) == {"p": 0}
    leader.load([pool("p")])
    assert leader.pending([pool("p")]) == {"p": 1}
    assert not leader.record(event("queued", job_id=1, delivery="d1")), "duplicate"
    item = table.dynamodb.get_item(TableName=table.table, Key={"pk": {"S": "job#1"}})["Item"]
    assert item["deliveries"]["SS"] == ["d1"]  # the delivery id lives with its job ...
    assert int(item["ttl"]["N"]) == int(T0.timestamp()) + 48 * 3600  # ... and expires with it


@pytest.fixture
def counted(table: DynamoDemandStore) -> tuple[DemandBook, list[str]]:
    """A replica's book on the table, and the DynamoDB operations it sends from now on."""
    return replica(table, Clock()), operations(table.dynamodb)


def test_a_delivery_is_one_write_and_its_duplicate_changes_nothing(
    counted: tuple[DemandBook, list[str]],
) -> None:
    book, sent = counted
    assert book.record(event("queued", job_id=7, delivery="q7"), "p")
    assert book.record(event("in_progress", job_id=7, delivery="s7"), "p")
    assert sent == ["UpdateItem", "UpdateItem"], "one conditional write per delivery, no read"
    sent.clear()
    assert not book.record(event("queued", job_id=7, delivery="q7"), "p"), "a duplicate ..."
    assert sent == ["UpdateItem"]
    assert book.job(7).state == "in_progress"  # type: ignore[union-attr]
    book.load([pool("p")])
    assert book.pending([pool("p")]) == {"p": 0}, "... that resurrects nothing"


def test_an_event_out_of_order_is_recorded_once_without_moving_the_job(
    counted: tuple[DemandBook, list[str]], table: DynamoDemandStore
) -> None:
    book, sent = counted
    assert book.record(event("completed", job_id=8, delivery="c8"), "p")
    assert book.record(event("queued", job_id=8, delivery="late"), "p"), "a new delivery"
    assert book.job(8).state == "completed"  # type: ignore[union-attr]
    assert sent == ["UpdateItem"] * 3, "the late one: refused by rank, then its id alone"
    assert not book.record(event("queued", job_id=8, delivery="late"), "p"), "its redelivery"
    item = table.dynamodb.get_item(TableName=table.table, Key={"pk": {"S": "job#8"}})["Item"]
    assert (item["job"]["M"]["state"]["S"], sorted(item["deliveries"]["SS"])) == (
        "completed",
        ["c8", "late"],
    )
    assert "queuedPool" not in item


def test_a_job_item_written_before_the_job_map_is_read_and_advanced(
    table: DynamoDemandStore,
) -> None:
    """Items live 48 h: an upgraded replica meets jobs stored with their fields at the top."""
    table.dynamodb.put_item(
        TableName=table.table,
        Item={
            "pk": {"S": "job#9"},
            "state": {"S": "queued"},
            "rank": {"N": "0"},
            "repository": {"S": "acme/app"},
            "organization": {"S": "acme"},
            "labels": {"L": [{"S": "self-hosted"}, {"S": "linux"}]},
            "createdAt": {"S": T0.isoformat()},
            "seenAt": {"S": T0.isoformat()},
            "ttl": {"N": str(int(T0.timestamp()) + 48 * 3600)},
            "assignedPool": {"S": "p"},
            "queuedPool": {"S": "p"},
        },
    )
    book = replica(table, Clock())
    book.load([pool("p")])
    assert book.pending([pool("p")]) == {"p": 1}
    assert book.record(event("queued", job_id=9), "p")  # the item gains the job map ...
    book.load([pool("p")])
    assert book.pending([pool("p")]) == {"p": 1}
    assert book.record(event("in_progress", job_id=9), "p")  # ... and leaves the queue
    book.load([pool("p")])
    assert book.pending([pool("p")]) == {"p": 0} and book.job(9) is None


def test_a_job_cannot_move_backwards_across_replicas(table: DynamoDemandStore) -> None:
    clock = Clock()
    a, b = replica(table, clock), replica(table, clock)
    a.record(event("queued", job_id=5), "p")
    b.record(event("completed", job_id=5), "p")
    assert a.record(event("in_progress", job_id=5), "p")  # a stale view: the store: completed
    assert a.job(5).state == "completed"  # type: ignore[union-attr]
    a.record(event("queued", job_id=5), "p")
    b.load([pool("p")])
    assert b.job(5) is None  # a load reads queued jobs only
    assert b.pending([pool("p")]) == {"p": 0}


def test_a_restarted_book_rebuilds_pending(table: DynamoDemandStore) -> None:
    clock = Clock()
    book = replica(table, clock)
    for job_id in range(30):
        book.record(event(job_id=job_id, repository=f"acme/repo-{job_id % 3}"), "p")
    book.record(event("in_progress", job_id=0), "p")
    pools = [pool("p", cap=5), pool("gpu", ("self-hosted", "linux", "gpu"))]
    restarted = replica(table, clock)
    restarted.load(pools)
    assert restarted.pending(pools) == book.pending(pools) == {"p": 15, "gpu": 0}
    assert len(restarted.pending_jobs("p", [pool("p")])) == 29
    clock.now += datetime.timedelta(hours=49)  # past the items' TTL: load skips them
    restarted.load(pools)
    assert restarted.pending(pools) == {"p": 0, "gpu": 0}


class UnreadableStore(MemoryDemandStore):
    """A store whose reads fail, as DynamoDB does when throttled or unreachable."""

    def load(self, now: datetime.datetime, pools: Collection[str]) -> list[JobRecord]:
        raise ClientError({"Error": {"Code": "ServiceUnavailable", "Message": "down"}}, "Query")


def test_an_unreadable_store_keeps_the_last_demand_while_ecs_is_observed(
    moto: MotoServer, specs: Path
) -> None:
    """The demand is read beside the ECS observation (issue 19); a failed read still plans
    with the demand known and says so."""
    book = DemandBook(UnreadableStore(), Clock())
    labels = ("self-hosted", "linux", "x64", "dind")
    for job_id in (1, 2):
        book.record(event(job_id=job_id, labels=labels, repository="platform/api"), POOL)
    clients = AwsClients(
        region=REGION, endpoint_url=moto.endpoint_url, credentials=("x", "x"), read_only=True
    )
    cycle = plan_cycle([specs], Observer(clients), UnknownRunnerStates(), T0, demand=book)
    assert any("queued jobs not refreshed" in note.message for note in cycle.plan.notes)
    assert "pending 2" in next(p.count_reason for p in cycle.plan.pools if p.name == POOL)
