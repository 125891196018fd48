"""Runner groups restricted to selected repositories (`runnerGroupAccess`): the spec rules, the
demand a pool counts, and GitHub's dispatch in the simulator. Pure: no server."""

from __future__ import annotations

import datetime

import pytest

from reconciler.demand import DemandBook, JobEvent, MemoryDemandStore, PoolDemandSpec, pool_for
from reconciler.demand.book import filing_pool
from reconciler.github import GitHubClient, Scope, TokenAuth
from reconciler.github.groups import GroupAccess, RunnerGroupAccessWatch, SpecGroup, access_drift
from reconciler.plan.desired import render_desired
from reconciler.reconcile import refused_job_notes
from reconciler.sandbox.github_server import FakeGitHub
from reconciler.simulate.parameters import SimulationParameters
from reconciler.simulate.report import run_policy
from reconciler.simulate.trace import (
    MATRIX_REPOSITORY,
    SHAPES,
    TraceJob,
    generate_trace,
    read_trace,
    write_trace,
)
from reconciler.spec.loader import SpecSet, load_specs

from .conftest import CAPACITY_PROVIDER, POOL, REPO

SHARED = POOL.replace(
    "  labels:",
    "  runnerGroup: shared\n  runnerGroupAccess:\n    repositories: [acme/api, acme/web]\n"
    "  labels:",
)
NOISY = (
    SHARED.replace("name: pool-a", "name: pool-noisy")
    .replace("runnerGroup: shared", "runnerGroup: noisy")
    .replace("[acme/api, acme/web]", "[acme/e2e]")
)
ENTERPRISE = Scope("enterprise", "acme")
ORGANIZATION = Scope("organization", "platform")
NOW = datetime.datetime(2026, 11, 30, 10, 0, tzinfo=datetime.UTC)
EXAMPLE = [REPO / "specs" / "capacity-providers.yaml", REPO / "docs" / "examples" / "groups"]


# ------------------------------------------------------------------ spec rules


@pytest.mark.parametrize(
    ("pool", "message"),
    [
        (SHARED, ""),
        (
            SHARED.replace("organization: acme", "repository: acme/api"),
            "a repository's runners have no runner group",
        ),
        (
            SHARED.replace("repositories: [acme/api, acme/web]", "organizations: [acme]"),
            "admits repositories, not organizations",
        ),
        (
            SHARED.replace("organization: acme", "enterprise: acme"),
            "shared with organizations, not repositories",
        ),
        (SHARED.replace("[acme/api, acme/web]", "[acme/api, other/web]"), "other/web is not"),
        (SHARED.replace("[acme/api, acme/web]", "[acme/api, ACME/api]"), "listed twice"),
        (SHARED.replace("[acme/api, acme/web]", "[]"), "at least 1"),
        (
            SHARED.replace("[acme/api, acme/web]", "[acme/api]\n    organizations: [acme]"),
            "exactly one",
        ),
        (SHARED.replace("[acme/api, acme/web]", "[not-a-repository]"), "is not valid"),
    ],
)
def test_group_access_contradictions_are_clear_errors(spec_dir, pool: str, message: str) -> None:
    errors = [
        str(e)
        for e in load_specs([spec_dir({"cp.yaml": CAPACITY_PROVIDER, "pool.yaml": pool})]).errors
    ]
    assert (errors == []) if not message else any(message in e for e in errors), errors


def test_pools_of_one_group_must_state_the_same_access(spec_dir) -> None:
    other = SHARED.replace("name: pool-a", "name: pool-b")
    same = load_specs([spec_dir({"cp.yaml": CAPACITY_PROVIDER, "a.yaml": SHARED, "b.yaml": other})])
    assert same.errors == []
    differing = other.replace("[acme/api, acme/web]", "[acme/api]")
    errors = [str(e) for e in load_specs([spec_dir({"b.yaml": differing})]).errors]
    assert len(errors) == 1 and "a group has one access list" in errors[0], errors
    assert "b.yaml" in errors[0]


def test_the_documented_groups_example_validates_with_the_example_specs() -> None:
    spec_set = load_specs(EXAMPLE)
    assert spec_set.ok, [str(e) for e in spec_set.errors]
    access = {p.metadata.name: p.spec.runner_group_access for p in spec_set.pools}
    assert access["platform-e2e-dind"].repositories == [MATRIX_REPOSITORY]  # type: ignore[union-attr]
    assert MATRIX_REPOSITORY not in access["platform-linux-dind"].repositories  # type: ignore[union-attr,operator]


# ------------------------------------------------------------------ demand


def event(
    job_id: int, repository: str, labels: tuple[str, ...] = ("self-hosted", "linux")
) -> JobEvent:
    return JobEvent(
        delivery=f"d-{job_id}",
        action="queued",
        job_id=job_id,
        run_id=job_id,
        repository=repository,
        organization=repository.split("/")[0],
        labels=labels,
        conclusion=None,
        runner_name=None,
        created_at=NOW + datetime.timedelta(seconds=job_id),
        at=NOW + datetime.timedelta(seconds=job_id),
    )


def test_a_pool_counts_only_the_jobs_its_group_admits(spec_dir) -> None:
    spec_set = load_specs(
        [spec_dir({"cp.yaml": CAPACITY_PROVIDER, "a.yaml": SHARED, "b.yaml": NOISY})]
    )
    pools = [PoolDemandSpec.of(pool) for pool in spec_set.pools]
    book = DemandBook(MemoryDemandStore(), clock=lambda: NOW)
    repositories = ["acme/e2e"] * 30 + ["acme/api", "acme/web", "acme/docs"]
    for job_id, repository in enumerate(repositories, 1):
        book.record(event(job_id, repository))
    # acme/docs is admitted by neither group: GitHub would never hand it these runners
    assert book.pending(pools) == {"pool-a": 2, "pool-noisy": 30}


def test_without_access_a_pool_counts_every_repository_of_its_scope(spec_dir) -> None:
    pools = [PoolDemandSpec.of(p) for p in load_specs([spec_dir({"a.yaml": POOL})]).pools]
    book = DemandBook(MemoryDemandStore(), clock=lambda: NOW)
    for job_id, repository in enumerate(["acme/e2e", "acme/docs", "other/x"], 1):
        book.record(event(job_id, repository))
    assert book.pending(pools) == {"pool-a": 2}


# ------------------------------------------------------------------ GitHub's dispatch (simulator)


@pytest.fixture(scope="module")
def burst_hour(tmp_path_factory) -> list[TraceJob]:
    """The platform organization's jobs around the first 400-job matrix of a surge-storm day."""
    path = tmp_path_factory.mktemp("trace") / "day.jsonl"
    with open(path, "w") as out:
        write_trace(generate_trace(1, seed=7, shape=SHAPES["surge-storm"]), out)
    day = [job for job in read_trace(path) if job.event.organization == "platform"]
    burst = next(
        job.arrival
        for job in day
        if job.event.repository == MATRIX_REPOSITORY
        and sum(
            1
            for o in day
            if o.event.repository == MATRIX_REPOSITORY and 0 <= o.arrival - job.arrival < 10
        )
        > 100
    )
    return [job for job in day if burst - 600 <= job.arrival < burst + 1800]


def others_worst_wait(spec_set: SpecSet, jobs: list[TraceJob]) -> tuple[float, dict[str, str]]:
    """The longest wait of a job not of the matrix repository, and which pool each ran on."""
    world = run_policy("arc", jobs, spec_set, SimulationParameters()).world
    assert world is not None and world.done
    ran_on = {}
    worst = 0.0
    for job in world.jobs:
        assert job.started is not None and job.runner is not None
        ran_on[job.trace.event.repository] = job.runner.pool.name
        if job.trace.event.repository != MATRIX_REPOSITORY:
            worst = max(worst, job.started - job.trace.arrival)
    return worst, ran_on


def test_a_matrix_beyond_max_no_longer_holds_up_the_shared_groups_repositories(burst_hour) -> None:
    matrix = sum(1 for job in burst_hour if job.event.repository == MATRIX_REPOSITORY)
    assert matrix > 300  # the burst is in the window
    shared_worst, _ = others_worst_wait(load_specs([REPO / "specs"]), burst_hour)
    grouped_worst, ran_on = others_worst_wait(load_specs(EXAMPLE), burst_hour)
    # one group: oldest-first dispatch hands the matrix every freed runner of the pool
    assert shared_worst > 600
    # its own group: the others' runners are never handed a matrix job, and back
    assert grouped_worst < 120
    assert ran_on[MATRIX_REPOSITORY] == "platform-e2e-dind"
    assert {pool for repo, pool in ran_on.items() if repo != MATRIX_REPOSITORY} == {
        "platform-linux-dind"
    }


def test_jobs_no_group_admits_are_reported_with_the_pool_that_would_fit(spec_dir) -> None:
    spec_set = load_specs([spec_dir({"cp.yaml": CAPACITY_PROVIDER, "a.yaml": SHARED})])
    pools = [PoolDemandSpec.of(pool) for pool in spec_set.pools]
    book = DemandBook(MemoryDemandStore(), clock=lambda: NOW)
    for job_id, repository in enumerate(["acme/docs", "acme/docs", "acme/api", "other/x"], 1):
        book.record(event(job_id, repository))
    # stored under the pool that fits but refuses, so that a cycle still sees them
    filed = {r: filing_pool(event(9, r), pools) for r in ("acme/docs", "acme/api", "other/x")}
    assert {r: p.name if p else None for r, p in filed.items()} == {
        "acme/docs": "pool-a",
        "acme/api": "pool-a",
        "other/x": None,
    }
    assert pool_for(event(9, "acme/docs"), pools) is None  # but it counts for no pool
    refused = book.refused_by_groups(pools)
    assert refused == {("pool-a", "acme/docs"): 2}  # other/x is outside the scope: not a group's
    (note,) = refused_job_notes(refused, spec_set)
    assert (note.severity, note.pool) == ("warning", "pool-a")
    assert "2 queued job(s) of acme/docs" in note.message
    assert "'shared' does not admit" in note.message


def test_the_plan_says_whose_jobs_the_pending_count_is(spec_dir) -> None:
    spec_set = load_specs([spec_dir({"cp.yaml": CAPACITY_PROVIDER, "a.yaml": SHARED})])
    pool = render_desired(spec_set, NOW, "us-east-1", {"pool-a": 2}).pools["pool-a"]
    count, why = pool.target(busy=1)
    assert count == 4
    assert "pending 2 (group 'shared' admits 2 repositories)" in why
    plain = load_specs([spec_dir({"a.yaml": POOL})])
    assert "admits" not in render_desired(plain, NOW, "us-east-1").pools["pool-a"].target(0)[1]


# ------------------------------------------------------------------ drift against GitHub


def spec_group(members: list[str] | None, scope: Scope = ORGANIZATION) -> SpecGroup:
    names = None if members is None else frozenset(members)
    return SpecGroup(scope, "shared", names, ("platform-linux-dind",))


@pytest.mark.parametrize(
    ("spec", "github", "expected"),
    [
        (None, GroupAccess("all"), None),
        (["platform/api"], GroupAccess("selected", frozenset({"platform/api"})), None),
        (
            None,
            GroupAccess("selected", frozenset({"platform/api"})),
            "1 selected repositories only",
        ),
        (["platform/api"], GroupAccess("all"), "admits every one of the scope's repositories"),
        (["platform/api"], GroupAccess("private"), "private repositories only"),
        (
            ["platform/api", "platform/web"],
            GroupAccess("selected", frozenset({"platform/api", "platform/e2e"})),
            "not admitted in GitHub: platform/web; admitted in GitHub, not in the specs: "
            "platform/e2e",
        ),
    ],
)
def test_access_drift_says_what_differs(spec, github, expected) -> None:
    found = access_drift(spec_group(spec), github)
    assert (found is None) if expected is None else (found is not None and expected in found)


def test_the_watch_reads_each_group_once_per_ttl_and_warns_on_drift() -> None:
    now = [0.0]
    with FakeGitHub(tokens={"t"}) as github:
        github.set_runner_group_access("/orgs/platform", "shared", ["platform/api"])
        with GitHubClient(github.url, TokenAuth("t"), sleep=lambda _: None) as client:
            watch = RunnerGroupAccessWatch(client, ttl=600, clock=lambda: now[0])
            wanted = [spec_group(["platform/api", "platform/web"]), spec_group(None, ENTERPRISE)]
            (drift, missing) = watch.drift(wanted)
            assert "not admitted in GitHub: platform/web" in drift
            assert "not found in GitHub" in missing  # the enterprise has no group "shared"
            reads = sum(client.calls.values())
            assert reads == 3  # the two scopes' group lists, one selected group's members
            github.set_runner_group_access(
                "/orgs/platform", "shared", ["platform/api", "platform/web"]
            )
            now[0] = 599.0
            assert len(watch.drift(wanted)) == 2 and sum(client.calls.values()) == reads
            now[0] = 600.0
            assert len(watch.drift(wanted)) == 1  # re-read: the organization's group is fixed


def test_the_simulated_github_hands_a_selected_groups_runners_only_to_its_repositories() -> None:
    github = FakeGitHub()
    group = github.set_runner_group_access("/orgs/platform", "shared", ["platform/api"])
    assert github.runner_group_admits("/orgs/platform", group, "platform/api", "platform")
    assert not github.runner_group_admits("/orgs/platform", group, "platform/e2e", "platform")
    github.set_runner_group_access("/orgs/platform", "shared", None)  # visibility all again
    assert github.runner_group_admits("/orgs/platform", group, "platform/e2e", "platform")


def test_github_cancels_jobs_queued_a_day_and_the_report_counts_them_as_day_long_waits(
    burst_hour,
) -> None:
    # tagr's model never retries a job whose scale-up found the pool at max, and the matrix
    # pool keeps no idle runner: without GitHub's 24 h limit these jobs would wait forever
    matrix = [job for job in burst_hour if job.event.repository == MATRIX_REPOSITORY]
    parameters = SimulationParameters()
    report = run_policy("tagr", matrix, load_specs(EXAMPLE), parameters)
    assert report.world is not None and report.world.done
    cancelled = [job for job in report.world.jobs if job.cancelled]
    assert cancelled and all(job.started is None and job.runner is None for job in cancelled)
    assert report.cancelled == len(cancelled) and report.unserved == 0
    assert report.waits.count(parameters.queued_job_timeout_s) == len(cancelled)
    assert report.to_json()["cancelled_jobs"] == len(cancelled)
