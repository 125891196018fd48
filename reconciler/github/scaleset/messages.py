"""The scale-set message queue's data, parsed: pure functions and frozen records, no I/O.

A message from ``GET {messageQueueUrl}`` (actions/scaleset ``types.go``) is::

    {"messageId": 7, "messageType": "RunnerScaleSetJobMessages",
     "body": "[{\"messageType\": \"JobAvailable\", ...}, ...]",   # a JSON *string*
     "statistics": {"totalAvailableJobs": 1, "totalAssignedJobs": 3, ...}}

The body batches job messages of four kinds (JobAvailable, JobAssigned, JobStarted,
JobCompleted); unknown kinds are skipped, as upstream does, so a new kind on GitHub's side
never stops a listener. Anything else malformed raises `MessageFormatError` naming the field.

`desired_runners` is the scaler's rule (ARC's listener): clamp(assigned + idle, min, max).
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field
from typing import Any

#: The only ``messageType`` the scale-set queue sends (upstream rejects any other).
JOB_MESSAGES = "RunnerScaleSetJobMessages"

JOB_AVAILABLE = "JobAvailable"
JOB_ASSIGNED = "JobAssigned"
JOB_STARTED = "JobStarted"
JOB_COMPLETED = "JobCompleted"
JOB_KINDS = (JOB_AVAILABLE, JOB_ASSIGNED, JOB_STARTED, JOB_COMPLETED)


class MessageFormatError(ValueError):
    """A message or session from the scale-set service does not have the documented shape."""


@dataclass(frozen=True)
class Statistics:
    """``RunnerScaleSetStatistic``: the queue's view of a scale set when the message was made.

    ``total_assigned_jobs`` includes running jobs: it is what to size the pool on.
    """

    total_available_jobs: int = 0
    total_acquired_jobs: int = 0
    total_assigned_jobs: int = 0
    total_running_jobs: int = 0
    total_registered_runners: int = 0
    total_busy_runners: int = 0
    total_idle_runners: int = 0

    @classmethod
    def from_api(cls, data: Any) -> Statistics:
        """Parse ``statistics``; missing counters are 0 (Go's zero value), wrong types fail."""
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise MessageFormatError(f"statistics: expected an object, got {type(data).__name__}")
        values = {}
        for name, api_name in _STATISTICS_FIELDS.items():
            value = data.get(api_name, 0)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise MessageFormatError(
                    f"statistics.{api_name}: expected a non-negative integer, got {value!r}"
                )
            values[name] = value
        return cls(**values)

    def to_api(self) -> dict[str, int]:
        """The JSON object GitHub sends."""
        return {api: getattr(self, name) for name, api in _STATISTICS_FIELDS.items()}


_STATISTICS_FIELDS = {
    "total_available_jobs": "totalAvailableJobs",
    "total_acquired_jobs": "totalAcquiredJobs",
    "total_assigned_jobs": "totalAssignedJobs",
    "total_running_jobs": "totalRunningJobs",
    "total_registered_runners": "totalRegisteredRunners",
    "total_busy_runners": "totalBusyRunners",
    "total_idle_runners": "totalIdleRunners",
}


@dataclass(frozen=True)
class JobMessage:
    """One job event in a batch (``JobMessageBase`` plus the kind's own fields).

    ``runner_request_id`` identifies the job request (what ``acquirejobs`` takes);
    ``runner_id``/``runner_name`` are set for JobStarted and JobCompleted, ``result`` for
    JobCompleted, ``acquire_job_url`` for JobAvailable.
    """

    kind: str
    runner_request_id: int
    repository_name: str = ""
    owner_name: str = ""
    job_id: str = ""
    job_workflow_ref: str = ""
    job_display_name: str = ""
    workflow_run_id: int = 0
    event_name: str = ""
    request_labels: tuple[str, ...] = ()
    queue_time: datetime.datetime | None = None
    scale_set_assign_time: datetime.datetime | None = None
    runner_assign_time: datetime.datetime | None = None
    finish_time: datetime.datetime | None = None
    runner_id: int = 0
    runner_name: str = ""
    result: str = ""
    acquire_job_url: str = ""

    @property
    def repository(self) -> str:
        """``owner/repo`` of the job."""
        return f"{self.owner_name}/{self.repository_name}"

    @classmethod
    def from_api(cls, data: Any, where: str = "job message") -> JobMessage:
        """Parse one element of a batch (its ``messageType`` must be one of `JOB_KINDS`)."""
        if not isinstance(data, dict):
            raise MessageFormatError(f"{where}: expected an object, got {type(data).__name__}")
        kind = data.get("messageType")
        if kind not in JOB_KINDS:
            raise MessageFormatError(f"{where}.messageType: unknown kind {kind!r}")
        labels = data.get("requestLabels") or []
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise MessageFormatError(f"{where}.requestLabels: expected a list of strings")
        return cls(
            kind=kind,
            runner_request_id=_int(data, "runnerRequestId", where, required=True),
            repository_name=_str(data, "repositoryName", where),
            owner_name=_str(data, "ownerName", where),
            job_id=_str(data, "jobId", where),
            job_workflow_ref=_str(data, "jobWorkflowRef", where),
            job_display_name=_str(data, "jobDisplayName", where),
            workflow_run_id=_int(data, "workflowRunId", where),
            event_name=_str(data, "eventName", where),
            request_labels=tuple(labels),
            queue_time=_time(data, "queueTime", where),
            scale_set_assign_time=_time(data, "scaleSetAssignTime", where),
            runner_assign_time=_time(data, "runnerAssignTime", where),
            finish_time=_time(data, "finishTime", where),
            runner_id=_int(data, "runnerId", where),
            runner_name=_str(data, "runnerName", where),
            result=_str(data, "result", where),
            acquire_job_url=_str(data, "acquireJobUrl", where),
        )


@dataclass(frozen=True)
class ScaleSetMessage:
    """One message of the queue: its id (to acknowledge), statistics, and job events."""

    message_id: int
    statistics: Statistics
    jobs: tuple[JobMessage, ...] = field(default=())

    def of_kind(self, kind: str) -> list[JobMessage]:
        """The job events of one kind, in the order GitHub sent them."""
        return [job for job in self.jobs if job.kind == kind]

    @property
    def available(self) -> list[JobMessage]:
        """JobAvailable events: the jobs to acquire."""
        return self.of_kind(JOB_AVAILABLE)


def parse_message(data: Any) -> ScaleSetMessage:
    """Parse a queue message (the decoded JSON of a 200 answer to the long poll)."""
    if not isinstance(data, dict):
        raise MessageFormatError(f"message: expected an object, got {type(data).__name__}")
    message_type = data.get("messageType")
    if message_type != JOB_MESSAGES:
        raise MessageFormatError(
            f"message.messageType: unsupported {message_type!r}, expected {JOB_MESSAGES!r}"
        )
    message_id = _int(data, "messageId", "message", required=True)
    raw_body = data.get("body") or ""
    if not isinstance(raw_body, str):
        raise MessageFormatError("message.body: expected a JSON string")
    batch: Any = []
    if raw_body:
        try:
            batch = json.loads(raw_body)
        except ValueError as error:
            raise MessageFormatError(f"message.body: not JSON: {error}") from error
    if batch is None:
        batch = []
    if not isinstance(batch, list):
        raise MessageFormatError("message.body: expected a JSON array of job messages")
    jobs = []
    for index, item in enumerate(batch):
        if isinstance(item, dict) and item.get("messageType") not in JOB_KINDS:
            continue  # a kind this listener does not know: skipped, as upstream does
        jobs.append(JobMessage.from_api(item, f"message.body[{index}]"))
    return ScaleSetMessage(message_id, Statistics.from_api(data.get("statistics")), tuple(jobs))


def desired_runners(assigned_jobs: int, idle: int, minimum: int, maximum: int) -> int:
    """Runners a scale set should have: clamp(assigned + idle target, min, max).

    ARC's listener sizes on ``totalAssignedJobs`` (running jobs included) plus the warm
    runners wanted; min and max come from the pool's spec.
    """
    if minimum < 0 or maximum < minimum:
        raise ValueError(f"need 0 <= min <= max, got min={minimum} max={maximum}")
    if assigned_jobs < 0 or idle < 0:
        raise ValueError(f"counts must be >= 0, got assigned={assigned_jobs} idle={idle}")
    return max(minimum, min(maximum, assigned_jobs + idle))


def _int(data: dict[str, Any], key: str, where: str, required: bool = False) -> int:
    value = data.get(key)
    if value is None:
        if required:
            raise MessageFormatError(f"{where}.{key}: missing")
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise MessageFormatError(f"{where}.{key}: expected an integer, got {value!r}")
    return value


def _str(data: dict[str, Any], key: str, where: str) -> str:
    value = data.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise MessageFormatError(f"{where}.{key}: expected a string, got {value!r}")
    return value


def _time(data: dict[str, Any], key: str, where: str) -> datetime.datetime | None:
    """An RFC 3339 time; Go's zero time (``0001-01-01T00:00:00Z``) and absence are None."""
    value = data.get(key)
    if value is None or value == "" or str(value).startswith("0001-01-01"):
        return None
    if not isinstance(value, str):
        raise MessageFormatError(f"{where}.{key}: expected an RFC 3339 time, got {value!r}")
    try:
        parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as error:
        raise MessageFormatError(f"{where}.{key}: not an RFC 3339 time: {value!r}") from error
    if parsed.tzinfo is None:
        raise MessageFormatError(f"{where}.{key}: time without a zone: {value!r}")
    return parsed
