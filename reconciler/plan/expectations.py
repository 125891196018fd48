"""Expectations: the runner starts and stops this controller issued and has not seen yet.

After the Kubernetes ReplicaSet controller (`controller_utils.go`). ECS reads are eventually
consistent: a task started a moment ago may be missing from the next ListTasks, and a task
stopped a moment ago may still be listed. Webhook-triggered cycles run back to back, so a
level-triggered planner that believed the listing would start the same runner twice (or
count a stopped one as still running). So the executor remembers each start and stop per
pool, each cycle's observation settles those it now shows (a start listed, a stop gone), and
the planner counts what is still in flight (`InFlight`). An expectation that the listing
never settles is forgotten after `ttl` seconds (a task that stopped before it was ever
listed, say), so a lost one delays a pool by at most that long.

Each RunTask (a batch of up to 10 identical tasks) gets *slots*: a run of sequence numbers
per pool and lease epoch, one per task, which with the pool, the revision, the epoch and the
batch size makes the RunTask client token (`start_token`): retrying one batch is idempotent,
and no two batches share a token (ECS keeps a RunTask token for 24 hours per cluster, and
refuses a reused token with other parameters). Every task of a batch is tagged with its
token, so a batch whose RunTask failed without a clear answer is counted as `count` starts
of that token, settled as tasks carrying it are listed.

Pure bookkeeping: no I/O; the controller's one thread uses it (not thread-safe).
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from .state import RUNNER_NAME_TAG, START_TOKEN_TAG, ObservedTask

log = logging.getLogger(__name__)

DEFAULT_TTL_SECONDS = 120.0


@dataclass(frozen=True)
class InFlight:
    """What the planner must count on top of the listing: by pool, starts not listed yet;
    task ARNs stopped but still listed."""

    starts: Mapping[str, int] = field(default_factory=dict)
    stops: frozenset[str] = frozenset()


@dataclass(frozen=True)
class _Start:
    pool: str
    runner_name: str
    task_arn: str  # "" when RunTask's outcome is unknown (looked up by runner name)
    issued_at: float
    cluster: str = ""
    token: str = ""  # the batch's client token (settles a start whose task ARN is unknown)


@dataclass(frozen=True)
class _Stop:
    pool: str
    task_arn: str
    issued_at: float


class Expectations:
    """Starts and stops issued and not yet observed, per pool."""

    def __init__(
        self, ttl: float = DEFAULT_TTL_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.clock = clock
        self.incarnation = uuid.uuid4().hex[:8]  # tells this process's tokens from earlier ones
        self._starts: list[_Start] = []
        self._stops: dict[str, _Stop] = {}
        self._slots: Counter[tuple[str, int]] = Counter()

    def expect_start(
        self,
        pool: str,
        runner_name: str = "",
        task_arn: str = "",
        cluster: str = "",
        token: str = "",
        at: float | None = None,
    ) -> None:
        """A RunTask was issued for one task (at `at` on `clock`, default now): its runner's
        name and task ARN when known, else the batch's client `token` (a start known by none
        of them is refused)."""
        if not (runner_name or task_arn or token):
            raise ValueError("a start needs a runner name, a task ARN or a batch token")
        issued_at = self.clock() if at is None else at
        self._starts.append(_Start(pool, runner_name, task_arn, issued_at, cluster, token))

    def expect_stop(self, pool: str, task_arn: str, at: float | None = None) -> None:
        """A StopTask was issued for `task_arn` (at `at` on `clock`, default now)."""
        self._stops[task_arn] = _Stop(pool, task_arn, self.clock() if at is None else at)

    def next_slot(self, pool: str, epoch: int, count: int = 1) -> int:
        """The first of the next `count` start slots of `pool` in lease epoch `epoch`
        (0, 1, 2, ...; a batch of 10 takes 10)."""
        if count < 1:
            raise ValueError(f"a batch has at least one task, not {count}")
        slot = self._slots[(pool, epoch)]
        self._slots[(pool, epoch)] += count
        return slot

    def unlisted(self, tasks: Iterable[ObservedTask]) -> dict[str, list[str]]:
        """Started task ARNs the listing of running `tasks` lacks, by cluster (to describe)."""
        listed = {task.arn for task in tasks}
        unlisted: dict[str, list[str]] = {}
        for start in self._starts:
            if start.task_arn and start.cluster and start.task_arn not in listed:
                unlisted.setdefault(start.cluster, []).append(start.task_arn)
        return unlisted

    def observe(self, tasks: Iterable[ObservedTask], stopped: Iterable[str] = ()) -> InFlight:
        """Settle what the listing of running `tasks` shows, and the starts whose task is
        known to have `stopped` already; the rest is still in flight."""
        listed = list(tasks)
        arns = {task.arn for task in listed} | set(stopped)
        names = {task.tags.get(RUNNER_NAME_TAG, "") for task in listed} - {""}
        # tasks of a batch listed, by token, not already settling a start known by ARN
        known = {start.task_arn for start in self._starts}
        tokens = Counter(
            task.tags.get(START_TOKEN_TAG, "") for task in listed if task.arn not in known
        )
        now = self.clock()
        starts: list[_Start] = []
        for start in self._starts:
            if start.task_arn in arns or start.runner_name in names:
                continue
            if not start.task_arn and start.token and tokens[start.token] > 0:
                tokens[start.token] -= 1
                continue
            if now - start.issued_at >= self.ttl:
                log.warning(
                    "pool %s: runner %s was started %.0fs ago and never listed; no longer "
                    "counted as starting",
                    start.pool,
                    start.runner_name,
                    now - start.issued_at,
                )
                continue
            starts.append(start)
        self._starts = starts
        self._stops = {
            arn: stop
            for arn, stop in self._stops.items()
            if arn in arns and now - stop.issued_at < self.ttl
        }
        return self.in_flight()

    def in_flight(self) -> InFlight:
        """What is still expected, as the planner counts it."""
        return InFlight(
            starts=dict(Counter(start.pool for start in self._starts)),
            stops=frozenset(self._stops),
        )


def start_token(
    pool: str, revision_arn: str, epoch: int, slot: int, incarnation: str, count: int = 1
) -> str:
    """RunTask's client token for one batch of `count` tasks from `slot`: deterministic per
    (pool, revision, slot, count, epoch).

    Without a lease (epoch 0) the process's incarnation keeps a restarted controller from
    reusing an earlier process's tokens; with one, every term has a new epoch anyway."""
    key = f"{pool}/{revision_arn}/{epoch}/{slot}" + (f"+{count}" if count != 1 else "")
    key += "" if epoch else f"/{incarnation}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]
