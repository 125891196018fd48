"""Metrics: every named series exists with its labels, deltas are counted once, pools that
leave the plan leave the metrics, and /metrics serves them over a real socket."""

from __future__ import annotations

import datetime
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from reconciler.aws.executor import ApplyResult
from reconciler.controller.metrics import ControllerMetrics
from reconciler.controller.server import ControllerServer
from reconciler.controller.status import StatusBoard
from reconciler.plan.actions import Action, Note, Phase, Plan, PoolSummary

UTC = datetime.UTC


def samples(metrics: ControllerMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = metrics.render()[0].decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def plan_with(*pools: str) -> Plan:
    return Plan(
        pools=tuple(PoolSummary(p, "ci", 4, 3, 1, 2, 0, 0) for p in pools),
        notes=(Note("error", "network references not found", pools[0]),) if pools else (),
    )


def test_runner_gauges_errors_and_removed_pools() -> None:
    metrics = ControllerMetrics()
    failed = Action("run", "runner_tasks", "a", Phase.RUNNER_TASKS, "scale out", pool="a")
    metrics.record_cycle(plan_with("a", "b"), 0.25, ApplyResult(failed=[(failed, "boom")]))
    found = samples(metrics)
    assert found[("ecs_reconciler_runners_desired", (("pool", "a"),))] == 4
    assert found[("ecs_reconciler_runners", (("pool", "b"), ("state", "busy")))] == 1
    assert found[("ecs_reconciler_runners", (("pool", "b"), ("state", "idle")))] == 2
    assert found[("ecs_reconciler_reconcile_errors_total", (("pool", "a"),))] == 2
    assert found[("ecs_reconciler_reconcile_duration_seconds_count", ())] == 1
    metrics.record_cycle(plan_with("b"), 0.1, None)
    assert ("ecs_reconciler_runners_desired", (("pool", "a"),)) not in samples(metrics)


def test_api_calls_are_counted_by_delta() -> None:
    metrics = ControllerMetrics()
    metrics.record_aws_calls({"ecs:DescribeTasks": 3})
    metrics.record_aws_calls({"ecs:DescribeTasks": 5, "ecs:RunTask": 1})
    metrics.record_github_calls({"GET /orgs/{org}/actions/runners": 2})
    found = samples(metrics)
    assert found[("ecs_reconciler_aws_api_calls_total", (("operation", "ecs:DescribeTasks"),))] == 5
    assert found[("ecs_reconciler_aws_api_calls_total", (("operation", "ecs:RunTask"),))] == 1
    key = (
        "ecs_reconciler_github_api_calls_total",
        (("endpoint", "GET /orgs/{org}/actions/runners"),),
    )
    assert found[key] == 2


def test_job_events_feed_queue_wait_hour_of_week_and_usage() -> None:
    metrics = ControllerMetrics()
    queued = datetime.datetime(2026, 11, 30, 1, 0, 0, tzinfo=UTC)  # a Monday, 01:00 UTC
    started = queued + datetime.timedelta(seconds=12)
    completed = started + datetime.timedelta(minutes=5)
    metrics.record_queued_jobs("a", "acme", "acme/app", 3)
    metrics.record_job_started("a", "acme", "acme/app", queued, started)
    metrics.record_job_completed("a", "acme", "acme/app", started, completed)
    found = samples(metrics)
    job = (("organization", "acme"), ("pool", "a"), ("repository", "acme/app"))
    assert found[("ecs_reconciler_queued_jobs", job)] == 3
    assert (
        found[
            ("ecs_reconciler_job_queue_wait_seconds_bucket", tuple(sorted((*job, ("le", "15.0")))))
        ]
        == 1
    )
    assert (
        found[
            ("ecs_reconciler_job_queue_wait_seconds_bucket", tuple(sorted((*job, ("le", "10.0")))))
        ]
        == 0
    )
    hour = (("hour", "01"), *job[:2], job[2], ("weekday", "mon"))
    assert found[("ecs_reconciler_jobs_started_total", tuple(sorted(hour)))] == 1
    assert found[("ecs_reconciler_runner_seconds_total", job)] == 300
    assert found[("ecs_reconciler_job_duration_seconds_count", job)] == 1


def test_metrics_endpoint_over_http() -> None:
    metrics = ControllerMetrics()
    metrics.record_cycle(plan_with("a"), 0.1, None)
    server = ControllerServer("127.0.0.1", 0, StatusBoard(), lambda: True, metrics.render)
    server.start()
    try:
        with urllib.request.urlopen(f"http://{server.address}/metrics", timeout=5) as response:
            body = response.read().decode()
            assert response.headers["Content-Type"].startswith("text/plain")
        assert 'ecs_reconciler_runners_desired{pool="a"} 4.0' in body
        with urllib.request.urlopen(f"http://{server.address}/healthz", timeout=5) as response:
            assert response.status == 200
    finally:
        server.close()
