"""Metrics: every series the issue names exists with its labels and values, API call counts
are added by delta, pools that leave the plan leave the gauges, and /metrics serves the
exposition over a real socket."""

from __future__ import annotations

import datetime
import json
import threading
import urllib.request
from collections import Counter

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from reconciler.aws.executor import ApplyResult
from reconciler.controller.metrics import NO_POOL_JOBS, ControllerMetrics
from reconciler.controller.server import ControllerServer
from reconciler.controller.status import StatusBoard
from reconciler.counting import CallCounter
from reconciler.github.scaleset.messages import ScaleSetMessage, parse_message
from reconciler.plan.actions import Action, Note, Phase, Plan, PoolSummary
from reconciler.plan.versions import VersionCheck

UTC = datetime.UTC
MONDAY_0100 = datetime.datetime(2026, 11, 30, 1, 0, 0, tzinfo=UTC)  # a Monday, 01:00 UTC

Labels = tuple[tuple[str, str], ...]


def samples(metrics: ControllerMetrics) -> dict[tuple[str, Labels], float]:
    """Every sample of the exposition, keyed by series name and sorted labels."""
    text = metrics.render()[0].decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(metrics: ControllerMetrics, name: str, **labels: str) -> float:
    return samples(metrics)[(name, tuple(sorted(labels.items())))]


def series_of(metrics: ControllerMetrics, name: str) -> list[dict[str, str]]:
    return [dict(labels) for (series, labels) in samples(metrics) if series == name]


def summary(name: str, desired: int, busy: int, idle: int, unknown: int = 0) -> PoolSummary:
    running = busy + idle + unknown
    return PoolSummary(name, "ci", desired, running, busy, idle, unknown, outdated=1)


def populated_metrics() -> ControllerMetrics:
    """A ControllerMetrics fed once through every recording method (shared with the
    dashboard test, which needs every series' labels)."""
    metrics = ControllerMetrics()
    failed = Action("run", "runner_tasks", "linux", Phase.RUNNER_TASKS, "scale out", pool="linux")
    association = Action("update", "cluster_association", "ci", Phase.CLUSTER_ASSOCIATION, "add")
    plan = Plan(
        pools=(summary("linux", 4, 1, 2), summary("arm", 2, 0, 1, unknown=1)),
        notes=(
            Note("error", "subnet not found", "arm"),
            Note("warning", "held back", "linux"),
            Note("error", "Auto Scaling group not found"),
        ),
        spec_errors=("specs/a.yaml:1:1: kind: unknown",),
    )
    metrics.record_cycle(
        plan, 0.25, ApplyResult(failed=[(failed, "boom"), (association, "denied")])
    )
    metrics.record_failed_cycle(3.0)
    metrics.record_runner_versions(
        [
            VersionCheck("linux", "2.328.0", "Superseded", "behind 2.329.0"),
            VersionCheck("arm", "2.329.0", "Current", "newest"),
        ]
    )
    metrics.record_aws_calls({"ecs:DescribeTasks": 3, "ec2:DescribeSubnets": 1})
    metrics.record_github_calls({"GET /orgs/{org}/actions/runners": 2})
    started = MONDAY_0100 + datetime.timedelta(seconds=12)
    metrics.record_queued({("linux", "acme", "acme/app"): 3})
    metrics.record_job_started("linux", "acme", "acme/app", MONDAY_0100, started)
    metrics.record_job_completed(
        "linux", "acme", "acme/app", started, started + datetime.timedelta(minutes=5)
    )
    metrics.record_scale_set_message("arm", _scale_set_message())
    return metrics


def _scale_set_message() -> ScaleSetMessage:
    """A scale-set message with statistics and a job that started (for the series above)."""
    started = {
        "messageType": "JobStarted",
        "runnerRequestId": 1,
        "ownerName": "acme",
        "repositoryName": "app",
        "scaleSetAssignTime": "2026-11-30T01:00:01Z",
        "runnerAssignTime": "2026-11-30T01:00:09Z",
    }
    return parse_message(
        {
            "messageId": 1,
            "messageType": "RunnerScaleSetJobMessages",
            "body": json.dumps([started]),
            "statistics": {"totalAssignedJobs": 2, "totalRunningJobs": 1},
        }
    )


def test_runner_gauges_per_pool() -> None:
    metrics = populated_metrics()
    assert value(metrics, "ecs_reconciler_runners_desired", pool="linux") == 4
    assert value(metrics, "ecs_reconciler_runners_running", pool="linux") == 3
    assert value(metrics, "ecs_reconciler_runners", pool="linux", state="busy") == 1
    assert value(metrics, "ecs_reconciler_runners", pool="linux", state="idle") == 2
    assert value(metrics, "ecs_reconciler_runners", pool="linux", state="unknown") == 0
    assert value(metrics, "ecs_reconciler_runners", pool="arm", state="unknown") == 1
    assert value(metrics, "ecs_reconciler_runners_running", pool="arm") == 2
    assert value(metrics, "ecs_reconciler_runners_outdated", pool="arm") == 1
    assert value(metrics, "ecs_reconciler_runner_version_stale", pool="linux") == 1
    assert value(metrics, "ecs_reconciler_runner_version_stale", pool="arm") == 0
    # running is the sum of the states
    for pool in ("linux", "arm"):
        states = [
            v
            for (name, labels), v in samples(metrics).items()
            if name == "ecs_reconciler_runners" and ("pool", pool) in labels
        ]
        assert sum(states) == value(metrics, "ecs_reconciler_runners_running", pool=pool)


def test_reconcile_duration_and_errors() -> None:
    metrics = populated_metrics()
    errors = "ecs_reconciler_reconcile_errors_total"
    assert value(metrics, errors, pool="linux", kind="apply_failed") == 1
    assert value(metrics, errors, pool="_cluster", kind="apply_failed") == 1  # no pool
    assert value(metrics, errors, pool="arm", kind="blocked") == 1
    assert value(metrics, errors, pool="_cluster", kind="blocked") == 1
    assert value(metrics, errors, pool="_cluster", kind="cycle_failed") == 1
    blocked = {s["pool"] for s in series_of(metrics, errors) if s["kind"] == "blocked"}
    assert blocked == {"arm", "_cluster"}, "a warning is not an error"
    duration = "ecs_reconciler_reconcile_duration_seconds"
    assert value(metrics, duration + "_count") == 2
    assert value(metrics, duration + "_sum") == pytest.approx(3.25)
    assert value(metrics, duration + "_bucket", le="0.25") == 1
    assert value(metrics, "ecs_reconciler_spec_errors") == 1
    assert value(metrics, "ecs_reconciler_last_reconcile_timestamp_seconds") > 1.7e9


def test_errors_accumulate_across_cycles() -> None:
    metrics = ControllerMetrics()
    plan = Plan(pools=(summary("linux", 1, 0, 1),), notes=(Note("error", "x", "linux"),))
    for _ in range(3):
        metrics.record_cycle(plan, 0.1, None)
    assert (
        value(metrics, "ecs_reconciler_reconcile_errors_total", pool="linux", kind="blocked") == 3
    )
    assert value(metrics, "ecs_reconciler_spec_errors") == 0


def test_rollout_halted_is_a_gauge_per_pool() -> None:
    metrics = populated_metrics()
    assert value(metrics, "ecs_reconciler_rollout_halted", pool="linux") == 0
    halted = PoolSummary(
        "linux", "ci", 4, 3, 1, 2, 0, outdated=3, rollout_halted="3 runners of rev 7 failed"
    )
    metrics.record_cycle(Plan(pools=(halted, summary("arm", 2, 0, 1))), 0.1, None)
    assert value(metrics, "ecs_reconciler_rollout_halted", pool="linux") == 1
    assert value(metrics, "ecs_reconciler_rollout_halted", pool="arm") == 0


def test_spot_fallback_and_runners_on_draining_instances_are_gauges_per_pool() -> None:
    metrics = populated_metrics()
    assert value(metrics, "ecs_reconciler_spot_fallback", pool="linux") == 0
    on_fallback = PoolSummary("linux", "ci", 4, 3, 1, 2, 0, 0, spot_fallback="linux-od", draining=1)
    metrics.record_cycle(Plan(pools=(on_fallback, summary("arm", 2, 0, 1))), 0.1, None)
    assert value(metrics, "ecs_reconciler_spot_fallback", pool="linux") == 1
    assert value(metrics, "ecs_reconciler_runners_draining", pool="linux") == 1
    assert value(metrics, "ecs_reconciler_spot_fallback", pool="arm") == 0


def test_pools_removed_from_the_plan_leave_the_gauges() -> None:
    metrics = populated_metrics()
    metrics.record_cycle(Plan(pools=(summary("arm", 1, 0, 1),)), 0.1, None)
    found = samples(metrics)
    gauges = (
        "ecs_reconciler_runners_desired",
        "ecs_reconciler_runners_running",
        "ecs_reconciler_runners_outdated",
        "ecs_reconciler_runners",
        "ecs_reconciler_runner_version_stale",
        "ecs_reconciler_rollout_halted",
        "ecs_reconciler_queued_jobs",
    )
    for name, labels in found:
        if name in gauges:
            assert ("pool", "linux") not in labels, (name, labels)
    assert found[("ecs_reconciler_runners_desired", (("pool", "arm"),))] == 1
    # counters and histograms keep their history (removing them would fake a reset)
    assert series_of(metrics, "ecs_reconciler_job_queue_wait_seconds_count")
    # and a pool that comes back is exported again
    metrics.record_cycle(Plan(pools=(summary("linux", 5, 5, 0),)), 0.1, None)
    assert value(metrics, "ecs_reconciler_runners_desired", pool="linux") == 5
    assert not [s for s in series_of(metrics, "ecs_reconciler_runners") if s["pool"] == "arm"]


def test_api_calls_are_added_by_delta() -> None:
    metrics = ControllerMetrics()
    metrics.record_aws_calls({"ecs:DescribeTasks": 3})
    metrics.record_aws_calls({"ecs:DescribeTasks": 5, "ecs:RunTask": 1})
    metrics.record_aws_calls({"ecs:DescribeTasks": 5, "ecs:RunTask": 1})  # nothing new
    calls = "ecs_reconciler_aws_api_calls_total"
    assert value(metrics, calls, service="ecs", operation="DescribeTasks") == 5
    assert value(metrics, calls, service="ecs", operation="RunTask") == 1
    # a source that restarted (new clients) counts from zero again, as Prometheus would
    metrics.record_aws_calls({"ecs:DescribeTasks": 2})
    assert value(metrics, calls, service="ecs", operation="DescribeTasks") == 7
    metrics.record_github_calls({"GET /repos/{owner}/{repo}/actions/runs": 2})
    metrics.record_github_calls({"GET /repos/{owner}/{repo}/actions/runs": 6})
    github = "ecs_reconciler_github_api_calls_total"
    assert value(metrics, github, endpoint="GET /repos/{owner}/{repo}/actions/runs") == 6


def test_counts_of_real_aws_clients_fit() -> None:
    metrics = ControllerMetrics()
    calls: Counter[str] = Counter({"autoscaling:DescribeAutoScalingGroups": 2})
    metrics.record_aws_calls(calls)
    calls["autoscaling:DescribeAutoScalingGroups"] += 1
    metrics.record_aws_calls(calls)
    assert (
        value(
            metrics,
            "ecs_reconciler_aws_api_calls_total",
            service="autoscaling",
            operation="DescribeAutoScalingGroups",
        )
        == 3
    )


def test_job_events_feed_queue_wait_demand_and_usage() -> None:
    metrics = populated_metrics()
    job = {"pool": "linux", "organization": "acme", "repository": "acme/app"}
    assert value(metrics, "ecs_reconciler_queued_jobs", **job) == 3
    wait = "ecs_reconciler_job_queue_wait_seconds"
    assert value(metrics, wait + "_bucket", **job, le="10.0") == 0
    assert value(metrics, wait + "_bucket", **job, le="15.0") == 1
    assert value(metrics, wait + "_bucket", **job, le="30.0") == 1  # the SLO bucket
    assert value(metrics, wait + "_sum", **job) == 12
    buckets = sorted(float(s["le"]) for s in series_of(metrics, wait + "_bucket"))
    assert buckets == [1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1800, float("inf")]
    started = "ecs_reconciler_jobs_started_total"
    assert series_of(metrics, started) == [
        {"pool": "linux", "organization": "acme", "weekday": "mon", "hour": "01"}
    ]
    assert value(metrics, started, pool="linux", organization="acme", weekday="mon", hour="01") == 1
    assert value(metrics, "ecs_reconciler_job_duration_seconds_count", **job) == 1
    assert value(metrics, "ecs_reconciler_job_duration_seconds_sum", **job) == 300
    assert value(metrics, "ecs_reconciler_runner_seconds_total", **job) == 300


def test_hour_of_week_is_utc_whatever_the_timestamps_zone() -> None:
    metrics = ControllerMetrics()
    berlin = datetime.timezone(datetime.timedelta(hours=1))
    # Sunday 23:30 UTC is Monday 00:30 in Berlin: the counter uses UTC
    started = datetime.datetime(2026, 12, 7, 0, 30, tzinfo=berlin)
    metrics.record_job_started("linux", "acme", "acme/app", started, started)
    naive = datetime.datetime(2026, 12, 9, 14, 5)  # naive: taken as UTC (a Wednesday)
    metrics.record_job_started("linux", "acme", "acme/app", naive, naive)
    hours = {
        (s["weekday"], s["hour"]) for s in series_of(metrics, "ecs_reconciler_jobs_started_total")
    }
    assert hours == {("sun", "23"), ("wed", "14")}
    # a clock skew never records a negative wait
    metrics.record_job_started(
        "linux", "acme", "acme/app", naive, naive - datetime.timedelta(seconds=5)
    )
    job = {"pool": "linux", "organization": "acme", "repository": "acme/app"}
    assert value(metrics, "ecs_reconciler_job_queue_wait_seconds_bucket", **job, le="1.0") == 3


def test_repositories_beyond_the_limit_are_folded_into_other() -> None:
    metrics = ControllerMetrics(max_repositories=2)
    moment = MONDAY_0100
    for repository in ("acme/a", "acme/b", "acme/c", "acme/d", "acme/a"):
        metrics.record_job_completed(
            "linux", "acme", repository, moment, moment + datetime.timedelta(seconds=10)
        )
    usage = {
        s["repository"]: value(metrics, "ecs_reconciler_runner_seconds_total", **s)
        for s in series_of(metrics, "ecs_reconciler_runner_seconds_total")
    }
    assert usage == {"acme/a": 20, "acme/b": 10, "_other": 20}


def test_each_instance_has_its_own_registry() -> None:
    first, second = ControllerMetrics(), ControllerMetrics()
    first.record_aws_calls({"ecs:ListTasks": 4})
    assert not series_of(second, "ecs_reconciler_aws_api_calls_total")
    registry = CollectorRegistry()
    assert ControllerMetrics(registry).registry is registry


def test_every_metric_the_issue_names_is_exported() -> None:
    families = {
        family.name: family
        for family in text_string_to_metric_families(populated_metrics().render()[0].decode())
    }
    expected = {
        # desired, running, busy and idle runners per pool
        "ecs_reconciler_runners_desired": ("gauge", {"pool"}),
        "ecs_reconciler_runners_running": ("gauge", {"pool"}),
        "ecs_reconciler_runners": ("gauge", {"pool", "state"}),
        # pools whose runner version GitHub will soon stop giving jobs to
        "ecs_reconciler_runner_version_stale": ("gauge", {"pool"}),
        # queued jobs and the queue-wait histogram per pool, organization and repository
        "ecs_reconciler_queued_jobs": ("gauge", {"pool", "organization", "repository"}),
        "ecs_reconciler_job_queue_wait_seconds": (
            "histogram",
            {"pool", "organization", "repository"},
        ),
        # jobs started per hour of week
        "ecs_reconciler_jobs_started": ("counter", {"pool", "organization", "weekday", "hour"}),
        # executions, durations and usage per organization and repository
        "ecs_reconciler_job_duration_seconds": (
            "histogram",
            {"pool", "organization", "repository"},
        ),
        "ecs_reconciler_runner_seconds": ("counter", {"pool", "organization", "repository"}),
        # reconcile duration and errors
        "ecs_reconciler_reconcile_duration_seconds": ("histogram", set()),
        "ecs_reconciler_reconcile_errors": ("counter", {"pool", "kind"}),
        # AWS and GitHub API calls by operation
        "ecs_reconciler_aws_api_calls": ("counter", {"service", "operation"}),
        "ecs_reconciler_github_api_calls": ("counter", {"endpoint"}),
    }
    for name, (kind, labels) in expected.items():
        assert name in families, name
        family = families[name]
        assert family.type == kind, name
        found = {
            key
            for sample in family.samples
            if not sample.name.endswith("_created")
            for key in sample.labels
            if key != "le"
        }
        assert found == labels, name


def test_metrics_endpoint_over_a_real_socket() -> None:
    metrics = populated_metrics()
    server = ControllerServer("127.0.0.1", 0, StatusBoard(), lambda: True, metrics=metrics.render)
    server.start()
    try:
        url = f"http://{server.address}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            assert response.status == 200
            content_type = response.headers["Content-Type"]
            body = response.read().decode()
        assert content_type.startswith("text/plain") and "version=" in content_type
        families = {f.name: f for f in text_string_to_metric_families(body)}
        assert 'ecs_reconciler_runners_desired{pool="linux"} 4.0' in body
        assert families["ecs_reconciler_job_queue_wait_seconds"].type == "histogram"
        # new values show on the next scrape
        metrics.record_cycle(Plan(pools=(summary("linux", 7, 0, 0),)), 0.1, None)
        with urllib.request.urlopen(url, timeout=5) as response:
            assert 'ecs_reconciler_runners_desired{pool="linux"} 7.0' in response.read().decode()
    finally:
        server.close()


def test_queued_jobs_series_leave_when_their_jobs_start() -> None:
    metrics = ControllerMetrics()
    metrics.record_queued({("linux", "acme", "acme/app"): 3, ("linux", "acme", "acme/api"): 1})
    metrics.record_queued({("linux", "acme", "acme/api"): 2, ("linux", "acme", "acme/web"): 0})
    queued = "ecs_reconciler_queued_jobs"
    assert series_of(metrics, queued) == [
        {"pool": "linux", "organization": "acme", "repository": "acme/api"}
    ], "a series at zero is removed, not kept"
    assert value(metrics, queued, pool="linux", organization="acme", repository="acme/api") == 2
    metrics.record_queued({})
    assert series_of(metrics, queued) == []


def test_organizations_beyond_the_limit_are_folded_into_other() -> None:
    metrics = ControllerMetrics(max_organizations=2)
    moment = MONDAY_0100
    for organization in ("acme", "beta", "gamma", "delta", "acme"):
        metrics.record_job_completed(
            "linux", organization, f"{organization}/app", moment, moment + datetime.timedelta(10)
        )
    usage = {
        (s["organization"], s["repository"]): value(
            metrics, "ecs_reconciler_runner_seconds_total", **s
        )
        for s in series_of(metrics, "ecs_reconciler_runner_seconds_total")
    }
    day = 86400 * 10
    assert usage == {
        ("acme", "acme/app"): 2 * day,
        ("beta", "beta/app"): day,
        ("_other", "_other"): 2 * day,
    }
    metrics.record_job_started("linux", "zeta", "zeta/app", moment, moment)
    started = series_of(metrics, "ecs_reconciler_jobs_started_total")
    assert {s["organization"] for s in started} == {"_other"}


def test_jobs_of_no_pool_never_take_an_organization_or_repository_place() -> None:
    metrics = ControllerMetrics(max_repositories=1, max_organizations=1)
    moment = MONDAY_0100
    for repository in ("other/a", "other/b", "other/c"):  # seen by the webhook, not ours
        metrics.record_job_started(NO_POOL_JOBS, "other", repository, moment, moment)
    metrics.record_job_started("linux", "acme", "acme/app", moment, moment)
    metrics.record_job_started(NO_POOL_JOBS, "acme", "acme/web", moment, moment)
    wait = "ecs_reconciler_job_queue_wait_seconds_count"
    labels = series_of(metrics, wait)
    assert sorted((s["pool"], s["organization"], s["repository"]) for s in labels) == [
        ("linux", "acme", "acme/app"),  # the pool's job still got the only places
        ("none", "_other", "_other"),
        ("none", "acme", "_other"),  # a known organization keeps its name
    ]


def test_call_counters_can_be_iterated_while_new_operations_are_added() -> None:
    """Readers iterate a copy: a key added during the iteration (as another thread's call
    would) does not raise "dictionary changed size during iteration", as a plain dict does."""
    calls = CallCounter()
    calls.add("ecs:RunTask")
    calls.add("ecs:StopTask")
    for key in calls:
        calls.add(f"ssm:{key}")
    for _key, _count in calls.items():
        calls.add("dynamodb:GetItem")
    metrics = ControllerMetrics()
    metrics.record_aws_calls(calls)
    assert calls.total() == 8  # 2, then one per key read (2), then one per key read (4)
    plain = {"ecs:RunTask": 1}
    with pytest.raises(RuntimeError, match="changed size during iteration"):
        for key in plain:
            plain[f"ssm:{key}"] = 1


def test_call_counters_count_every_call_of_concurrent_writers() -> None:
    calls = CallCounter()
    metrics = ControllerMetrics()

    def writer(prefix: str) -> None:
        for n in range(3_000):
            calls.add(f"{prefix}:Op{n % 30}")

    threads = [threading.Thread(target=writer, args=(p,)) for p in ("ecs", "ssm", "dynamodb")]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        metrics.record_aws_calls(calls)  # reads while the writers add
    for thread in threads:
        thread.join()
    metrics.record_aws_calls(calls)
    exported = sum(
        count
        for (name, _), count in samples(metrics).items()
        if name == "ecs_reconciler_aws_api_calls_total"
    )
    assert exported == calls.total() == 9_000


def test_call_counters_read_like_a_counter() -> None:
    calls = CallCounter()
    calls.add("ecs:RunTask")
    calls.add("ecs:RunTask", 2)
    assert calls["ecs:RunTask"] == 3 and calls["ecs:StopTask"] == 0
    assert "ecs:RunTask" in calls and "ecs:StopTask" not in calls
    assert calls.get("ecs:StopTask") is None and calls.get("ecs:StopTask", 0) == 0
    assert dict(calls) == {"ecs:RunTask": 3} and calls.total() == 3 and bool(calls)
    calls.clear()
    assert not calls and len(calls) == 0
