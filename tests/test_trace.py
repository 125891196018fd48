"""`trace generate`: deterministic, GitHub-shaped payloads, visible seasonality; `read_trace`."""

from __future__ import annotations

import datetime
import json
from collections import Counter
from pathlib import Path

import pytest

from reconciler.demand import parse_workflow_job
from reconciler.simulate.trace import (
    NOISY_REPOSITORY,
    TRACE_TIMEZONE,
    TraceError,
    generate_trace,
    read_trace,
    write_trace,
)

from .conftest import run_cli as cli

pytestmark = pytest.mark.e2e  # starts servers or processes

REPO = Path(__file__).resolve().parent.parent
FRIDAY = datetime.datetime(2026, 3, 6, tzinfo=TRACE_TIMEZONE)


@pytest.fixture(scope="module")
def weekend_payloads() -> list[dict]:
    """Friday and Saturday: working hours and a weekend night."""
    return list(generate_trace(2, seed=5, start=FRIDAY))


def test_same_seed_gives_the_same_file_and_another_seed_another(tmp_path):
    first, second, other = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    for path, seed in ((first, "7"), (second, "7"), (other, "8")):
        result = cli("trace", "generate", "--days", "1", "--seed", seed, "--out", str(path))
        assert result.returncode == 0, result.stderr
    assert first.read_bytes() == second.read_bytes()
    assert first.read_bytes() != other.read_bytes()
    assert "workflow_job events" in result.stderr


def test_every_payload_parses_as_github_sends_it(weekend_payloads):
    actions: dict[int, list[str]] = {}
    for number, payload in enumerate(weekend_payloads):
        event = parse_workflow_job(f"d{number}", json.loads(json.dumps(payload)))
        actions.setdefault(event.job_id, []).append(event.action)
        job = payload["workflow_job"]
        assert job["status"] == payload["action"]
        assert payload["repository"]["full_name"] == event.repository
        assert payload["organization"]["login"] == event.repository.split("/")[0]
        if event.action == "completed":
            assert job["conclusion"] in ("success", "failure") and job["completed_at"]
        if event.action == "queued":
            assert job["runner_name"] is None and job["conclusion"] is None
    assert set(map(tuple, actions.values())) == {("queued", "in_progress", "completed")}


def test_events_are_in_time_order(weekend_payloads):
    def moment(payload: dict) -> str:
        job = payload["workflow_job"]
        return {"queued": job["created_at"], "in_progress": job["started_at"]}.get(
            payload["action"], job["completed_at"]
        )

    times = [moment(payload) for payload in weekend_payloads]
    assert times == sorted(times)


def test_weekday_business_hours_are_busier_than_weekend_nights(weekend_payloads):
    per_hour: Counter[str] = Counter()
    for payload in weekend_payloads:
        if payload["action"] != "queued":
            continue
        created = datetime.datetime.fromisoformat(payload["workflow_job"]["created_at"])
        local = created.astimezone(TRACE_TIMEZONE)
        if local.weekday() == 4 and 9 <= local.hour < 19:
            per_hour["business"] += 1 / 10
        elif local.weekday() == 5 and (local.hour < 6 or local.hour >= 22):
            per_hour["weekend night"] += 1 / 8
    assert per_hour["business"] > 10 * max(per_hour["weekend night"], 1)


def test_noisy_repository_fires_matrix_bursts_and_durations_have_a_long_tail(tmp_path):
    path = tmp_path / "trace.jsonl"
    with open(path, "w") as out:
        write_trace(generate_trace(1, seed=2), out)
    jobs = read_trace(path)
    runs = Counter(
        (job.event.repository, job.event.run_id)
        for job in jobs
        if job.event.repository == NOISY_REPOSITORY
    )
    assert max(runs.values()) >= 40
    durations = sorted(job.run_time for job in jobs)
    median, p99 = durations[len(durations) // 2], durations[int(0.99 * len(durations))]
    assert p99 > 5 * median
    assert {tuple(job.event.labels)[-1] for job in jobs} == {"large", "dind", "arm64"}


def test_read_trace_takes_arrival_from_queued_and_run_time_from_completed(tmp_path):
    payloads = list(generate_trace(1, seed=2))
    queued = next(p for p in payloads if p["action"] == "queued")
    job_id = queued["workflow_job"]["id"]
    completed = next(
        p for p in payloads if p["action"] == "completed" and p["workflow_job"]["id"] == job_id
    )
    completed["workflow_job"]["started_at"] = "2026-03-02T00:00:00Z"
    completed["workflow_job"]["completed_at"] = "2026-03-02T00:10:00Z"
    path = tmp_path / "trace.jsonl"
    path.write_text(json.dumps(queued) + "\n\n" + json.dumps(completed) + "\n")
    (job,) = read_trace(path)
    assert job.run_time == 600
    assert (
        job.arrival
        == datetime.datetime.fromisoformat(queued["workflow_job"]["created_at"]).timestamp()
    )


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not JSON"),
        ('{"action": "queued"}', "lacks field 'workflow_job'"),
        ("[1, 2]", "not a JSON object"),
    ],
)
def test_malformed_lines_are_reported_with_file_and_line(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    good = json.dumps(next(generate_trace(1, seed=2)))
    path.write_text(good + "\n" + line + "\n")
    with pytest.raises(TraceError, match=rf"bad.jsonl:2: .*{message}"):
        read_trace(path)


def test_trace_generate_rejects_zero_days():
    result = cli("trace", "generate", "--days", "0")
    assert result.returncode == 1
    assert "must be at least 1" in result.stderr
