"""A job's state change, as every demand source reports it (webhooks today)."""

from __future__ import annotations

import datetime
from dataclasses import dataclass


@dataclass(frozen=True)
class JobEvent:
    """One `workflow_job` event, reduced to what demand and metrics need."""

    delivery: str
    action: str  # queued | in_progress | completed | waiting
    job_id: int
    run_id: int
    repository: str  # owner/name
    organization: str
    labels: tuple[str, ...]
    conclusion: str | None
    runner_name: str | None
    at: datetime.datetime  # when this state began (queued: created_at)
    created_at: datetime.datetime  # when the job was queued
    started_at: datetime.datetime | None = None  # when a runner took it (in_progress, completed)
