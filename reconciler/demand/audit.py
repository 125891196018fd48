"""Reconcile the demand book with GitHub: a job the book holds as queued for a while is
looked up, and stops counting once GitHub shows it assigned or finished.

A lost `in_progress` or `completed` delivery (never redelivered, or older than the
redelivery window) would otherwise keep a job pending, and a runner started for it, until
the book forgets it (48 h). The leader asks GitHub (`GET /repos/{owner}/{repo}/actions/jobs/
{job_id}`) about jobs queued in the book for more than `older_than`, oldest first, at most
`per_pass` a pass, a pass at most every `interval` seconds, each job at most once per
`recheck`: so the cost is zero while webhooks arrive, and at most `per_pass` x 3600 /
`interval` requests an hour (600 with the defaults) when they do not.
"""

from __future__ import annotations

import datetime
import logging
import time
from dataclasses import dataclass

from ..clock import UtcClock, utc_now
from ..github.client import GitHubClient
from .book import DemandBook
from .events import JobEvent

log = logging.getLogger(__name__)

DEFAULT_OLDER_THAN = datetime.timedelta(minutes=5)
DEFAULT_PER_PASS = 10
DEFAULT_INTERVAL = 60.0
DEFAULT_RECHECK = 300.0
#: GitHub's job states that mean a runner has it or it is over
ASSIGNED_OR_DONE = ("in_progress", "completed")


@dataclass(frozen=True)
class AuditPass:
    """What one pass asked and corrected."""

    checked: int
    corrected: int  # jobs that stopped counting (GitHub shows them assigned or done)
    unknown: int  # jobs GitHub does not know (404): left to expire


class QueuedJobAudit:
    """Asks GitHub about long-queued jobs of the book and records what it says."""

    def __init__(
        self,
        github: GitHubClient,
        book: DemandBook,
        *,
        older_than: datetime.timedelta = DEFAULT_OLDER_THAN,
        per_pass: int = DEFAULT_PER_PASS,
        recheck: float = DEFAULT_RECHECK,
        interval: float = DEFAULT_INTERVAL,
        clock: UtcClock = utc_now,
    ) -> None:
        if per_pass < 1 or recheck <= 0 or interval < 0:
            raise ValueError("per_pass must be >= 1, recheck positive, interval not negative")
        self.github = github
        self.book = book
        self.older_than = older_than
        self.per_pass = per_pass
        self.recheck = recheck
        self.interval = interval
        self.clock = clock
        self._checked_at: dict[int, float] = {}  # job id -> time.monotonic() of the last look
        self._next_at = 0.0  # time.monotonic() of the next due pass

    def due(self) -> bool:
        """True when `interval` seconds have passed since the last pass (or none ran)."""
        return time.monotonic() >= self._next_at

    def run(self) -> AuditPass:
        """One pass over the book's queued jobs; raises GitHubError if GitHub fails."""
        now, moment = self.clock(), time.monotonic()
        self._next_at = moment + self.interval
        queued = self.book.queued_jobs()
        alive = {job.job_id for job in queued}
        self._checked_at = {i: at for i, at in self._checked_at.items() if i in alive}
        due = [
            job
            for job in queued
            if job.created_at <= now - self.older_than
            and moment - self._checked_at.get(job.job_id, -self.recheck) >= self.recheck
        ][: self.per_pass]
        corrected = unknown = 0
        for job in due:
            self._checked_at[job.job_id] = moment
            status = self.github.job_status(job.repository, job.job_id)
            if status is None:
                unknown += 1
                continue
            if status.status not in ASSIGNED_OR_DONE:
                continue
            self.book.record(
                JobEvent(
                    delivery=f"audit-{job.job_id}-{status.status}",
                    action=status.status,
                    job_id=job.job_id,
                    run_id=0,
                    repository=job.repository,
                    organization=job.organization,
                    labels=job.labels,
                    conclusion=status.conclusion,
                    runner_name=status.runner_name,
                    at=now,
                    created_at=job.created_at,
                ),
                job.pool,
            )
            corrected += 1
            log.info("job %s is %s on GitHub: no longer pending", job.job_id, status.status)
        return AuditPass(len(due), corrected, unknown)
