"""The scale-set queue's messages, parsed (pure): kinds, statistics, bad input, the scaler."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest

from reconciler.github.client import Scope
from reconciler.github.scaleset.client import (
    ScaleSet,
    config_url,
    scale_set_body,
    token_expiry,
)
from reconciler.github.scaleset.errors import (
    ActionsServiceError,
    RunnerExists,
    ScaleSetNotFound,
    SessionConflict,
    classify,
)
from reconciler.github.scaleset.messages import (
    JOB_AVAILABLE,
    JOB_COMPLETED,
    JOB_STARTED,
    MessageFormatError,
    Statistics,
    desired_runners,
    parse_message,
)

STATS = {
    "totalAvailableJobs": 1,
    "totalAcquiredJobs": 2,
    "totalAssignedJobs": 5,
    "totalRunningJobs": 3,
    "totalRegisteredRunners": 4,
    "totalBusyRunners": 3,
    "totalIdleRunners": 1,
}


def message(body: Any, **extra: Any) -> dict[str, Any]:
    return {
        "messageId": 7,
        "messageType": "RunnerScaleSetJobMessages",
        "body": body if isinstance(body, str) else json.dumps(body),
        "statistics": STATS,
        **extra,
    }


def job(kind: str, request_id: int = 11, **extra: Any) -> dict[str, Any]:
    return {
        "messageType": kind,
        "runnerRequestId": request_id,
        "repositoryName": "app",
        "ownerName": "acme",
        "jobId": "b1f1",
        "requestLabels": ["pool-a"],
        "queueTime": "2026-11-30T09:00:00.1234567Z",
        "scaleSetAssignTime": "0001-01-01T00:00:00Z",
        **extra,
    }


@pytest.mark.parametrize(
    ("batch", "kinds"),
    [
        ([], []),
        ([job("JobAvailable", acquireJobUrl="https://x/acquire")], [JOB_AVAILABLE]),
        ([job("JobAssigned")], ["JobAssigned"]),
        ([job("JobStarted", runnerId=3, runnerName="r-3")], [JOB_STARTED]),
        ([job("JobCompleted", runnerId=3, runnerName="r-3", result="failed")], [JOB_COMPLETED]),
        ([job("JobAvailable", 1), job("JobAvailable", 2), job("JobStarted", 3)],
         [JOB_AVAILABLE, JOB_AVAILABLE, JOB_STARTED]),
        ([job("JobQueuedSomethingNew"), job("JobAssigned")], ["JobAssigned"]),  # unknown: skipped
    ],
)  # fmt: skip
def test_a_batch_is_split_by_kind_in_order(batch: list[Any], kinds: list[str]) -> None:
    parsed = parse_message(message(batch))
    assert parsed.message_id == 7
    assert [j.kind for j in parsed.jobs] == kinds
    assert parsed.statistics.total_assigned_jobs == 5


def test_job_fields_are_read_with_their_types() -> None:
    completed = job("JobCompleted", 42, runnerId=3, runnerName="r-3", result="succeeded")
    parsed = parse_message(message([completed])).jobs[0]
    assert (parsed.runner_request_id, parsed.runner_id, parsed.runner_name) == (42, 3, "r-3")
    assert parsed.result == "succeeded" and parsed.repository == "acme/app"
    assert parsed.request_labels == ("pool-a",)
    # .NET's seven fractional digits and Go's zero time both parse
    assert parsed.queue_time == datetime.datetime(2026, 11, 30, 9, 0, 0, 123456, datetime.UTC)
    assert parsed.scale_set_assign_time is None


def test_available_lists_the_jobs_to_acquire() -> None:
    parsed = parse_message(message([job("JobAvailable", 1), job("JobStarted", 2)]))
    assert [j.runner_request_id for j in parsed.available] == [1]


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ([], "message: expected an object"),
        ({**message([]), "messageType": "AgentRefresh"}, "unsupported 'AgentRefresh'"),
        ({**message([]), "messageId": None}, "message.messageId: missing"),
        ({**message([]), "messageId": "7"}, "message.messageId: expected an integer"),
        (message("not json"), "message.body: not JSON"),
        (message({"a": 1}), "message.body: expected a JSON array"),
        ({**message([]), "body": 5}, "message.body: expected a JSON string"),
        (message([job("JobStarted", None)]), r"message.body\[0\].runnerRequestId: missing"),
        (message([job("JobStarted", runnerId="x")]), r"body\[0\].runnerId: expected an integer"),
        (message([job("JobStarted", queueTime="yesterday")]), "not an RFC 3339 time"),
        (message([job("JobStarted", queueTime="2026-11-30T09:00:00")]), "time without a zone"),
        (message([job("JobStarted", requestLabels="pool-a")]), "requestLabels: expected a list"),
        (message([5]), r"body\[0\]: expected an object"),
        ({**message([]), "statistics": []}, "statistics: expected an object"),
        ({**message([]), "statistics": {"totalAssignedJobs": -1}}, "totalAssignedJobs: expected a"),
    ],
)
def test_malformed_messages_name_the_field(data: Any, error: str) -> None:
    with pytest.raises(MessageFormatError, match=error):
        parse_message(data)


def test_empty_body_and_missing_statistics_are_an_empty_message() -> None:
    parsed = parse_message({"messageId": 1, "messageType": "RunnerScaleSetJobMessages"})
    assert parsed.jobs == () and parsed.statistics == Statistics()


def test_statistics_round_trip() -> None:
    assert Statistics.from_api(STATS).to_api() == STATS


@pytest.mark.parametrize(
    ("assigned", "idle", "minimum", "maximum", "desired"),
    [
        (0, 0, 0, 10, 0),
        (0, 2, 0, 10, 2),
        (5, 2, 0, 10, 7),
        (30, 2, 0, 10, 10),  # capped at max
        (0, 0, 3, 10, 3),  # raised to min
        (4, 0, 3, 10, 4),
        (0, 0, 0, 0, 0),
    ],
)
def test_desired_runners_is_assigned_plus_idle_clamped(
    assigned: int, idle: int, minimum: int, maximum: int, desired: int
) -> None:
    assert desired_runners(assigned, idle, minimum, maximum) == desired


@pytest.mark.parametrize(("args"), [(0, 0, 5, 4), (-1, 0, 0, 1), (0, -1, 0, 1), (0, 0, -1, 1)])
def test_desired_runners_refuses_impossible_bounds(args: tuple[int, int, int, int]) -> None:
    with pytest.raises(ValueError):
        desired_runners(*args)


@pytest.mark.parametrize(
    ("api_url", "scope", "expected"),
    [
        ("https://api.github.com", Scope("organization", "acme"), "https://github.com/acme"),
        ("https://api.github.com", Scope("repository", "acme/app"), "https://github.com/acme/app"),
        ("https://api.github.com", Scope("enterprise", "big"), "https://github.com/enterprises/big"),
        ("https://api.octo.ghe.com", Scope("organization", "a"), "https://octo.ghe.com/a"),
        ("https://ghes.example/api/v3", Scope("organization", "a"), "https://ghes.example/a"),
        ("https://ghes.example/api/v3/", Scope("enterprise", "e"), "https://ghes.example/enterprises/e"),
    ],
)  # fmt: skip
def test_config_url_is_the_scopes_web_url(api_url: str, scope: Scope, expected: str) -> None:
    assert config_url(api_url, scope) == expected


def test_scale_set_body_and_parse() -> None:
    body = scale_set_body("pool-a", 3, [])
    assert body["labels"] == [{"name": "pool-a", "type": "System"}]  # labels default to the name
    assert body["RunnerSetting"] == {"disableUpdate": True}  # the capitalised key upstream sends
    parsed = ScaleSet.from_api({**body, "id": 9, "runnerGroupName": "ci"})
    assert (parsed.id, parsed.runner_group_id, parsed.label_names) == (9, 3, ["pool-a"])
    with pytest.raises(ValueError):
        scale_set_body("", 1, [])
    with pytest.raises(MessageFormatError):
        ScaleSet.from_api({"name": "no id"})


def test_token_expiry_reads_the_jwt_exp() -> None:
    import base64

    claims = base64.urlsafe_b64encode(json.dumps({"exp": 1234}).encode()).rstrip(b"=").decode()
    assert token_expiry(f"h.{claims}.s") == 1234.0
    with pytest.raises(ActionsServiceError, match="not a JWT"):
        token_expiry("opaque-token")


@pytest.mark.parametrize(
    ("status", "endpoint", "type_name", "cls"),
    [
        (409, "/x/sessions", "GitHub.Actions.Runtime.WebApi.RunnerScaleSetSessionConflictException, "
         "GitHub.Actions.Runtime.WebApi", SessionConflict),
        (409, "/x", "GitHub.DistributedTask.WebApi.AgentExistsException, x", RunnerExists),
        (404, "/_apis/runtime/runnerscalesets/{id}", "", ScaleSetNotFound),
        (409, "/x", "SomethingElse", ActionsServiceError),
        (500, "/x/sessions", "RunnerScaleSetSessionConflictException", ActionsServiceError),
    ],
)  # fmt: skip
def test_errors_are_classified_on_status_and_exception(
    status: int, endpoint: str, type_name: str, cls: type[ActionsServiceError]
) -> None:
    error = classify(status, "POST", endpoint, "m", type_name)
    assert type(error) is cls


def test_scale_set_demand_is_assigned_minus_running_per_pool() -> None:
    from reconciler.demand.scaleset import ScaleSetDemand

    demand = ScaleSetDemand(clock=lambda: 100.0)
    assert demand.pending(["a"]) == {}  # nothing recorded yet: no demand claimed
    demand.record("a", 7, Statistics(total_assigned_jobs=5, total_running_jobs=2))
    demand.record("b", 8, Statistics(total_assigned_jobs=1, total_running_jobs=3))
    assert demand.pending(["a", "b", "c"]) == {"a": 3, "b": 0}
    assert demand.latest("a") is not None and demand.latest("a").recorded_at == 100.0  # type: ignore[union-attr]
    demand.forget("a")
    assert demand.pending(["a"]) == {}
