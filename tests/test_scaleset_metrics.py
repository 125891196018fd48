"""Scale-set metrics (pure): statistics gauges and job startup from a parsed message."""

from __future__ import annotations

import json

from reconciler.controller.metrics import ControllerMetrics
from reconciler.github.scaleset.messages import parse_message


def test_a_message_sets_the_scale_set_series_like_arcs_listener() -> None:
    started = {
        "messageType": "JobStarted",
        "runnerRequestId": 5,
        "ownerName": "acme",
        "repositoryName": "app",
        "runnerId": 3,
        "runnerName": "pool-a-1",
        "queueTime": "2026-11-30T09:00:00Z",
        "scaleSetAssignTime": "2026-11-30T09:00:02Z",
        "runnerAssignTime": "2026-11-30T09:00:07Z",
    }
    completed = {
        **started,
        "messageType": "JobCompleted",
        "result": "succeeded",
        "finishTime": "2026-11-30T09:01:07Z",
    }
    message = parse_message(
        {
            "messageId": 1,
            "messageType": "RunnerScaleSetJobMessages",
            "body": json.dumps([started, completed]),
            "statistics": {
                "totalAvailableJobs": 1,
                "totalAcquiredJobs": 2,
                "totalAssignedJobs": 4,
                "totalRunningJobs": 2,
                "totalRegisteredRunners": 3,
                "totalBusyRunners": 2,
                "totalIdleRunners": 1,
            },
        }
    )
    metrics = ControllerMetrics()
    metrics.record_scale_set_message("pool-a", message)
    text = metrics.render()[0].decode()
    assert 'ecs_reconciler_scale_set_jobs{pool="pool-a",state="assigned"} 4.0' in text
    assert 'ecs_reconciler_scale_set_jobs{pool="pool-a",state="running"} 2.0' in text
    assert 'ecs_reconciler_scale_set_runners{pool="pool-a",state="idle"} 1.0' in text
    startup = 'ecs_reconciler_job_startup_seconds_sum{organization="acme",pool="pool-a",'
    assert startup + 'repository="acme/app"} 5.0' in text
    assert 'ecs_reconciler_job_queue_wait_seconds_sum{organization="acme",pool="pool-a",' in text
    assert 'ecs_reconciler_job_duration_seconds_sum{organization="acme",pool="pool-a",' in text
