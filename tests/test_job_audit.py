"""The demand book reconciled with GitHub: long-queued jobs GitHub shows assigned or done stop
counting (a lost in_progress / completed delivery costs minutes, not 48 hours)."""

from __future__ import annotations

import datetime
from collections.abc import Iterator

import pytest

from reconciler.demand import (
    DemandBook,
    JobEvent,
    MemoryDemandStore,
    PoolDemandSpec,
    QueuedJobAudit,
)
from reconciler.github import GitHubClient, TokenAuth
from reconciler.sandbox import payloads
from reconciler.sandbox.github_server import FakeGitHub

pytestmark = pytest.mark.e2e  # starts servers or processes

T0 = datetime.datetime(2026, 11, 30, 9, 0, tzinfo=datetime.UTC)
POOL = PoolDemandSpec("linux", "organization", "acme", frozenset({"self-hosted", "linux"}))
JOB = "GET /repos/{owner}/{repo}/actions/jobs/{job_id}"


def queued(job_id: int, created: datetime.datetime = T0) -> JobEvent:
    return JobEvent(
        f"d{job_id}",
        "queued",
        job_id,
        job_id,
        "acme/app",
        "acme",
        ("self-hosted", "linux"),
        None,
        None,
        created,
        created,
    )


def on_github(github: FakeGitHub, job_id: int, status: str) -> None:
    started = T0.timestamp() + 30 if status != "queued" else None
    runner = "pool-1" if status != "queued" else None
    job = payloads.workflow_job_payload(
        status,
        job_id=job_id,
        repository_name="acme/app",
        labels=["self-hosted", "linux"],
        created_at=T0.timestamp(),
        started_at=started,
        completed_at=T0.timestamp() + 60 if status == "completed" else None,
        runner_name=runner,
        runner_id=1 if runner else None,
        runner_group=(1, "Default"),
        conclusion="success" if status == "completed" else None,
    )["workflow_job"]
    github.set_job("acme/app", job)


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub() as github:
        yield github


@pytest.fixture
def client(github: FakeGitHub) -> Iterator[GitHubClient]:
    with GitHubClient(github.url, TokenAuth("test-token")) as client:
        yield client


def test_jobs_github_shows_assigned_or_done_stop_counting(
    github: FakeGitHub, client: GitHubClient
) -> None:
    now = [T0 + datetime.timedelta(minutes=10)]
    book = DemandBook(MemoryDemandStore(), lambda: now[0])
    for job_id in (1, 2, 3, 4):
        book.record(queued(job_id), "linux")
    book.record(queued(5, created=T0 + datetime.timedelta(minutes=8)), "linux")  # recent
    on_github(github, 1, "in_progress")
    on_github(github, 2, "completed")
    on_github(github, 3, "queued")  # still waiting: keeps counting; job 4: GitHub says 404
    audit = QueuedJobAudit(client, book, clock=lambda: now[0])
    done = audit.run()
    assert (done.checked, done.corrected, done.unknown) == (4, 2, 1)
    assert [job.job_id for job in book.pending_jobs("linux", [POOL])] == [3, 4, 5]
    assert book.job(2).state == "completed"  # type: ignore[union-attr]
    assert audit.run().checked == 0  # each job at most once per recheck interval
    assert client.calls[JOB] == 4


def test_a_pass_asks_about_a_bounded_number_of_jobs(
    github: FakeGitHub, client: GitHubClient
) -> None:
    now = T0 + datetime.timedelta(hours=1)
    book = DemandBook(MemoryDemandStore(), lambda: now)
    for job_id in range(30):
        book.record(queued(job_id), "linux")
    audit = QueuedJobAudit(client, book, per_pass=20, clock=lambda: now)
    assert audit.due()
    assert audit.run().checked == 20
    assert not audit.due()  # one pass a minute
    assert audit.run().checked == 10  # the rest, next pass
    with pytest.raises(ValueError, match="per_pass"):
        QueuedJobAudit(client, book, per_pass=0)
