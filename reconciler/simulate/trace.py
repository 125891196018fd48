"""Traces: JSON lines of GitHub `workflow_job` webhook payloads, one event per line.

`generate_trace` writes a deterministic synthetic week (or any number of days): Poisson
arrivals per repository with weekday / business-hour seasonality (Asia/Tokyo, like the
example specs' schedules), workflow runs of several jobs, a noisy repository firing large
matrix bursts, and lognormal (long-tailed) job durations. A `WeekShape` other than the
default (`SHAPES`) adds what the generator's week lacks: `surge-storm` has a Monday-morning
surge, a daily 03:00 cron storm and a repository firing 400-job matrices into the shared
organization pool. Each job yields a `queued`, an
`in_progress` and a `completed` payload in GitHub's own shape, so an exported real trace
reads the same way.

`read_trace` turns any such file into `TraceJob`s for the simulator: arrival is the `queued`
event, run time is `completed_at - started_at` of the `completed` event; the waits recorded
in the file are ignored. Malformed lines raise `TraceError` with `file:line`.
"""

from __future__ import annotations

import datetime
import hashlib
import itertools
import json
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo

from ..demand import JobEvent, parse_workflow_job

TRACE_TIMEZONE = ZoneInfo("Asia/Tokyo")
#: a Monday, so a 7-day trace covers five working days and a weekend
DEFAULT_START = datetime.datetime(2026, 3, 2, tzinfo=TRACE_TIMEZONE)
ENTERPRISE = "acme"
LARGE = ("self-hosted", "linux", "x64", "large")
DIND = ("self-hosted", "linux", "x64", "dind")
ARM64 = ("self-hosted", "linux", "arm64")
#: GitHub cancels a job after 6 h on hosted runners; we cut synthetic durations there too
MAX_DURATION_S = 6 * 3600.0


class TraceError(ValueError):
    """A trace line that is not a usable `workflow_job` payload; the message has file:line."""


@dataclass(frozen=True)
class RepositoryProfile:
    """How one repository uses CI: its label set, arrival rate, run size and job durations."""

    full_name: str
    labels: tuple[str, ...]
    runs_per_peak_hour: float  # workflow runs per hour on a weekday at business hours
    jobs_per_run: tuple[int, int]  # uniform, inclusive
    median_minutes: float  # lognormal job duration: median and shape
    sigma: float = 0.8
    bursts_per_peak_hour: float = 0.0  # large matrix runs (the noisy neighbour)
    burst_jobs: tuple[int, int] = (0, 0)


#: the synthetic company; labels and scopes match the example pools in specs/
REPOSITORIES: tuple[RepositoryProfile, ...] = (
    RepositoryProfile("acme/backend", LARGE, 16, (1, 4), 10),
    RepositoryProfile("acme/frontend", LARGE, 14, (1, 3), 7),
    RepositoryProfile("acme/data-pipeline", LARGE, 5, (1, 3), 15, sigma=1.0),
    RepositoryProfile("acme/payments", LARGE, 8, (1, 2), 9),
    RepositoryProfile(
        "acme/monorepo", LARGE, 4, (1, 2), 12, bursts_per_peak_hour=0.4, burst_jobs=(40, 80)
    ),
    RepositoryProfile("platform/api", DIND, 14, (1, 4), 6),
    RepositoryProfile("platform/web", DIND, 12, (1, 3), 4),
    RepositoryProfile("platform/infra", DIND, 5, (1, 2), 3, sigma=1.1),
    RepositoryProfile("acme/mobile-app", ARM64, 6, (1, 3), 8),
)
NOISY_REPOSITORY = "acme/monorepo"


@dataclass(frozen=True)
class TraceJob:
    """One job as the simulator sees it."""

    event: JobEvent  # the `queued` event
    arrival: float  # epoch seconds
    run_time: float  # seconds

    @property
    def job_id(self) -> int:
        """GitHub's job id."""
        return self.event.job_id


def seasonality(moment: datetime.datetime) -> float:
    """Share of the peak arrival rate at `moment` (Tokyo time): weekday business hours 1.0."""
    local = moment.astimezone(TRACE_TIMEZONE)
    hour = local.hour + local.minute / 60
    if local.weekday() >= 5:
        return 0.08 if 10 <= hour < 18 else 0.02
    if 9 <= hour < 19:
        return 0.7 if 12 <= hour < 13 else 1.0
    if 7 <= hour < 9 or 19 <= hour < 23:
        return 0.3
    return 0.04


def monday_surge(moment: datetime.datetime) -> float:
    """`seasonality`, with Monday 08:30-11:00 (Tokyo) at 2.5 times the peak: the week's
    first pushes, merges and re-runs after the weekend."""
    local = moment.astimezone(TRACE_TIMEZONE)
    if local.weekday() == 0 and (8, 30) <= (local.hour, local.minute) < (11, 0):
        return 2.5
    return seasonality(moment)


@dataclass(frozen=True)
class CronStorm:
    """Scheduled workflows of every repository firing at the same local time each day."""

    hour: int  # Tokyo time
    minute: int
    runs_per_repository: tuple[int, int]  # uniform, inclusive
    spread_s: float  # GitHub starts scheduled runs late by seconds to minutes under load


@dataclass(frozen=True)
class WeekShape:
    """What a generated trace looks like beyond its repositories' own rates."""

    name: str
    seasonality: Callable[[datetime.datetime], float]
    peak: float = 1.0  # the largest value of `seasonality` (arrivals are thinned from it)
    storms: tuple[CronStorm, ...] = ()
    repositories: tuple[RepositoryProfile, ...] = REPOSITORIES


#: the shared organization pool's matrix builder: 400 jobs about twice a working day
MATRIX_REPOSITORY = "platform/e2e"
SHAPES = {
    "generated": WeekShape("generated", seasonality),
    "surge-storm": WeekShape(
        "surge-storm",
        monday_surge,
        peak=2.5,
        storms=(CronStorm(3, 0, (2, 6), 90.0),),
        repositories=(
            *REPOSITORIES,
            RepositoryProfile(
                MATRIX_REPOSITORY,
                DIND,
                0.5,
                (1, 2),
                5,
                bursts_per_peak_hour=0.2,
                burst_jobs=(380, 420),
            ),
        ),
    ),
}


def generate_trace(
    days: int,
    seed: int,
    start: datetime.datetime = DEFAULT_START,
    shape: WeekShape = SHAPES["generated"],
) -> Iterator[dict[str, Any]]:
    """Every webhook payload of the synthetic trace, in delivery (event time) order."""
    jobs: list[tuple[RepositoryProfile, int, float, float, float]] = []
    end = start.timestamp() + days * 86400
    for profile in shape.repositories:
        rng = random.Random(f"{seed}:{profile.full_name}")
        cron = random.Random(f"{seed}:{profile.full_name}:cron")
        runs = itertools.chain(  # lazily: each run's draws follow its arrival's, as before
            _runs(profile, rng, start.timestamp(), end, shape),
            _storm_runs(profile, cron, start, days, shape),
        )
        for created, size in runs:
            run_id = rng.randrange(10**9, 10**10)
            for _ in range(size):
                queued = created + rng.uniform(0, 3)
                duration = min(
                    MAX_DURATION_S,
                    60 * profile.median_minutes * math.exp(rng.gauss(0, profile.sigma)),
                )
                jobs.append((profile, run_id, queued, rng.uniform(2, 20), duration))
    jobs.sort(key=lambda job: (job[2], job[0].full_name))
    events: list[tuple[float, int, dict[str, Any]]] = []
    for index, (profile, run_id, queued, wait, duration) in enumerate(jobs):
        job_id = 20_000_000_000 + index
        started, completed = queued + wait, queued + wait + duration
        conclusion = "failure" if (job_id * 2654435761) % 100 < 7 else "success"
        for order, (action, at) in enumerate(
            (("queued", queued), ("in_progress", started), ("completed", completed))
        ):
            payload = _payload(profile, job_id, run_id, action, queued, started, completed)
            if action == "completed":
                payload["workflow_job"]["conclusion"] = conclusion
            events.append((at, order, payload))
    events.sort(key=lambda event: (event[0], event[1], event[2]["workflow_job"]["id"]))
    return (payload for _, _, payload in events)


def _runs(
    profile: RepositoryProfile, rng: random.Random, start: float, end: float, shape: WeekShape
) -> Iterator[tuple[float, int]]:
    """(created, jobs) of every workflow run: thinned Poisson arrivals, bursts included."""
    for rate, sizes in (
        (profile.runs_per_peak_hour, profile.jobs_per_run),
        (profile.bursts_per_peak_hour, profile.burst_jobs),
    ):
        if rate <= 0:
            continue
        moment = start
        while True:
            moment += rng.expovariate(rate * shape.peak / 3600)
            if moment >= end:
                break
            instant = datetime.datetime.fromtimestamp(moment, datetime.UTC)
            if rng.random() < shape.seasonality(instant) / shape.peak:
                yield moment, rng.randint(*sizes)


def _storm_runs(
    profile: RepositoryProfile,
    rng: random.Random,
    start: datetime.datetime,
    days: int,
    shape: WeekShape,
) -> list[tuple[float, int]]:
    """(created, jobs) of the repository's scheduled runs in each day's cron storms."""
    runs = []
    first = start.astimezone(TRACE_TIMEZONE).replace(hour=0, minute=0, second=0, microsecond=0)
    for storm in shape.storms:
        for day in range(days + 1):
            local = (first + datetime.timedelta(days=day)).replace(
                hour=storm.hour, minute=storm.minute
            )
            at = local.timestamp()
            if not start.timestamp() <= at < start.timestamp() + days * 86400:
                continue
            for _ in range(rng.randint(*storm.runs_per_repository)):
                size = rng.randint(*profile.jobs_per_run)
                runs.append((at + rng.uniform(0, storm.spread_s), size))
    return runs


def _iso(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(int(epoch), datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _payload(
    profile: RepositoryProfile,
    job_id: int,
    run_id: int,
    action: str,
    queued: float,
    started: float,
    completed: float,
) -> dict[str, Any]:
    """A `workflow_job` payload as GitHub sends it (fields the simulator does not need kept)."""
    owner, name = profile.full_name.split("/")
    assigned = action != "queued"
    runner = f"{'-'.join(profile.labels[1:])}-{job_id % 100_000:05d}" if assigned else None
    repository_url = f"https://github.example.com/{profile.full_name}"
    return {
        "action": action,
        "workflow_job": {
            "id": job_id,
            "run_id": run_id,
            "run_attempt": 1,
            "workflow_name": "ci",
            "name": f"build ({job_id % 1000})",
            "head_branch": "main",
            "head_sha": f"{run_id:040x}"[-40:],
            "url": f"https://api.github.example.com/repos/{profile.full_name}/actions/jobs/{job_id}",
            "html_url": f"{repository_url}/actions/runs/{run_id}/job/{job_id}",
            "status": action,
            "conclusion": None,
            "created_at": _iso(queued),
            "started_at": _iso(started if assigned else queued),
            "completed_at": _iso(completed) if action == "completed" else None,
            "labels": list(profile.labels),
            "runner_id": job_id % 1_000_000 if assigned else None,
            "runner_name": runner,
            "runner_group_id": 1 if assigned else None,
            "runner_group_name": "Default" if assigned else None,
            "steps": [],
        },
        "repository": {
            "id": _stable_id(profile.full_name),
            "name": name,
            "full_name": profile.full_name,
            "private": True,
            "owner": {"login": owner, "type": "Organization"},
            "html_url": repository_url,
        },
        "organization": {"login": owner, "id": _stable_id(owner)},
        "enterprise": {"slug": ENTERPRISE},
        "sender": {"login": "ci-bot", "type": "User"},
    }


def _stable_id(text: str) -> int:
    """A repeatable numeric id for a name (Python's hash() is salted per process)."""
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


def write_trace(payloads: Iterator[dict[str, Any]], out: TextIO) -> int:
    """Write payloads as JSON lines; returns how many were written."""
    count = 0
    for payload in payloads:
        out.write(json.dumps(payload, separators=(",", ":"), sort_keys=True) + "\n")
        count += 1
    return count


def read_trace(path: str | Path) -> list[TraceJob]:
    """The jobs of a trace file, by arrival; raises TraceError (file:line) on a bad line.

    Jobs without a `completed` event, or completed without ever running (cancelled while
    queued: no runner), are left out: they never needed a runner for a known time.
    """
    queued: dict[int, tuple[JobEvent, str]] = {}
    run_times: dict[int, float] = {}
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            event, payload = _parse_line(line, where)
            if event.action in ("queued", "waiting"):
                queued.setdefault(event.job_id, (event, where))
            elif event.action == "completed" and event.runner_name:
                run_times[event.job_id] = _run_time(event, payload, where)
    jobs = [
        TraceJob(event, event.created_at.timestamp(), run_times[job_id])
        for job_id, (event, _) in queued.items()
        if job_id in run_times
    ]
    return sorted(jobs, key=lambda job: (job.arrival, job.job_id))


def _parse_line(line: str, where: str) -> tuple[JobEvent, dict[str, Any]]:
    try:
        payload = json.loads(line)
    except json.JSONDecodeError as error:
        raise TraceError(f"{where}: not JSON: {error.msg} (column {error.colno})") from None
    try:
        return parse_workflow_job(where, payload), payload
    except KeyError as error:
        raise TraceError(f"{where}: workflow_job payload lacks field {error}") from None
    except (ValueError, TypeError) as error:
        raise TraceError(f"{where}: not a workflow_job payload: {error}") from None


def _run_time(event: JobEvent, payload: dict[str, Any], where: str) -> float:
    """completed_at (the event's time) - started_at, in seconds."""
    job = payload["workflow_job"]
    started_at = job.get("started_at")
    if not started_at or not job.get("completed_at"):
        raise TraceError(f"{where}: completed job without started_at or completed_at")
    try:
        started = datetime.datetime.fromisoformat(str(started_at))  # Python 3.11 reads "Z"
    except ValueError:
        raise TraceError(f"{where}: started_at is not an ISO 8601 time: {started_at!r}") from None
    seconds = (event.at - started).total_seconds()
    if seconds < 0:
        raise TraceError(f"{where}: completed_at is before started_at")
    return seconds
